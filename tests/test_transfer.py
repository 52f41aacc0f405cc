import itertools

import torch

from s2snets.metrics.transfer import check_total_order, concept_lattice, rrc, suffices

NAMES = ["a", "b", "c"]


def test_rrc_and_relation():
    t = torch.tensor([[0.9, 0.8], [0.45, 0.5]])
    r = rrc(t, torch.tensor([0.9, 0.5]))
    assert torch.allclose(r, torch.tensor([[1.0, 1.6], [0.5, 1.0]]))
    assert suffices(r, 0.95).tolist() == [[True, True], [False, True]]


def test_total_order_detected_and_violations_listed():
    chain = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    ok = check_total_order(chain, NAMES)
    assert ok.is_total_order and ok.ranking == ["a", "b", "c"]
    cycle = torch.tensor([[1, 1, 0], [0, 1, 1], [1, 0, 1]])
    bad = check_total_order(cycle, NAMES)
    assert not bad.is_total_order and ("a", "b", "c") in bad.intransitive and not bad.incomparable
    gap = check_total_order(torch.eye(3), NAMES)
    assert len(gap.incomparable) == 3
    tie = check_total_order(torch.ones(3, 3), NAMES)
    assert tie.is_total_preorder and not tie.is_total_order and len(tie.mutual) == 3


def brute_concepts(rel, names):
    """Reference: every closed (extent, intent) pair by enumeration of subsets."""
    objs = range(len(names))
    out = set()
    for r in range(len(names) + 1):
        for ext in itertools.combinations(objs, r):
            intent = {j for j in objs if all(rel[i][j] for i in ext)}
            closure = tuple(i for i in objs if all(rel[i][j] for j in intent))
            out.add((tuple(names[i] for i in closure), tuple(sorted(names[j] for j in intent))))
    return out


def test_concept_lattice_matches_enumeration():
    for rel in ([[1, 1, 1], [0, 1, 1], [0, 0, 1]], [[1, 0, 1], [0, 1, 1], [1, 1, 1]], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]):
        lattice = concept_lattice(torch.tensor(rel), NAMES)
        got = {(c.extent, tuple(sorted(c.intent))) for c in lattice}
        assert got == brute_concepts(rel, NAMES)
        for c in lattice:  # upper neighbours have strictly larger extents
            for u in c.upper:
                assert set(c.extent) < set(lattice[u].extent)

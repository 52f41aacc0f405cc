"""Cross-classifier transfer: whose signal suffices for whom, as a matrix, an order and a concept lattice.

For classifiers A, B with accuracy acc_B(originals) on the original test images:

    T[A, B]   = accuracy of B on the reconstructions of the autoencoder fine-tuned for A
    RRC[A, B] = T[A, B] / acc_B(originals)          (our definition of the paper's "RRC"; >1 is possible)
    A -> B    ("A's signal suffices for B")  iff  RRC[A, B] >= tau   (tau = 0.95 by default, configurable)

The relation is checked for being a total order: reflexive, total (A -> B or B -> A for every pair), antisymmetric
(not both, for A != B) and transitive; each violating pair or triple is listed. The formal context "A -> B"
(objects: signals, attributes: consumers) gives a concept lattice (``concepts`` library).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


def rrc(transfer: Tensor, original_accuracy: Tensor) -> Tensor:
    """RRC[A, B] = T[A, B] / acc_B(originals). (K, K), (K,) -> (K, K)."""
    return transfer / original_accuracy.clamp_min(1e-12)[None, :]


def suffices(rrc_matrix: Tensor, threshold: float = 0.95) -> Tensor:
    """Boolean relation R[A, B] = RRC[A, B] >= threshold. (K, K) -> bool (K, K)."""
    return rrc_matrix >= threshold


@dataclass
class OrderCheck:
    reflexive: bool
    incomparable: list[tuple[str, str]]  # neither A -> B nor B -> A
    mutual: list[tuple[str, str]]  # both: violates antisymmetry
    intransitive: list[tuple[str, str, str]]  # A -> B, B -> C, not A -> C
    ranking: list[str]  # by how many classifiers each signal suffices for (desc), ties by name
    scores: list[int] = field(default_factory=list)  # that count, in ranking order: equal counts are ties

    @property
    def ranking_text(self) -> str:
        """The ranking with ties shown as ties: 'a > b = c'."""
        out = ""
        for i, name in enumerate(self.ranking):
            if i:
                out += " = " if self.scores and self.scores[i] == self.scores[i - 1] else " > "
            out += name
        return out

    @property
    def is_total_order(self) -> bool:
        return self.reflexive and not self.incomparable and not self.mutual and not self.intransitive

    @property
    def is_total_preorder(self) -> bool:
        return self.reflexive and not self.incomparable and not self.intransitive

    def to_dict(self) -> dict:
        return {
            "total_order": self.is_total_order,
            "total_preorder": self.is_total_preorder,
            "reflexive": self.reflexive,
            "incomparable": self.incomparable,
            "mutual": self.mutual,
            "intransitive": self.intransitive,
            "ranking": self.ranking,
            "scores": self.scores,
            "ranking_text": self.ranking_text,
        }


def check_total_order(relation: Tensor, names: list[str]) -> OrderCheck:
    """Test a boolean relation (K, K) for the total-order properties; list every violation."""
    k = len(names)
    r = relation.bool()
    incomparable, mutual, intransitive = [], [], []
    for i in range(k):
        for j in range(i + 1, k):
            if not r[i, j] and not r[j, i]:
                incomparable.append((names[i], names[j]))
            if r[i, j] and r[j, i]:
                mutual.append((names[i], names[j]))
    for a in range(k):
        for b in range(k):
            for c in range(k):
                if len({a, b, c}) == 3 and r[a, b] and r[b, c] and not r[a, c]:
                    intransitive.append((names[a], names[b], names[c]))
    score = r.sum(1).tolist()
    ordered = sorted(zip(score, names), key=lambda t: (-t[0], t[1]))
    return OrderCheck(
        bool(r.diagonal().all()), incomparable, mutual, intransitive, [n for _, n in ordered], [int(s) for s, _ in ordered]
    )


@dataclass
class Concept:
    extent: tuple[str, ...]  # signals
    intent: tuple[str, ...]  # consumers all of them suffice for
    upper: list[int]  # indices of upper neighbours in the concept list


def concept_lattice(relation: Tensor, names: list[str]) -> list[Concept]:
    """Formal concepts of the context (signal A, consumer B, A -> B), ordered from the bottom (largest intent) up."""
    import concepts

    # concepts needs distinct object and attribute names: attributes carry a "for:" prefix, removed again below.
    context = concepts.Context(
        list(names), [f"for:{n}" for n in names], [tuple(bool(v) for v in row) for row in relation.bool().tolist()]
    )
    lattice = list(context.lattice)
    index = {c.extent: i for i, c in enumerate(lattice)}
    return [
        Concept(tuple(c.extent), tuple(a.removeprefix("for:") for a in c.intent), [index[u.extent] for u in c.upper_neighbors])
        for c in lattice
    ]

"""The notebook API leaves the user's objects as it found them, checks before it trains, and never returns a result
made from other inputs (issue 35, classes 1 and 6)."""

import logging

import pytest
import torch
from torch import nn

import s2snets
from s2snets.api import fingerprint


def _data(seed: int, n: int = 32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)


def _classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(256, 3))


def test_reusing_a_run_dir_with_other_data_or_another_classifier_trains_again(tmp_path):
    """Same count, same shapes, same config: only the values differ. 0.3 returned the old decoder, marked skipped."""
    kw = {"steps": 3, "batch_size": 8, "progress": False}
    first = s2snets.S2SNet(_classifier(), preset="tiny", run_dir=tmp_path)
    assert not first.pretrain(_data(0), **kw).skipped and not first.finetune(_data(0), **kw).skipped
    again = s2snets.S2SNet(_classifier(), preset="tiny", run_dir=tmp_path)
    assert again.pretrain(_data(0), **kw).skipped and again.finetune(_data(0), **kw).skipped  # the same: resumed
    other_data = s2snets.S2SNet(_classifier(), preset="tiny", run_dir=tmp_path)
    assert not other_data.pretrain(_data(1), **kw).skipped
    other_classifier = s2snets.S2SNet(_classifier(seed=7), preset="tiny", run_dir=tmp_path)
    other_classifier.pretrain(_data(1), **kw)
    assert not other_classifier.finetune(_data(1), **kw).skipped


def test_the_users_classifier_is_left_as_it_was():
    classifier = _classifier().train()
    classifier[1].bias.requires_grad_(False)  # the user's own choice of what trains
    flags = [p.requires_grad for p in classifier.parameters()]
    state = {k: v.clone() for k, v in classifier.state_dict().items()}
    net = s2snets.S2SNet(classifier, preset="tiny")
    net.pretrain(_data(0), steps=2, batch_size=8, progress=False)
    net.finetune(_data(0), steps=2, batch_size=8, progress=False)
    net.evaluate(_data(2), nmi_pairs=4, examples=2)
    assert classifier.training and [p.requires_grad for p in classifier.parameters()] == flags
    assert all(torch.equal(state[k], v) for k, v in classifier.state_dict().items())


def test_mistakes_are_one_error_before_any_training_step():
    images, labels = _data(0)
    with pytest.raises(s2snets.DataError, match="like 0...255 pixels stored as floats"):
        s2snets.S2SNet(_classifier(), preset="tiny").pretrain((images * 255, labels), steps=50, progress=False)

    class TupleOut(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :3], None

    with pytest.raises(s2snets.ModelError, match="must return logits"):
        s2snets.S2SNet(TupleOut(), preset="tiny").pretrain(_data(0), steps=50, progress=False)
    with pytest.raises(s2snets.ModelError, match=r"K >= 94 classes \(the labels run from 0 to 93\)"):
        s2snets.S2SNet(_classifier(), preset="tiny").pretrain((images, torch.arange(32) * 3 % 100), steps=50, progress=False)


def test_no_false_standardisation_warning_for_the_users_own_segnet(caplog):
    """The warning is for the zoo's autoencoder (its loader records its input space), not any SegNet of its shape."""
    own = s2snets.models.build_segnet("small", 1, "unpool")
    net = s2snets.S2SNet(nn.Sequential(nn.Flatten(), nn.Linear(1024, 10)), own)
    images = torch.rand(16, 1, 32, 32)
    with caplog.at_level(logging.WARNING, logger="s2snets"):
        net.finetune((images, torch.randint(0, 10, (16,))), steps=1, batch_size=8, progress=False)
    assert "expects them standardised" not in caplog.text


def test_fingerprint_tells_values_apart_not_only_shapes():
    a, b = torch.zeros(4, 4), torch.zeros(4, 4)
    assert fingerprint(a) == fingerprint(b)
    b[0, 0] = 1e-30
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(_classifier(0)) != fingerprint(_classifier(1))
    assert fingerprint(torch.tensor(3)) != fingerprint(torch.tensor(4))  # 0-d tensors too

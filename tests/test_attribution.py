"""The grid diagnostic on real Captum saliency maps of torchvision models (random weights: their gradient grids
come from the architecture, which is what the lint predicts)."""

import pytest
import torch
import torchvision

import s2snets

captum_attr = pytest.importorskip("captum.attr")


def _saliency(model, x, target=3):
    return captum_attr.Saliency(model).attribute(x, target=target, abs=False)


@pytest.mark.parametrize("name,period", [("alexnet", 4), ("resnet18", 2)])
def test_finds_the_grid_of_a_strided_model_at_the_linted_period_and_removes_it_faithfully(name, period):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=10).eval()
    x = torch.rand(8, 3, 224, 224)
    saliency = _saliency(model, x)
    diagnosis = s2snets.grid_diagnostic(saliency, model=model)
    assert diagnosis.dominant_period == period and period in diagnosis.predicted_periods and diagnosis.layers
    logits = model(x)
    with s2snets.smoothed_backward(model):
        assert torch.equal(model(x), logits)  # the prediction explained is the same
        fixed = _saliency(model, x)
    assert not s2snets.grid_diagnostic(fixed).has_grid
    assert not s2snets.grid_diagnostic(s2snets.remove_grid(saliency, period)).has_grid
    assert len(model._forward_pre_hooks) == 0 and all(not m._forward_pre_hooks for m in model.modules())


def test_says_no_grid_for_a_model_without_uneven_strides_and_takes_every_map_form():
    torch.manual_seed(0)
    model = torchvision.models.vgg11(num_classes=10).eval()
    saliency = _saliency(model, torch.rand(8, 3, 224, 224))
    assert not s2snets.grid_diagnostic(saliency).has_grid
    for form in (saliency[0, 0], saliency[0], saliency.numpy()):
        assert set(s2snets.grid_diagnostic(form).strength) == {2, 4, 8}
    with pytest.raises(s2snets.S2SNetsError, match="attribution"):
        s2snets.grid_diagnostic("not a map")
    with pytest.raises(s2snets.S2SNetsError, match="model must be an nn.Module"), s2snets.smoothed_backward(len):
        pass
    for flat in (torch.zeros(2, 3, 32, 32), torch.full((32, 32), 0.7)):  # no answer (was: a grid of strength inf)
        with pytest.raises(s2snets.S2SNetsError, match="constant in every map: nothing to diagnose"):
            s2snets.grid_diagnostic(flat)


def test_the_howto_runs():
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "howto-saliency-grid.md"
    failures, tried = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert tried >= 10 and failures == 0

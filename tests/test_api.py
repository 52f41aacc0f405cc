"""The public API as a notebook user meets it: docs/api.md runs, imports stay light, results are typed."""

import doctest
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_api_examples_run():
    torch.manual_seed(0)
    failures, tried = doctest.testfile(str(DOCS / "api.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert tried >= 15 and failures == 0


def test_module_doctests_run():
    import s2snets.api
    import s2snets.attribution
    import s2snets.experiments.schema
    import s2snets.layers.downsample
    import s2snets.layers.upsample
    import s2snets.metrics.gradients
    import s2snets.metrics.lattice
    import s2snets.metrics.nmi
    import s2snets.metrics.pattern
    import s2snets.metrics.reconstruction

    for module in (
        s2snets.api,
        s2snets.metrics.gradients,
        s2snets.metrics.nmi,
        s2snets.metrics.pattern,
        s2snets.attribution,
        s2snets.metrics.lattice,
        s2snets.metrics.reconstruction,
        s2snets.layers.upsample,
        s2snets.layers.downsample,
        s2snets.experiments.schema,
    ):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried >= 1 and failures == 0, module.__name__


def test_import_and_config_validation_do_not_load_torch(tmp_path):
    (tmp_path / "c.toml").write_text('[pretrain]\noptimizer = "adamm"\n')
    code = (
        "import sys, s2snets\nfrom s2snets.config import load_config\n"
        f"try:\n    load_config({str(tmp_path / 'c.toml')!r})\nexcept s2snets.ConfigError as e:\n    print(e)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "did you mean 'adam'" in out[0] and out[1] == "False"


def test_finetune_decoder_trains_only_the_decoder_of_a_users_autoencoder():
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import s2snets

    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
            self.decoder = nn.Conv2d(4, 1, 3, padding=1)

        def forward(self, x):
            return self.decoder(self.encoder(x))

    torch.manual_seed(0)
    ae, clf = AE(), nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    before = {k: v.clone() for k, v in ae.state_dict().items()}
    clf_before = {k: v.clone() for k, v in clf.state_dict().items()}
    loader = DataLoader(TensorDataset(torch.randn(40, 1, 8, 8), torch.randint(0, 3, (40,))), batch_size=8)
    with pytest.raises(s2snets.InputError, match="swap them"):  # 0.3's order: refused, never run the wrong way round
        s2snets.finetune_decoder(ae, clf, loader, steps=12, lr=1e-2, progress=False)
    result = s2snets.finetune_decoder(clf, ae, loader, steps=12, lr=1e-2, progress=False)
    after = ae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder"))  # BN statistics too
    assert not torch.equal(before["decoder.weight"], after["decoder.weight"])
    assert all(torch.equal(clf_before[k], v) for k, v in clf.state_dict().items())
    assert result.history[-1][0] == 12 and "StageResult(finetune: steps=12, final loss" in repr(result)
    assert isinstance(result, type(s2snets.S2SNet(clf, ae).finetune(loader, steps=1, progress=False)))  # one result type


def test_data_in_the_forms_a_notebook_holds():
    """torchvision datasets without a transform (PIL images), grey batches from a DataLoader, and the forms that
    must be refused with what to do: channels-last arrays, integer images, dict items, images of several sizes, a
    DataLoader whose default collate met PIL images."""
    import numpy as np
    import pytest
    import torchvision
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    from s2snets.data import as_tensor_set
    from s2snets.errors import DataError

    fake = torchvision.datasets.FakeData(size=10, image_size=(3, 12, 12), num_classes=3, random_offset=4)
    expected = np.stack([np.asarray(fake[i][0]).transpose(2, 0, 1) for i in range(10)]) / 255.0  # HWC bytes
    got = as_tensor_set(fake)
    np.testing.assert_allclose(got.images.numpy(), expected, atol=1e-7)
    assert got.labels.tolist() == [int(fake[i][1]) for i in range(10)]

    rng = np.random.default_rng(0)

    class Pictures(Dataset):
        def __init__(self, mode, sizes=(9,)):
            self.mode, self.sizes = mode, sizes

        def __len__(self):
            return 6

        def __getitem__(self, i):
            size = self.sizes[i % len(self.sizes)]
            grey = Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8))
            return (grey if self.mode == "L" else grey.convert(self.mode)), i % 2

    assert as_tensor_set(Pictures("L")).images.shape == (6, 1, 9, 9)  # grey stays one channel
    palette = as_tensor_set(Pictures("P")).images  # a palette image as its colours, not its palette indices
    assert palette.shape == (6, 3, 9, 9) and torch.equal(palette[:, 0], palette[:, 1])
    with pytest.raises(DataError, match=r"differ in size \(\(1, 9, 9\) and \(1, 10, 10\).*Resize"):
        as_tensor_set(Pictures("L", sizes=(9, 10)))
    with pytest.raises(DataError, match="PILToTensor"):
        as_tensor_set(DataLoader(fake, batch_size=4))
    grey = torch.rand(10, 8, 8)  # (N, H, W) batches, the last one shorter
    assert torch.equal(as_tensor_set(DataLoader(TensorDataset(grey, torch.arange(10) % 2), batch_size=4)).images, grey[:, None])

    nhwc = rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    with pytest.raises(DataError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        as_tensor_set((nhwc, np.arange(6) % 2))
    assert as_tensor_set((nhwc.transpose(0, 3, 1, 2), np.arange(6) % 2)).images.shape == (6, 3, 12, 12)
    with pytest.raises(DataError, match=r"uint8 \(0...255\) or float.*astype\(np.uint8\)"):
        as_tensor_set((nhwc.transpose(0, 3, 1, 2).astype(np.int32), np.arange(6) % 2))
    items = [{"image": torch.rand(1, 8, 8), "label": 0}] * 4
    with pytest.raises(DataError, match=r"a dict with keys \['image', 'label'\]"):
        as_tensor_set(items)
    with pytest.raises(DataError, match="label must be a class index"):
        as_tensor_set([(torch.rand(1, 8, 8), "cat")] * 4)
    rgb = (torch.rand(4, 3, 8, 8), torch.arange(4) % 2)  # mean/std as a number, numpy scalar, 0-d or per-channel tensor
    for mean, std in ((0.5, np.float32(0.25)), (torch.tensor(0.5), torch.tensor([0.25] * 3)), (np.full(3, 0.5), [0.25])):
        got = as_tensor_set(rgb, mean=mean, std=std)
        assert got.mean == (0.5,) * 3 and got.std == (0.25,) * 3
    with pytest.raises(DataError, match=r"one value per channel \(3\), got 2 for mean"):
        as_tensor_set(rgb, mean=(0.5, 0.5), std=0.25)


def test_steps_below_one_and_a_std_that_is_not_positive_are_refused():
    import pytest

    import s2snets
    from s2snets.errors import DataError, InputError

    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    data = (torch.rand(4, 1, 8, 8), torch.arange(4) % 2)
    for steps in (0, -3, 2.0):  # 0 once ran one epoch: the engine's "no limit"
        with pytest.raises(InputError, match="steps must be an int >= 1"):
            s2snets.S2SNet(clf, preset="tiny").pretrain(data, steps=steps, progress=False)
    for std in (0, -1.0, float("nan")):
        with pytest.raises(DataError, match="std finite and > 0"):
            s2snets.S2SNet(clf, preset="tiny", mean=0.5, std=std).pretrain(data, steps=1, progress=False)


def test_evaluate_refuses_images_outside_pixel_units_before_any_work():
    """evaluate measures in pixel units: images that lie outside [0, 1] there (0...255 floats, standardised images
    without their mean/std) would be clipped into other images. Refused before any model runs."""
    import pytest

    import s2snets
    from s2snets.errors import DataError, InputError

    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    pixels, labels = torch.rand(8, 1, 8, 8), torch.arange(8) % 2
    with pytest.raises(DataError, match=r"lie in \[0.*, 2.*\].*no mean/std was given.*divide 0...255 images by 255"):
        s2snets.S2SNet(clf).evaluate((pixels * 255, labels))
    standardised = (pixels - 0.3) / 0.2
    with pytest.raises(DataError, match=r"un-standardised with mean=\(0.5,\), std=\(0.2,\)"):
        s2snets.S2SNet(clf, mean=0.5, std=0.2).evaluate((standardised * 3, labels))
    for net, x in ((s2snets.S2SNet(clf), pixels), (s2snets.S2SNet(clf, mean=0.3, std=0.2), standardised)):
        with pytest.raises(InputError, match="no plain autoencoder yet"):  # the check passed; then the models are asked
            net.evaluate((x, labels))


def test_reconstruct_reads_images_as_the_training_data_is_read():
    """uint8 images are pixels divided by 255 (as in pretrain; they once went in as 0...255 floats), (N, H, W) and
    numpy arrays are taken, and a single image or a channels-last array is refused with what to pass."""
    import numpy as np
    import pytest

    import s2snets
    from s2snets.errors import DataError, InputError

    torch.manual_seed(0)
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 3))
    pixels = torch.rand(16, 1, 16, 16)
    net = s2snets.S2SNet(clf, preset="tiny")
    net.pretrain((pixels, torch.arange(16) % 3), steps=2, batch_size=8, progress=False)
    as_bytes = (pixels * 255).round().to(torch.uint8)
    expected = net.reconstruct(as_bytes.float() / 255, "plain")
    assert torch.allclose(net.reconstruct(as_bytes, "plain"), expected)
    assert torch.allclose(net.reconstruct(as_bytes[:, 0].numpy(), "plain"), expected)
    with pytest.raises(InputError, match=r"\(N, C, H, W\) or \(N, H, W\), got shape \(16, 16\)"):
        net.reconstruct(as_bytes[0, 0], "plain")
    with pytest.raises(DataError, match="channels-last"):
        net.reconstruct(np.zeros((4, 16, 16, 3), np.uint8), "plain")

"""The public API as a notebook user meets it: docs/api.md runs, imports stay light, results are typed."""

import doctest
import subprocess
import sys
from pathlib import Path

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
    result = s2snets.finetune_decoder(ae, clf, loader, steps=12, lr=1e-2, progress=False)
    after = ae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder"))  # BN statistics too
    assert not torch.equal(before["decoder.weight"], after["decoder.weight"])
    assert all(torch.equal(clf_before[k], v) for k, v in clf.state_dict().items())
    assert result.history[-1][0] == 12 and "FinetuneResult(steps=12" in repr(result)

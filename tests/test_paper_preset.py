"""The paper's setting end to end on a tiny generated 224-px folder: torchvision classifier with a weights file,
the `paper` SegNet from VGG16 weights, ImageNet class order and preprocessing. Random weights, a few steps, CPU:
it checks that the path runs, not what it finds."""

import json

import pytest
import torch
from conftest import run_cli
from PIL import Image
from safetensors.torch import save_file

SYNSETS = ("n01440764", "n15075141")


@pytest.mark.slow
def test_paper_preset_runs_end_to_end_on_a_tiny_imagenet_folder(tmp_path):
    import torchvision

    g = torch.Generator().manual_seed(0)
    for split, count in (("train", 4), ("test", 2)):
        for synset in SYNSETS:
            folder = tmp_path / "imagenet" / split / synset
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (260, 300, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)
    torch.manual_seed(0)
    save_file(torchvision.models.resnet50().state_dict(), str(tmp_path / "resnet50.safetensors"))
    vgg_features = {k: v for k, v in torchvision.models.vgg16().state_dict().items() if k.startswith("features.")}
    save_file(vgg_features, str(tmp_path / "vgg16-features.safetensors"))
    text = (
        open("examples/paper-imagenet.toml").read()
        .replace('"alexnet", "vgg16", "vgg16_bn", "resnet50"', '"resnet50"')
        .replace('data/imagenet', str(tmp_path / "imagenet"))
        .replace("weights/vgg16.pth", str(tmp_path / "vgg16-features.safetensors"))
    )  # fmt: skip
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith(('"alexnet=', '"vgg16=', '"vgg16_bn=', '"resnet50='))]
    text = "\n".join(lines).replace(
        "classifier_weights = [\n]", f'classifier_weights = ["resnet50={tmp_path / "resnet50.safetensors"}"]'
    )
    (tmp_path / "paper.toml").write_text(text)
    overrides = [
        "pretrain.max_steps=1", "pretrain.batch_size=2", "pretrain.warmup_steps=0",
        "finetune.max_steps=1", "finetune.batch_size=2",
        "data.train_limit=0", "data.test_limit=0", "measure.eval_limit=0", "measure.nmi_pairs=4",
        "measure.probe_images=2", "measure.figure_images=2",
    ]  # fmt: skip
    args = ["replicate", "--config", str(tmp_path / "paper.toml"), "--runs", str(tmp_path / "runs"), "--device", "cpu"]
    for o in overrides:
        args += ["--set", o]
    proc = run_cli(*args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pretrained weights" in proc.stdout and "initialised from VGG16" in proc.stdout
    run = tmp_path / "runs" / "paper-imagenet"
    results = json.loads((run / "metrics" / "results.json").read_text())
    assert results["dataset"]["classes"][0] == "n01440764" and len(results["dataset"]["classes"]) == 1000
    assert results["dataset"]["size"] == 224 and set(results["accuracy"]) == {"resnet50"}
    assert (run / "report.html").is_file() and (run / "metrics" / "autoencoder-unpool.csv").is_file()


@pytest.mark.slow
def test_replicate_under_torchrun_with_two_processes_streaming_an_image_folder(tmp_path):
    import subprocess
    import sys

    import numpy as np

    from s2snets.checkpoint import read_meta

    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("test", 8)):
        for c in ("cats", "dogs"):
            (tmp_path / "img" / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = (rng.random((40, 40, 3)) * (120 if c == "cats" else 255)).astype("uint8")
                Image.fromarray(pixels).save(tmp_path / "img" / split / c / f"{i}.png")
    stage = "max_steps = 4\nbatch_size = 8\n"
    (tmp_path / "c.toml").write_text(
        f'name = "ddp"\nclassifiers = ["vgg_s"]\n[data]\ndataset = "folder"\nroot = "{tmp_path / "img"}"\nsize = 32\n'
        'stream = "disk"\n'
        f"channels = 3\n[train_classifier]\n{stage}[pretrain]\n{stage}[finetune]\n{stage}"
        "[measure]\nnmi_pairs = 8\nprobe_images = 4\nfigure_images = 2\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "-m", "s2snets",
         "replicate", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path / "runs"), "--device", "cpu", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    for name in ("classifier-vgg_s", "autoencoder-unpool", "finetune-unpool-vgg_s"):
        meta = read_meta(run / "checkpoints" / f"{name}.safetensors")
        assert meta["done"] and meta["runtime"]["world_size"] == 2, name
    assert (run / "report.html").is_file() and proc.stdout.count("report: ") == 1  # rank 0 alone reports

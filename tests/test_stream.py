"""Image folders read from disk by a DataLoader give the same batches, the same training and the same resume as
the folder held in memory."""

import pytest
import torch
from PIL import Image

from s2snets.config import DataConfig, StageConfig
from s2snets.data import FolderStream, ImageSet, folder_stream, image_folder, load_split
from s2snets.errors import DataError
from s2snets.models import build_classifier
from s2snets.runtime import init_runtime
from s2snets.train import classifier_stage, train_stage

RT = init_runtime("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    g = torch.Generator().manual_seed(0)
    for c, name in enumerate(("ants", "bees", "cats")):
        (root / "train" / name).mkdir(parents=True)
        for i in range(16):
            h, w = 20 + i, 24 + 2 * i  # different sizes: resize and crop matter
            pixels = (torch.rand(h, w, 3, generator=g) * (80 + 80 * c)).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / "train" / name / f"{i:02d}.png")
    return root


def _fit(data, tmp_path, name, on_step=None):
    torch.manual_seed(0)
    model = build_classifier("vgg_s", 3, 3)
    cfg = StageConfig(epochs=2, batch_size=8, lr=1e-3, checkpoint_every=4)
    train_stage(
        classifier_stage("clf", model), data, cfg, seed=0, checkpoint=tmp_path / f"{name}.safetensors", key="k",
        runtime=RT, progress=False, on_step=on_step, workers=2,
    )  # fmt: skip
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_stream_decodes_exactly_what_the_in_memory_folder_holds(folder):
    memory = image_folder(folder / "train", 16, 3, preprocess="imagenet")
    stream = folder_stream(folder / "train", 16, 3, preprocess="imagenet")
    assert len(stream) == len(memory) == 48 and stream.class_names == memory.class_names
    assert torch.equal(torch.stack([stream[i][0] for i in range(len(stream))]), memory.images)
    assert torch.equal(stream.labels, memory.labels) and stream.mean == memory.mean
    head = stream.head(10, seed=3)
    assert torch.equal(torch.stack([head[i][0] for i in range(10)]), memory.head(10, seed=3).images)


def test_training_from_a_stream_equals_training_in_memory_and_resumes_exactly(folder, tmp_path):
    memory = image_folder(folder / "train", 16, 3, preprocess="imagenet")
    stream = folder_stream(folder / "train", 16, 3, preprocess="imagenet")
    reference = _fit(memory, tmp_path, "memory")
    streamed = _fit(stream, tmp_path, "stream")
    assert all(torch.equal(reference[k], streamed[k]) for k in reference)  # same order, same pixels, two workers

    def kill(step):  # after the checkpoint at step 4, mid-epoch (6 steps per epoch)
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(stream, tmp_path, "resumed", on_step=kill)
    resumed = _fit(stream, tmp_path, "resumed")
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_a_corrupt_file_in_a_stream_names_itself(folder, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(folder / "train", root)
    (root / "bees" / "07.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    stream = folder_stream(root, 16, 3, preprocess="imagenet")
    with pytest.raises(DataError, match="07.png"):
        _fit(stream, tmp_path, "corrupt")


def test_load_split_streams_a_training_split_above_the_memory_budget(folder):
    cfg = DataConfig(dataset="folder", root=str(folder), size=16, channels=3, preprocess="imagenet")
    assert isinstance(load_split(cfg, "train"), ImageSet)  # 48 small images fit in 8 GB
    tiny = DataConfig(dataset="folder", root=str(folder), size=16, channels=3, memory_budget_gb=1e-6, train_limit=20)
    streamed = load_split(tiny, "train")
    assert isinstance(streamed, FolderStream) and len(streamed) == 20
    forced = DataConfig(dataset="folder", root=str(folder), size=16, channels=3, stream="disk")
    assert isinstance(load_split(forced, "train"), FolderStream)


@pytest.mark.slow
def test_replicate_evaluates_a_streamed_test_split_as_it_evaluates_one_in_memory(folder, tmp_path):
    """The whole pipeline with both splits read from disk (stream = "disk") and with both in memory: the same
    accuracies, transfer matrix and figures, and nMI, PSNR and constant patterns equal to float64 rounding. The
    evaluation holds the batch, running statistics and the images the nMI pairs and figures use, not the split."""
    import dataclasses
    import math

    from s2snets.checkpoint import load_checkpoint
    from s2snets.config import RunConfig
    from s2snets.experiments.replicate import replicate
    from s2snets.rundir import RunDir

    g = torch.Generator().manual_seed(1)
    for c, name in enumerate(("ants", "bees", "cats")):
        (folder / "test" / name).mkdir(parents=True, exist_ok=True)
        for i in range(12):
            pixels = (torch.rand(18 + i, 22, 3, generator=g) * (80 + 80 * c)).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / "test" / name / f"{i:02d}.png")
    results = {}
    for stream in ("memory", "disk"):
        cfg = RunConfig(name=stream, classifiers=["vgg_s", "resnet_s"], use_zoo=False, device="cpu")
        budget = 1e-6 if stream == "disk" else 8.0  # "auto" streams a split above the memory budget, both splits
        cfg.data = dataclasses.replace(cfg.data, dataset="folder", root=str(folder), size=16, channels=3, memory_budget_gb=budget)
        cfg.data.preprocess = "imagenet"
        cfg.autoencoder = dataclasses.replace(cfg.autoencoder, preset="tiny")
        for stage in (cfg.train_classifier, cfg.pretrain, cfg.finetune):
            stage.max_steps, stage.batch_size, stage.warmup_steps = 3, 8, 0
        cfg.measure = dataclasses.replace(cfg.measure, nmi_pairs=20, probe_images=4, figure_images=4)
        if stream == "disk":
            assert isinstance(load_split(cfg.data, "test"), FolderStream)
        results[stream] = replicate(cfg, RunDir(tmp_path / stream), RT, progress=False)
    memory, disk = results["memory"], results["disk"]
    arrays = {k: load_checkpoint(tmp_path / k / "metrics" / "arrays.safetensors")[0] for k in results}
    for key in ("originals", "recon/plain", "recon/vgg_s"):
        assert torch.equal(arrays["disk"][key], arrays["memory"][key]), key
    assert disk["dataset"]["eval_images"] == memory["dataset"]["eval_images"] == 36
    assert disk["accuracy"] == memory["accuracy"] and disk["transfer"] == memory["transfer"]
    for name, values in memory["nmi"].items():
        for key, value in values.items():
            assert math.isclose(disk["nmi"][name][key], value, abs_tol=1e-12), (name, key)
    assert math.isclose(disk["reconstruction"]["plain"]["psnr"], memory["reconstruction"]["plain"]["psnr"], rel_tol=1e-12)
    for name, summary in memory["pattern"].items():
        assert math.isclose(disk["pattern"][name]["mean_constancy"], summary["mean_constancy"], rel_tol=1e-9, abs_tol=1e-12)

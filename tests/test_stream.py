"""Image folders read from disk by a DataLoader give the same batches, the same training and the same resume as
the folder held in memory."""

import pytest
import torch
from PIL import Image

from s2snets.config import DataConfig, StageConfig
from s2snets.data import ImageSet, image_folder, load_split
from s2snets.errors import DataError
from s2snets.models import build_classifier
from s2snets.runtime import init_runtime
from s2snets.stream import FolderStream, folder_stream
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

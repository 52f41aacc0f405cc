import gzip

import numpy as np
import pytest
import torch
from conftest import needs_fashion, write_idx
from PIL import Image

from s2snets.data import FASHION_MNIST_CLASSES, fashion_mnist, image_folder, read_idx, synthetic
from s2snets.errors import DataError


def make_fashion_folder(folder, n=20, labels=None, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else labels
    ext = ".gz" if gz else ""
    for img_name, lab_name in (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        write_idx(folder / (img_name + ext), images)
        write_idx(folder / (lab_name + ext), labels)
    return images, labels


def test_idx_round_trip_raw_and_gzip(tmp_path):
    for dtype in (np.uint8, np.int16, np.int32, np.float32, np.float64):
        a = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
        for name in ("x.idx", "x.idx.gz"):
            write_idx(tmp_path / name, a)
            b = read_idx(tmp_path / name)
            assert b.dtype == np.dtype(dtype).newbyteorder(">") or b.dtype == a.dtype
            np.testing.assert_array_equal(a, b)


def test_idx_header_is_standard(tmp_path):
    write_idx(tmp_path / "l.idx", np.array([1, 2, 3], dtype=np.uint8))
    assert (tmp_path / "l.idx").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_by_one_byte(tmp_path, gz):
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4])
    path = tmp_path / ("t.idx.gz" if gz else "t.idx")
    path.write_bytes(gzip.compress(raw[:-1]) if gz else raw[:-1])
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_idx_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 100]) + bytes(100))
    (tmp_path / "c.gz").write_bytes(blob[:-5])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "c.gz")


def test_idx_wrong_magic(tmp_path):
    (tmp_path / "m.idx").write_bytes(bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "m.idx")
    (tmp_path / "m2.idx").write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "m2.idx")


def test_idx_trailing_bytes(tmp_path):
    (tmp_path / "x.idx").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7, 9]))
    with pytest.raises(DataError, match="trailing"):
        read_idx(tmp_path / "x.idx")


def test_fashion_mnist_from_a_folder(tmp_path):
    images, labels = make_fashion_folder(tmp_path / "fm")
    d = fashion_mnist("train", tmp_path / "fm", pad_to=32)
    assert d.images.shape == (20, 1, 32, 32) and d.images.dtype == torch.uint8
    np.testing.assert_array_equal(d.images[:, 0, 2:30, 2:30].numpy(), images)
    assert d.images[:, :, :2].sum() == 0
    np.testing.assert_array_equal(d.labels.numpy(), labels)
    assert fashion_mnist("test", tmp_path / "fm", pad_to=28).images.shape == (20, 1, 28, 28)


def test_fashion_mnist_mismatched_counts(tmp_path):
    make_fashion_folder(tmp_path / "fm", n=20)
    write_idx(tmp_path / "fm" / "train-labels-idx1-ubyte.gz", np.zeros(19, dtype=np.uint8))
    with pytest.raises(DataError, match="19 labels but .* 20 images"):
        fashion_mnist("train", tmp_path / "fm")


def test_fashion_mnist_label_out_of_range(tmp_path):
    make_fashion_folder(tmp_path / "fm", n=10, labels=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12], dtype=np.uint8))
    with pytest.raises(DataError, match="out of range"):
        fashion_mnist("train", tmp_path / "fm")


def test_fashion_mnist_missing_lists_where_it_looked(tmp_path):
    with pytest.raises(DataError) as err:
        fashion_mnist("train", tmp_path / "nowhere")
    assert "nowhere" in str(err.value) and "apt-get install dataset-fashion-mnist" in str(err.value)


@needs_fashion
def test_fashion_mnist_debian_package():
    train, test = fashion_mnist("train"), fashion_mnist("test")
    assert len(train) == 60000 and len(test) == 10000
    assert train.class_names == FASHION_MNIST_CLASSES and len(train.class_names) == 10
    assert train.images.shape[1:] == (1, 32, 32)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    x = train.normalize(train.images[:5000])
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = image_folder(tmp_path, size=16, channels=3)
    assert d.images.shape == (6, 3, 16, 16) and d.class_names == ("cat", "dog")
    assert d.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(d.mean) == 3
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        image_folder(tmp_path, size=16)
    d = image_folder(tmp_path, size=16, on_corrupt="skip")
    assert len(d) == 6 and any("broken.png" in p for p in d.skipped)


def test_image_folder_reads_16_bit_images_by_their_levels_not_clipped(tmp_path):
    """PIL's own conversion of a 16-bit image to 8 bits clips every value above 255 (the image turns white); the
    readers scale it, round(v / 65535 * 255), in a folder and in a notebook's dataset alike."""
    from s2snets.data import as_tensor_set

    rng = np.random.default_rng(1)
    wide = [(rng.random((16, 16)) * 65535).astype(np.uint16) for _ in range(4)]
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    for i, x in enumerate(wide):
        Image.fromarray(x).save(tmp_path / "ab"[i % 2] / f"{i}.png")
    expected = [np.round(x / 65535 * 255).astype(np.uint8) for x in wide]
    d = image_folder(tmp_path, size=16, channels=1)
    order = [0, 2, 1, 3]  # class a holds images 0 and 2, class b 1 and 3
    np.testing.assert_array_equal(d.images[:, 0].numpy(), np.stack([expected[i] for i in order]))
    pictures = [(Image.open(tmp_path / "ab"[i % 2] / f"{i}.png"), 0) for i in range(4)]
    np.testing.assert_array_equal((as_tensor_set(pictures).images[:, 0] * 255).round().numpy(), np.stack(expected))
    float_image = Image.fromarray((rng.random((16, 16)) * 2).astype(np.float32), "F")
    with pytest.raises(DataError, match=r"float pixels in \[.*\]; read are 8- and 16-bit images and float ones in \[0, 1\]"):
        as_tensor_set([(float_image, 0)] * 2)


def test_image_folder_empty_class_and_empty_root(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        image_folder(tmp_path, size=8)
    with pytest.raises(DataError, match="no class sub-folders"):
        image_folder(tmp_path / "a", size=8)


def test_synthetic_is_deterministic_and_learnable_shape():
    a, b = synthetic(32, 16, 4, seed=3), synthetic(32, 16, 4, seed=3)
    assert torch.equal(a.images, b.images) and a.images.shape == (32, 1, 16, 16)
    assert set(a.labels.tolist()) == {0, 1, 2, 3}
    assert not torch.equal(a.images, synthetic(32, 16, 4, seed=4).images)


def test_folder_dataset_through_the_config(tmp_path):
    from s2snets.config import DataConfig
    from s2snets.data import load_split

    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for cls in ("a", "b", "c"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.jpg")
    cfg = DataConfig(dataset="folder", root=str(tmp_path), size=16, channels=1, train_limit=10)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert train.images.shape == (10, 1, 16, 16) and len(test) == 12 and test.class_names == ("a", "b", "c")
    x = test.normalize(test.images)
    assert abs(float(x.mean())) < 1e-4  # the folder's own statistics travel with it
    with pytest.raises(DataError, match="data.root must name"):
        load_split(DataConfig(dataset="folder"), "train")


def test_class_index_maps_synset_folders_to_torchvision_order(tmp_path):
    import json

    from PIL import Image

    from s2snets.data import image_folder, imagenet_synsets
    from s2snets.errors import DataError

    synsets = imagenet_synsets()
    assert len(synsets) == 1000 and len(set(synsets)) == 1000 and list(synsets) == sorted(synsets)
    assert synsets[0] == "n01440764" and synsets[-1] == "n15075141"  # tench, toilet tissue
    for name in ("n15075141", "n01440764", "n02085620"):
        (tmp_path / "val" / name).mkdir(parents=True)
        Image.new("RGB", (20, 20), (len(name), 0, 0)).save(tmp_path / "val" / name / "a.png")
    data = image_folder(tmp_path / "val", 16, 3, class_index="imagenet")
    assert len(data.class_names) == 1000
    by_folder = {data.class_names[int(label)]: int(label) for label in data.labels}
    assert by_folder == {n: synsets.index(n) for n in ("n15075141", "n01440764", "n02085620")}
    assert sorted(by_folder.values()) == [0, synsets.index("n02085620"), 999]
    (tmp_path / "order.json").write_text(json.dumps({"n15075141": 0, "n01440764": 2, "n02085620": 1}))
    data = image_folder(tmp_path / "val", 16, 3, class_index=str(tmp_path / "order.json"))
    assert data.class_names == ("n15075141", "n02085620", "n01440764")
    (tmp_path / "val" / "cat").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "val" / "cat" / "a.png")
    with pytest.raises(DataError, match="class folder 'cat' is not in ImageNet-1k"):
        image_folder(tmp_path / "val", 16, 3, class_index="imagenet")

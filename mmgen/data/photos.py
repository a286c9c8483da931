"""Natural photos and textures bundled with scikit-image and scikit-learn, by name, offline.

Only images whose files ship inside the wheels are listed: every name loads with no network
(scikit-image fetches some other ``skimage.data`` images with ``pooch``; they are left out).

    list_photos()                     # ['astronaut', 'brick', 'camera', ...]
    load_photo("coffee", size=256)    # PIL RGB image, short side 256, center crop 256x256
    PhotoPatches(patch_size=64)       # random crops; item i is a pure function of (seed, i)

Grayscale images (camera, coins, moon and the three textures) are returned as RGB with three
equal channels, so every image has the same layout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset
from torchvision.transforms import InterpolationMode, v2


@dataclass(frozen=True)
class PhotoSource:
    library: str  # "skimage" (a function of skimage.data), "sklearn" (load_sample_image) or
    #   "matplotlib" (a file of its sample data)
    key: str  # the function name or the file name inside that library (a function that
    #   returns several images: the first, e.g. the left view of a stereo pair)
    kind: str  # "photo" or "texture"


PHOTOS: dict[str, PhotoSource] = {
    "astronaut": PhotoSource("skimage", "astronaut", "photo"),
    "brick": PhotoSource("skimage", "brick", "texture"),
    "camera": PhotoSource("skimage", "camera", "photo"),
    "chelsea": PhotoSource("skimage", "chelsea", "photo"),
    "china": PhotoSource("sklearn", "china.jpg", "photo"),
    "coffee": PhotoSource("skimage", "coffee", "photo"),
    "coins": PhotoSource("skimage", "coins", "photo"),
    "flower": PhotoSource("sklearn", "flower.jpg", "photo"),
    "grass": PhotoSource("skimage", "grass", "texture"),
    "grace_hopper": PhotoSource("matplotlib", "grace_hopper.jpg", "photo"),
    "gravel": PhotoSource("skimage", "gravel", "texture"),
    "hubble_deep_field": PhotoSource("skimage", "hubble_deep_field", "photo"),
    "immunohistochemistry": PhotoSource("skimage", "immunohistochemistry", "photo"),
    "moon": PhotoSource("skimage", "moon", "photo"),
    "motorcycle": PhotoSource("skimage", "stereo_motorcycle", "photo"),
    "retina": PhotoSource("skimage", "retina", "photo"),
    "rocket": PhotoSource("skimage", "rocket", "photo"),
}


def list_photos(kind: str | None = None) -> list[str]:
    """Names accepted by :func:`load_photo` and :class:`PhotoPatches`, sorted.

    Args:
        kind: ``"photo"`` or ``"texture"`` to list only that kind; ``None`` lists all.
    """
    if kind not in (None, "photo", "texture"):
        raise ValueError(f"kind must be None, 'photo' or 'texture', got {kind!r}")
    return sorted(name for name, source in PHOTOS.items() if kind in (None, source.kind))


def _check_name(name: str) -> PhotoSource:
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; available photos: {', '.join(list_photos())}")
    return PHOTOS[name]


@functools.cache
def _load_array(name: str) -> np.ndarray:
    """The photo as uint8 ``(H, W, 3)``, read once per process and kept read-only."""
    source = _check_name(name)
    if source.library == "skimage":
        try:
            import skimage.data
        except ImportError as e:
            raise ImportError(f"photo {name!r} comes with scikit-image; "
                              "install it with `pip install scikit-image`.") from e
        array = getattr(skimage.data, source.key)()
        array = array[0] if isinstance(array, tuple) else array
    elif source.library == "matplotlib":
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data(source.key)) as image:
            array = np.asarray(image.convert("RGB"))
    else:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as e:
            raise ImportError(f"photo {name!r} comes with scikit-learn; "
                              "install it with `pip install scikit-learn`.") from e
        array = load_sample_image(source.key)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"{source.library} returned {array.dtype} {array.shape} for photo "
                         f"{name!r}; expected a uint8 (H, W) or (H, W, 3) image.")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)  # grayscale -> (H, W, 3)
    array = np.ascontiguousarray(array[:, :, :3])
    array.setflags(write=False)
    return array


def load_photo(name: str, size: int | None = None) -> Image.Image:
    """One bundled photo as an RGB PIL image.

    Args:
        name: one of :func:`list_photos`.
        size: if given, resize so the short side is ``size`` (bicubic, antialiased), then
            center-crop to a ``size x size`` square. ``None`` keeps the original size.
    """
    image = Image.fromarray(_load_array(name)).copy()  # own buffer, never the cached one
    if size is None:
        return image
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int (or None for the original), got {size!r}")
    image = TF.resize(image, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.center_crop(image, [size, size])


class PhotoPatches(Dataset):
    """Random square crops of bundled photos: a deterministic, infinite-feeling dataset.

    Item ``i`` is a pure function of ``(seed, i)``: a generator seeded with ``[seed, i]`` picks
    one photo uniformly, then a uniformly random crop position. The same index gives the same
    patch in every process, worker and run. Items are ``(patch, photo_index)`` where ``patch``
    is float32 ``(3, patch_size, patch_size)`` in ``[0, 1]``, or ``[-1, 1]`` with
    ``normalize=True``, and ``photo_index`` indexes ``self.names``.

    Args:
        names: photos to crop from (default: all of :func:`list_photos`).
        patch_size: side of the square patches, in pixels.
        length: number of items (distinct random crops) in the dataset.
        seed: non-negative int; a different seed gives a different set of crops.
        transform: optional callable applied to the patch tensor (after scaling).
        normalize: scale to ``[-1, 1]`` instead of ``[0, 1]``.
        photo_size: if given, first resize each photo so its short side is ``photo_size``
            (no crop); smaller photos make a patch cover more of the scene.
    """

    def __init__(self, names: list[str] | None = None, patch_size: int = 64,
                 length: int = 10_000, seed: int = 0,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 normalize: bool = False, photo_size: int | None = None):
        self.names = list_photos() if names is None else list(names)
        if not self.names:
            raise ValueError(f"names is empty; pass some of {list_photos()} or None for all.")
        if patch_size <= 0 or length <= 0 or seed < 0:
            raise ValueError(f"need patch_size > 0, length > 0 and seed >= 0; got "
                             f"patch_size={patch_size}, length={length}, seed={seed}.")
        self.patch_size, self.length, self.seed = patch_size, length, seed
        self.transform, self.normalize = transform, normalize
        self.photos = []  # uint8 (3, H, W) tensors
        for name in self.names:
            image = load_photo(name)
            if photo_size is not None:
                image = TF.resize(image, photo_size, interpolation=InterpolationMode.BICUBIC,
                                  antialias=True)
            if min(image.size) < patch_size:
                raise ValueError(
                    f"photo {name!r} is {image.width}x{image.height} after resizing, smaller "
                    f"than patch_size={patch_size}; use a smaller patch_size, a larger "
                    "photo_size, or leave this photo out of names."
                )
            self.photos.append(TF.pil_to_tensor(image))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for PhotoPatches of length {self.length}")
        rng = np.random.default_rng([self.seed, i])
        k = int(rng.integers(len(self.photos)))
        photo = self.photos[k]
        _, height, width = photo.shape
        top = int(rng.integers(height - self.patch_size + 1))
        left = int(rng.integers(width - self.patch_size + 1))
        patch = photo[:, top:top + self.patch_size, left:left + self.patch_size]
        patch = patch.float() / 255.0  # (3, P, P) in [0, 1]
        if self.normalize:
            patch = patch * 2.0 - 1.0  # [-1, 1]
        if self.transform is not None:
            patch = self.transform(patch)
        return patch, k


CROPS = 100_000  # items of photo_crops (a training sampler cycles; a longer run sees them again)


def photo_crops(names: Sequence[str], patch_size: int, photo_sizes: Sequence[int], seed: int,
                length: int = CROPS) -> Dataset:
    """Random ``patch_size`` crops of the photos ``names``, from the photos resized (short
    side) to each of ``photo_sizes`` in turn (a random scale), flipped left-right with
    probability 1/2 (the global torch RNG, which checkpoints restore); items
    ``(image (3, P, P) in [0, 1], photo index)``, ``length`` in all."""
    flip = v2.RandomHorizontalFlip()
    return ConcatDataset([PhotoPatches(list(names), patch_size, length // len(photo_sizes),
                                       seed=seed + i, transform=flip, photo_size=size)
                          for i, size in enumerate(photo_sizes)])

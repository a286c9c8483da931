"""Your own images: a folder of image files, with optional class subfolders and captions.

Layout (like torchvision's ``ImageFolder``, but subfolders and captions are optional)::

    root/
      captions.jsonl          # optional: {"file": "cats/001.png", "caption": "a cat"} per line
      cats/001.png            # label = index of "cats" in dataset.classes
      cats/001.txt            # optional sidecar caption for cats/001.png
      dogs/puppies/002.jpg    # searched recursively; the class is the top-level folder "dogs"
      loose.png               # directly in root: label -1 (no class)

Hidden files and folders (names starting with ``.``, e.g. macOS ``._x.png`` resource forks)
are ignored. Every file is header-checked when the dataset is built, so a damaged file is
reported by name up front instead of crashing a training run hours later.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import InterpolationMode

from mmgen.limits import MAX_INPUT_PIXELS, LimitError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CAPTIONS_FILE = "captions.jsonl"  # optional, in root
MAX_LISTED = 10  # file names quoted in one warning; the full list is on the dataset


class UnreadableImageError(OSError):
    """An image file could not be opened or decoded; the message names the file."""


def open_image(path: str | os.PathLike, mode: str | None = "RGB") -> Image.Image:
    """Decode the image file ``path`` into a PIL image of ``mode``, safely: a file larger
    than :data:`mmgen.limits.MAX_INPUT_PIXELS` (a decompression bomb) is refused from its
    header, before anything is decoded. ``mode=None`` keeps the file's own mode (a palette
    image still becomes RGBA), for callers that convert by mode themselves.

    Raises:
        UnreadableImageError: the file is missing, not an image, damaged, or too large; the
            message names the file and the reason.
    """
    try:
        with warnings.catch_warnings():  # our own limit replaces PIL's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                MAX_INPUT_PIXELS.check(width * height, f"{path}: image size {width}x{height} "
                                                       f"({width * height:,} pixels)")
                if image.mode == "P":
                    image = image.convert("RGBA")  # applies palette transparency cleanly
                return image.convert(mode) if mode is not None else image.copy()
    except LimitError as e:
        raise UnreadableImageError(str(e)) from None
    except Image.DecompressionBombError as e:
        raise UnreadableImageError(f"{path}: refused as a decompression bomb by Pillow ({e}; "
                                   "PIL.Image.MAX_IMAGE_PIXELS sets that limit)") from None
    except FileNotFoundError:
        raise UnreadableImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableImageError(f"{path} is a folder, not an image file") from None
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise UnreadableImageError(f"{path}: not a readable image, damaged or of an unknown "
                                   f"format ({type(e).__name__}: {e})") from None


def find_images(root: Path, extensions: Iterable[str]) -> list[str]:
    """Image files under ``root`` (recursive, hidden entries skipped), as sorted posix paths
    relative to ``root``.

    Args:
        root: the folder to search.
        extensions: file suffixes to accept, case-insensitive (``".png"`` or ``"png"``).
    """
    suffixes = {("." + e.lower().lstrip(".")) for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prune hidden folders
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def _header_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable image (cheap check, no full decode), or None if it is."""
    try:
        with Image.open(path) as image:
            image.verify()  # parses the header; for PNG also walks chunks and checks CRCs
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return f"{type(e).__name__}: {e}"
    return None


def _read_captions_jsonl(path: Path) -> dict[str, str]:
    """``{relative posix path: caption}`` from a ``captions.jsonl`` file."""
    captions = {}
    example = '{"file": "cats/001.png", "caption": "a cat on a sofa"}'
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: invalid JSON ({e}); each line must be an "
                             f"object like {example}") from e
        if (not isinstance(entry, dict) or not isinstance(entry.get("file"), str)
                or not isinstance(entry.get("caption"), str)):
            raise ValueError(f"{path}:{lineno}: expected an object with string fields "
                             f'"file" and "caption", like {example}; got {line.strip()[:200]}')
        captions[Path(entry["file"]).as_posix()] = entry["caption"]
    return captions


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


class ImageFolderDataset(Dataset):
    """Images from a folder, each with an optional caption and a class label.

    Items are dicts ``{"image", "caption", "label", "file"}``: ``image`` a float32 tensor
    ``(3, H, W)`` in ``[0, 1]`` (``[-1, 1]`` with ``normalize=True``; grayscale and palette
    images are converted to RGB, alpha is dropped); ``caption`` a str, or None when the image
    has none; ``label`` the index of the image's top-level subfolder in ``self.classes``, or
    -1 for images directly in ``root``; ``file`` the path relative to ``root``. Use
    ``DataLoader(ds, collate_fn=ImageFolderDataset.collate)`` to batch them (captions may be
    None, which the default collate cannot batch).

    Captions come from ``root/captions.jsonl`` (one ``{"file": ..., "caption": ...}`` object
    per line, ``file`` relative to ``root``) or, for images it does not mention, from a
    sidecar ``.txt`` file with the same stem next to the image.

    Args:
        root: the folder to read (searched recursively).
        size: if given, resize the short side to ``size`` (bicubic, antialiased) and
            center-crop to ``size x size``; ``None`` keeps each image's own size.
        captions: read captions; if False every caption is None.
        transform: optional callable applied to the image tensor (after scaling).
        extensions: file suffixes treated as images (case-insensitive).
        skip_bad: files that fail the header check at construction are excluded with one
            warning naming them (True), or raise :class:`UnreadableImageError` (False).
        normalize: scale images to ``[-1, 1]`` instead of ``[0, 1]``.
    """

    def __init__(self, root: str | os.PathLike, size: int | None = None, captions: bool = True,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 extensions: Iterable[str] = IMAGE_EXTENSIONS, skip_bad: bool = True,
                 normalize: bool = False):
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder {self.root} does not exist; check the path.")
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is a file; pass the folder that holds the "
                                     "images.")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ValueError(f"size must be a positive int (or None for the original), got "
                             f"{size!r}")
        self.size, self.transform, self.normalize = size, transform, normalize
        extensions = (extensions,) if isinstance(extensions, str) else tuple(extensions)
        found = find_images(self.root, extensions)
        if not found:
            raise ValueError(f"no image files ({', '.join(extensions)}) found under {self.root} "
                             "(searched recursively, hidden files ignored); add images or pass "
                             "extensions=... matching your files.")
        # Classes come from every file found, so skipping a bad file never renumbers them.
        self.classes = sorted({f.split("/")[0] for f in found if "/" in f})
        self.files, self.bad_files = self._check_files(found, skip_bad)
        index = {name: i for i, name in enumerate(self.classes)}
        self.labels = [index[f.split("/")[0]] if "/" in f else -1 for f in self.files]
        self.captions = self._load_captions(set(found)) if captions else [None] * len(self.files)

    def _check_files(self, found: list[str], skip_bad: bool) -> tuple[list[str], list[str]]:
        """Split ``found`` into readable and bad files; warn about or raise on the bad ones."""
        good, bad = [], []
        for f in found:
            problem = _header_problem(self.root / f)
            if problem is None:
                good.append(f)
            elif not skip_bad:
                raise UnreadableImageError(
                    f"cannot read image {self.root / f} ({problem}); fix or delete the file, "
                    "or pass skip_bad=True to leave unreadable files out with a warning."
                )
            else:
                bad.append(f)
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable image file(s) under {self.root}: "
                          f"{_listing(bad)}; fix or delete them (the full list is in "
                          "dataset.bad_files), or pass skip_bad=False to raise instead.",
                          stacklevel=3)
        if not good:
            raise UnreadableImageError(f"none of the {len(found)} image files under "
                                       f"{self.root} is readable: {_listing(bad)}")
        return good, bad

    def _load_captions(self, found: set[str]) -> list[str | None]:
        """One caption (or None) per kept file: captions.jsonl first, then sidecar .txt."""
        jsonl = self.root / CAPTIONS_FILE
        listed = _read_captions_jsonl(jsonl) if jsonl.is_file() else {}
        unknown = sorted(set(listed) - found)
        if unknown:
            warnings.warn(f"{jsonl} has captions for {len(unknown)} file(s) that are not "
                          f"images under {self.root}: {_listing(unknown)}; check the "
                          '"file" paths (relative to root, with / separators).', stacklevel=3)
        captions = []
        for f in self.files:
            sidecar = (self.root / f).with_suffix(".txt")
            if f in listed:
                captions.append(listed[f])
            elif sidecar.is_file():
                captions.append(sidecar.read_text(encoding="utf-8").strip())
            else:
                captions.append(None)
        return captions

    def __len__(self) -> int:
        return len(self.files)

    def load_image(self, i: int) -> Image.Image:
        """Image ``i`` as an RGB PIL image, resized and cropped if ``size`` was given."""
        path = self.root / self.files[i]
        image = open_image(path)
        if self.size is not None:
            image = TF.resize(image, self.size, interpolation=InterpolationMode.BICUBIC,
                              antialias=True)
            image = TF.center_crop(image, [self.size, self.size])
        return image

    def __getitem__(self, i: int) -> dict:
        image = TF.pil_to_tensor(self.load_image(i)).float() / 255.0  # (3, H, W) in [0, 1]
        if self.normalize:
            image = image * 2.0 - 1.0  # [-1, 1]
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "caption": self.captions[i], "label": self.labels[i],
                "file": self.files[i]}

    @staticmethod
    def collate(items: list[dict]) -> dict:
        """Batch items: stack ``image`` (needs equal sizes, e.g. set ``size``) and ``label``;
        keep ``caption`` (str or None) and ``file`` as lists."""
        batch = default_collate([{"image": it["image"], "label": it["label"]} for it in items])
        batch["caption"] = [it["caption"] for it in items]
        batch["file"] = [it["file"] for it in items]
        return batch

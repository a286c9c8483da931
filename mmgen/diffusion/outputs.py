"""Where generated images are written, never replacing a file (``mmgen generate --out``).

* A folder: each image gets a new name ``NNNNN-SEED-prompt.png`` (a counter one above the
  highest in the folder, the image's seed, the prompt), the grid of several images
  ``NNNNN-grid-prompt.png``. Names are claimed atomically, so concurrent runs into one folder
  each keep their images (:func:`mmgen.checkpoint.write_numbered`).
* A file ``NAME.png`` (several images: ``NAME-00.png``, ... and ``NAME-grid.png``): refused
  up front if it exists, unless ``overwrite``; written atomically.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mmgen.diffusion.images import image_grid
from mmgen.diffusion.metadata import GenerationParams, save_png, save_png_numbered


@dataclass
class OutputTarget:
    folder: Path  # where the images go
    slug: str  # the prompt as a file-name part ("a-red-circle")
    files: list[Path] | None  # explicit file names, one per image (None: numbered names)
    grid: Path | None  # the grid's explicit file name (None: numbered, if several images)
    overwrite: bool  # replace explicit files that exist

    @classmethod
    def parse(cls, out: str | None, prompt: str, n: int, overwrite: bool = False
              ) -> OutputTarget:
        """The target for ``out`` (a folder, a ``.png`` file, or None: the current folder)
        and ``n`` images of ``prompt``; every check is made here, before any work.

        Raises:
            ValueError: ``out`` is empty, or a file whose name does not end in ``.png``.
            FileExistsError: an explicit file exists and ``overwrite`` is False.
            OSError: the folder cannot be created or written.
        """
        if out is not None and not out.strip():
            raise ValueError("--out must not be empty: give a .png file or a folder")
        target = Path(out) if out else Path(".")
        as_file = target.suffix.lower() == ".png"
        if target.suffix and not as_file and not target.is_dir():
            raise ValueError(f"--out {out}: a file must end in .png (or give a folder)")
        folder = target.parent if as_file else target
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create the output folder {folder}: {e.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot write to {folder}: permission denied")
        slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "image"
        if not as_file:
            return cls(folder, slug, None, None, overwrite)
        files = [target] if n == 1 else [folder / f"{target.stem}-{i:02d}.png" for i in range(n)]
        grid = folder / f"{target.stem}-grid.png" if n > 1 else None
        existing = [str(f) for f in [*files, grid] if f is not None and f.exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                "--overwrite replaces, or give a folder as --out to get new names")
        return cls(folder, slug, files, grid, overwrite)

    def write(self, images: list[Image.Image]) -> tuple[list[Path], Path | None]:
        """Write ``images`` (made by a pipeline: they carry their parameters) and, for
        several, a grid labelled with their seeds; returns (image paths, grid path)."""
        seeds = [GenerationParams.from_json(im.info["mmgen"]).seed for im in images]
        paths = [save_png_numbered(im, self.folder, f"{seed}-{self.slug}") if self.files is None
                 else save_png(im, self.files[i], self.overwrite)
                 for i, (im, seed) in enumerate(zip(images, seeds, strict=True))]
        if len(images) < 2:
            return paths, None
        sheet = image_grid(images, labels=[f"seed {s}" for s in seeds],
                           scale=max(1, 256 // images[0].width))
        grid = save_png_numbered(sheet, self.folder, f"grid-{self.slug}") if self.grid is None \
            else save_png(sheet, self.grid, self.overwrite)
        return paths, grid

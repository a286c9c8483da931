"""Text -> image (and image -> image) search over a folder, with a cached embedding index.

The index of a folder is cached under ``$MMGEN_CACHE/search`` (default
``~/.cache/mmgen/search``), keyed by the folder's absolute path and the model. Each cached
entry remembers the file's size and modification time: on the next search only new or
changed files are embedded, removed files are dropped, and an unchanged folder is not read
at all beyond listing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from safetensors.torch import load_file

from mmgen.checkpoint import atomic_path, save_state_dict
from mmgen.clip.zero_shot import retrieve
from mmgen.data.folder import IMAGE_EXTENSIONS

BATCH = 64


def cache_dir() -> Path:
    root = os.environ.get("MMGEN_CACHE") or Path.home() / ".cache" / "mmgen"
    return Path(root) / "search"


@dataclass
class SearchHit:
    file: str  # path of the image
    score: float  # cosine similarity with the query


def _listing(folder: Path) -> dict[str, list[int]]:
    """Relative path -> [size, mtime_ns] of every image file below ``folder``."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS \
                and not any(part.startswith(".") for part in rel.parts):
            st = path.stat()
            out[rel.as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def _open_rgb(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError):
        return None


class ImageIndex:
    """Normalised CLIP embeddings of every readable image in ``folder``."""

    def __init__(self, folder: str | os.PathLike, model: torch.nn.Module, model_id: str):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
        self.model, self.model_id = model, model_id
        key = hashlib.sha256(f"{self.folder.resolve()}|{model_id}".encode()).hexdigest()[:24]
        self.cache = cache_dir() / key
        self.files: list[str] = []
        self.embeddings = torch.empty(0)
        self.embedded_now = 0  # how many images this call embedded (0: cache reused)

    def build(self) -> ImageIndex:
        """Load the cache, embed what is new or changed, save, and return ``self``.

        Unreadable files are skipped with a warning naming them (every time, but they are
        re-read only when they change)."""
        listing = _listing(self.folder)
        if not listing:
            raise FileNotFoundError(f"{self.folder} holds no image files {IMAGE_EXTENSIONS}")
        old_meta, old_bad, old_emb = self._load_cache()
        keep = [f for f in listing if old_meta.get(f) == listing[f]]
        known_bad = [f for f in listing if old_bad.get(f) == listing[f]]
        todo = [f for f in listing if f not in keep and f not in known_bad]
        new_files, new_emb = self._embed(todo)
        rows = {f: old_emb[i] for i, f in enumerate(old_meta) if f in keep}
        rows.update(zip(new_files, new_emb, strict=True))
        bad = known_bad + [f for f in todo if f not in rows]
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable image(s): {', '.join(bad)}",
                          stacklevel=2)
        self.files = [f for f in listing if f in rows]
        if not self.files:
            raise ValueError(f"none of the images in {self.folder} could be read")
        self.embeddings = torch.stack([rows[f] for f in self.files])
        self.embedded_now = len(new_files)  # (unreadable files are not counted)
        if todo or len(keep) != len(old_meta) or len(known_bad) != len(old_bad):
            self._save_cache({f: listing[f] for f in self.files}, {f: listing[f] for f in bad})
        return self

    def _embed(self, files: Sequence[str]) -> tuple[list[str], list[torch.Tensor]]:
        from mmgen.clip.zero_shot import encode_images

        good, rows = [], []
        for start in range(0, len(files), BATCH):
            images = []
            for f in files[start:start + BATCH]:
                image = _open_rgb(self.folder / f)
                if image is not None:
                    good.append(f)
                    images.append(image)
            if images:
                rows.extend(encode_images(self.model, self.model.preprocess(images)))
        return good, rows

    def _load_cache(self) -> tuple[dict[str, list[int]], dict[str, list[int]], torch.Tensor]:
        """(good files, unreadable files, embeddings) of the cache; empty if stale/absent."""
        meta_path, emb_path = self.cache / "index.json", self.cache / "embeddings.safetensors"
        if not (meta_path.is_file() and emb_path.is_file()):
            return {}, {}, torch.empty(0)
        meta = json.loads(meta_path.read_text())
        if meta.get("model") != self.model_id:
            return {}, {}, torch.empty(0)
        return meta["files"], meta.get("bad", {}), load_file(str(emb_path))["embeddings"]

    def _save_cache(self, files: dict[str, list[int]], bad: dict[str, list[int]]) -> None:
        with atomic_path(self.cache) as tmp:
            tmp.mkdir()
            save_state_dict({"embeddings": self.embeddings}, tmp / "embeddings.safetensors")
            (tmp / "index.json").write_text(json.dumps({"model": self.model_id,
                                                         "folder": str(self.folder.resolve()),
                                                         "files": files, "bad": bad}))

    @torch.no_grad()
    def search(self, query: str, k: int = 5) -> list[SearchHit]:
        """Top-k images for a text query, or for an image query (an existing image path)."""
        if Path(query).suffix.lower() in IMAGE_EXTENSIONS and Path(query).is_file():
            image = _open_rgb(Path(query))
            if image is None:
                raise ValueError(f"{query}: not a readable image")
            from mmgen.clip.zero_shot import encode_images

            q = encode_images(self.model, self.model.preprocess([image]))
        else:
            device = next(self.model.parameters()).device
            tokens = self.model.tokenize([query]).to(device)  # at the model's context length
            q = self.model.encode_text(tokens, normalize=True).cpu()
        scores, idx = retrieve(q, self.embeddings, k)
        return [SearchHit(str(self.folder / self.files[i]), round(s, 6))
                for s, i in zip(scores[0].tolist(), idx[0].tolist(), strict=True)]

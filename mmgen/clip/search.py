"""Text -> image (and image -> image) search over a folder, with a cached embedding index.

The index of a folder is cached under ``$MMGEN_CACHE/search`` (default
``~/.cache/mmgen/search``), keyed by the folder's absolute path and the model. Each cached
entry remembers the file's size and modification time: on the next search only new or
changed files are embedded, removed files are dropped, and an unchanged folder is not read
at all beyond listing it.

The cache heals itself: a damaged cache (unparsable or malformed ``index.json``, a truncated
``embeddings.safetensors``, or the two out of step) is reported in a warning and rebuilt.
Unreadable images (damaged, not images, or over ``$MMGEN_MAX_INPUT_PIXELS``) are skipped
with one warning naming each and why; they are remembered, and re-read only when they change
or the pixel limit does.
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

from mmgen.checkpoint import atomic_path, load_safetensors, read_json, save_state_dict
from mmgen.clip.zero_shot import encode_images, retrieve
from mmgen.data.folder import IMAGE_EXTENSIONS, UnreadableImageError, open_image
from mmgen.limits import MAX_INPUT_PIXELS

BATCH = 64
MAX_REASON = 160  # characters of an unreadable file's reason quoted in the warning

# The layout of index.json (embeddings.safetensors holds "embeddings" (N, E), one row per
# entry of "files", in order):
#   {"model": model id, "folder": absolute path (informative),
#    "files": {relative path: [size, mtime_ns]},            (the embedded images)
#    "bad": {relative path: [size, mtime_ns, reason]},      (the unreadable ones)
#    "max_input_pixels": the limit the "bad" files were read under}
Listing = dict[str, list[int]]  # relative path -> [size, mtime_ns]


def cache_dir() -> Path:
    root = os.environ.get("MMGEN_CACHE") or Path.home() / ".cache" / "mmgen"
    return Path(root) / "search"


@dataclass
class SearchHit:
    file: str  # path of the image
    score: float  # cosine similarity with the query


def _listing(folder: Path) -> Listing:
    """Relative path -> [size, mtime_ns] of every image file below ``folder``."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS \
                and not any(part.startswith(".") for part in rel.parts):
            st = path.stat()
            out[rel.as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def _reason(error: UnreadableImageError, path: Path, name: str) -> str:
    """Why ``path`` is unreadable, without its full path (the warning names it as ``name``),
    cut to :data:`MAX_REASON` characters."""
    text = str(error).removeprefix(f"{path}: ").replace(str(path), name)
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 1] + "…"


def _skipped_message(bad: dict[str, str]) -> str:
    """The one warning for all unreadable files (name -> reason, "" if unknown)."""
    named = [f"{f} ({reason})" if reason else f for f, reason in bad.items()]
    return f"skipped {len(bad)} unreadable image(s): {', '.join(named)}"


def _is_stamp(entry: object) -> bool:
    """Whether ``entry`` is a [size, mtime_ns] pair of ints."""
    return isinstance(entry, list) and len(entry) == 2 \
        and all(type(x) is int for x in entry)  # (not bool, a subclass of int)


def _is_bad_entry(entry: object) -> bool:
    """Whether ``entry`` is [size, mtime_ns, reason] (or [size, mtime_ns] from older caches)."""
    return isinstance(entry, list) and _is_stamp(entry[:2]) \
        and (len(entry) == 2 or len(entry) == 3 and isinstance(entry[2], str))


def _check_index(meta: object) -> None:
    """Raise ValueError saying how ``meta`` (a parsed index.json) breaks the layout above."""
    if not isinstance(meta, dict):
        raise ValueError(f"index.json holds a JSON {type(meta).__name__}, expected an object")
    if not isinstance(meta.get("model"), str):
        raise ValueError('index.json has no "model" string')
    files, bad = meta.get("files"), meta.get("bad", {})  # ("bad" is absent in older caches)
    if not isinstance(files, dict) or not all(map(_is_stamp, files.values())):
        raise ValueError('"files" of index.json is not an object of name -> [size, mtime_ns]')
    if not isinstance(bad, dict) or not all(map(_is_bad_entry, bad.values())):
        raise ValueError('"bad" of index.json is not an object of name -> '
                         '[size, mtime_ns, reason]')


def _read_index(path: Path) -> dict:
    """The parsed and checked index.json at ``path``; ValueError saying why it is not."""
    if not path.is_file():
        raise ValueError("index.json is missing")
    meta = read_json(path)
    _check_index(meta)
    return meta


def _read_embeddings(path: Path, rows: int, width: int) -> torch.Tensor:
    """The (rows, width) embeddings saved at ``path``; ValueError saying why they are not."""
    if not path.is_file():
        raise ValueError("embeddings.safetensors is missing")
    tensors = load_safetensors(path)  # CorruptCheckpointError (a ValueError) if damaged
    emb = tensors.get("embeddings")
    if emb is None:
        raise ValueError(f'embeddings.safetensors has no "embeddings" tensor, only '
                         f"{sorted(tensors)}")
    if not emb.is_floating_point() or emb.ndim != 2:
        raise ValueError(f"the embeddings are {emb.dtype} of shape {tuple(emb.shape)}, "
                         "expected a float matrix")
    if emb.shape != (rows, width):
        raise ValueError(f"the embeddings have shape {tuple(emb.shape)}, but index.json "
                         f"lists {rows} files and the model embeds to width {width}")
    if not torch.isfinite(emb).all():
        raise ValueError("the embeddings hold NaN or infinite values")
    return emb


def _unchanged_bad(old_bad: dict[str, list], listing: Listing) -> dict[str, str]:
    """The cached unreadable files that have not changed since: name -> reason."""
    out = {}
    for f, stamp in listing.items():
        entry = old_bad.get(f)
        if entry is not None and entry[:2] == stamp:
            out[f] = entry[2] if len(entry) > 2 else ""
    return out


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

        A damaged cache is rebuilt with a warning. Unreadable files are skipped with one
        warning naming them and why (every time, but they are re-read only when they change
        or ``$MMGEN_MAX_INPUT_PIXELS`` does)."""
        limit = MAX_INPUT_PIXELS.value  # a bad $MMGEN_MAX_INPUT_PIXELS fails here, not per file
        listing = _listing(self.folder)
        if not listing:
            raise FileNotFoundError(f"{self.folder} holds no image files {IMAGE_EXTENSIONS}")
        old_meta, old_bad, old_emb = self._load_cache(limit)
        keep = {f for f in listing if old_meta.get(f) == listing[f]}
        known_bad = _unchanged_bad(old_bad, listing)
        todo = [f for f in listing if f not in keep and f not in known_bad]
        new_files, new_emb, new_bad = self._embed(todo)
        rows = {f: old_emb[i] for i, f in enumerate(old_meta) if f in keep}
        rows.update(zip(new_files, new_emb, strict=True))
        skipped = {**known_bad, **new_bad}
        bad = {f: skipped[f] for f in listing if f in skipped}  # in listing order
        if bad:
            warnings.warn(_skipped_message(bad), stacklevel=2)
        self.files = [f for f in listing if f in rows]
        if not self.files:
            raise ValueError(f"none of the images in {self.folder} could be read")
        self.embeddings = torch.stack([rows[f] for f in self.files])
        self.embedded_now = len(new_files)  # (unreadable files are not counted)
        if todo or len(keep) != len(old_meta) or len(known_bad) != len(old_bad):
            self._save_cache({f: listing[f] for f in self.files},
                             {f: [*listing[f], reason] for f, reason in bad.items()}, limit)
        return self

    def _embed(self, files: Sequence[str]
               ) -> tuple[list[str], list[torch.Tensor], dict[str, str]]:
        """(the readable ``files``, their embeddings, the unreadable ones: name -> reason)."""
        good, rows, bad = [], [], {}
        for start in range(0, len(files), BATCH):
            images = []
            for f in files[start:start + BATCH]:
                try:
                    images.append(open_image(self.folder / f, mode="RGB"))
                except UnreadableImageError as e:
                    bad[f] = _reason(e, self.folder / f, f)
                else:
                    good.append(f)
            if images:
                rows.extend(encode_images(self.model, self.model.preprocess(images)))
        return good, rows, bad

    def _load_cache(self, limit: float) -> tuple[Listing, dict[str, list], torch.Tensor]:
        """(good files, unreadable files, embeddings) of the cache: empty if there is none or
        it was made for another model; empty with a warning if it is damaged. The unreadable
        files are forgotten (to be re-read) if they were read under another pixel limit."""
        empty: tuple[Listing, dict[str, list], torch.Tensor] = ({}, {}, torch.empty(0))
        if not self.cache.exists():
            return empty
        try:
            meta = _read_index(self.cache / "index.json")
            if meta["model"] != self.model_id:
                return empty  # made for another model: stale, not damaged
            emb = _read_embeddings(self.cache / "embeddings.safetensors", len(meta["files"]),
                                   self.model.config.embed_dim)
        except (OSError, ValueError) as e:
            reason = str(e).replace(f"{self.cache}{os.sep}", "")  # the warning names the folder
            warnings.warn(f"search cache {self.cache} is unreadable ({reason}); rebuilding it",
                          stacklevel=3)
            return empty
        bad = meta.get("bad", {}) if meta.get("max_input_pixels") == limit else {}
        return meta["files"], bad, emb

    def _save_cache(self, files: Listing, bad: dict[str, list], limit: float) -> None:
        with atomic_path(self.cache) as tmp:
            tmp.mkdir()
            save_state_dict({"embeddings": self.embeddings}, tmp / "embeddings.safetensors")
            (tmp / "index.json").write_text(json.dumps({"model": self.model_id,
                                                         "folder": str(self.folder.resolve()),
                                                         "files": files, "bad": bad,
                                                         "max_input_pixels": limit}))

    @torch.no_grad()
    def search(self, query: str | torch.Tensor, k: int = 5) -> list[SearchHit]:
        """Top-k images for a text query, an image query (an existing image path), or a
        query embedding from :meth:`encode_query`.

        Raises:
            ValueError: the image query is not a readable image (the message names it).
        """
        q = self.encode_query(query) if isinstance(query, str) else query
        scores, idx = retrieve(q, self.embeddings, k)
        return [SearchHit(str(self.folder / self.files[i]), round(s, 6))
                for s, i in zip(scores[0].tolist(), idx[0].tolist(), strict=True)]

    @torch.no_grad()
    def encode_query(self, query: str) -> torch.Tensor:
        """The normalised embedding (1, E) of a text, or of an image file's content if
        ``query`` is the path of one; a ``ValueError`` naming an unreadable image query."""
        if Path(query).suffix.lower() in IMAGE_EXTENSIONS and Path(query).is_file():
            try:
                image = open_image(query, mode="RGB")
            except UnreadableImageError as e:
                raise ValueError(f"image query {e}") from None
            return encode_images(self.model, self.model.preprocess([image]))
        device = next(self.model.parameters()).device
        tokens = self.model.tokenize([query]).to(device)  # at the model's context length
        return self.model.encode_text(tokens, normalize=True).cpu()

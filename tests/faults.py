"""Damaged and hostile files for the reliability tests (imported by several test files)."""

import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

from PIL import Image, PngImagePlugin


def png(path, size=(16, 16), chunk: str | None = None) -> Path:
    """A small valid PNG, with ``chunk`` as its ``mmgen`` parameters text if given."""
    info = PngImagePlugin.PngInfo()
    if chunk is not None:
        info.add_itxt("mmgen", chunk)
    Image.new("RGB", size, (200, 30, 30)).save(path, pnginfo=info)
    return Path(path)


def bomb_png(path, width=100_000, height=100_000) -> Path:
    """A tiny valid PNG whose header claims ``width`` x ``height`` pixels (a decompression
    bomb: decoding it would allocate width * height * 3 bytes)."""
    png(path)
    data = bytearray(Path(path).read_bytes())
    # signature (8) | IHDR chunk: length (4), type (4), width, height, ... (13), CRC (4)
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    Path(path).write_bytes(bytes(data))
    return Path(path)


def truncate(path, keep: float = 0.5) -> Path:
    """Cut ``path`` to ``keep`` of its size (a crash during a non-atomic copy)."""
    path = Path(path)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    return path


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: a stand-in for any code-execution gadget."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_pickle(path, marker) -> Path:
    """A pickle-based weight file that would create ``marker`` if it were unpickled."""
    Path(path).write_bytes(pickle.dumps({"weight": 1, "x": CreatesFile(marker)}))
    return Path(path)


def model_copy(source, dest, edit=None) -> Path:
    """A copy of the model folder ``source``, its config.json's dict passed through
    ``edit(meta) -> meta`` (None: unchanged)."""
    shutil.copytree(source, dest)
    if edit is not None:
        meta = json.loads((Path(dest) / "config.json").read_text())
        (Path(dest) / "config.json").write_text(json.dumps(edit(meta)))
    return Path(dest)


def set_field(name, value):
    """An ``edit`` for :func:`model_copy` setting config field ``name``."""
    def edit(meta):
        meta["config"][name] = value
        return meta

    return edit

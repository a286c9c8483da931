"""Sections of a generated markdown file that another script owns: each sits between
``<!-- begin NAME -->`` and ``<!-- end NAME -->`` lines, and a script that rewrites the rest
of the file keeps them (``scripts/t2i_results.py`` writes docs/results.md, and
``scripts/dit_study.py`` its DiT section)."""

from __future__ import annotations

import re
from pathlib import Path


def _pattern(name: str = r"\S+") -> re.Pattern[str]:
    return re.compile(rf"<!-- begin ({name}) -->\n.*?<!-- end \1 -->\n", re.S)


def sections(text: str) -> str:
    """The owned sections of ``text``, concatenated (to append to a rewritten file)."""
    return "".join(m.group(0) for m in _pattern().finditer(text))


def replace_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` as section ``name`` of the file at ``path`` (appended if it is new)."""
    block = f"<!-- begin {name} -->\n{body.rstrip()}\n<!-- end {name} -->\n"
    text = path.read_text() if path.is_file() else ""
    pattern = _pattern(re.escape(name))
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block if text else block)
    path.write_text(text)

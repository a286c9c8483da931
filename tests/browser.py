"""Headless-browser helpers for tests of the Gradio app (imported like cli_runner).

The browser is Debian's ``chromium`` (``make setup`` installs it with apt-get), driven by
Playwright's sync API: Playwright cannot download its own browser build on this network.
A missing browser or Playwright fails the test with instructions; it never skips.

    with serve_blocks(demo) as url, browser_page() as page:
        page.goto(url)
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import gradio as gr
    from playwright.sync_api import Page

# Gradio reports usage to its servers unless told not to; there is no network here.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _find_chromium() -> str | None:
    """``$MMGEN_CHROMIUM`` if set, else Debian's ``/usr/bin/chromium``, else ``chromium`` on
    PATH; None when there is no such executable."""
    override = os.environ.get("MMGEN_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


CHROMIUM: str | None = _find_chromium()

# Headless and quiet: without the background-networking flags Chromium keeps dialling out,
# and the closed network refuses it. Playwright adds a fresh empty --user-data-dir itself.
CHROMIUM_ARGS: list[str] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TIMEOUT_MS = 20_000  # default for every Playwright wait, action and expect() on the page

_SETUP_HINT = "run `make setup` (it installs Debian's chromium and the Python playwright)"


@contextmanager
def browser_page(screenshot: str | Path | None = None) -> Iterator[Page]:
    """A fresh headless Chromium page (downloads accepted), closed with its browser on exit.

    ``screenshot``: a PNG path written when the block exits, also when it fails.
    """
    if CHROMIUM is None:
        where = os.environ.get("MMGEN_CHROMIUM") or "/usr/bin/chromium"
        pytest.fail(f"no Chromium executable at {where}: {_SETUP_HINT}", pytrace=False)
    try:
        from playwright.sync_api import Error, expect, sync_playwright
    except ImportError as err:
        pytest.fail(f"Python package playwright is missing ({err}): {_SETUP_HINT}", pytrace=False)

    expect.set_options(timeout=TIMEOUT_MS)  # process-wide; the default 5 s is tight under -n 2
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Error as err:
            pytest.fail(f"could not start {CHROMIUM}: {err}\n{_SETUP_HINT}", pytrace=False)
        try:
            context = browser.new_context(accept_downloads=True)
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            try:
                yield page
            finally:
                if screenshot is not None:
                    with suppress(Error):  # never hide the test's own failure
                        page.screenshot(path=str(screenshot), full_page=True)
            context.close()
        finally:
            browser.close()


def free_port() -> int:
    """A loopback TCP port that is free now (the kernel's pick, so xdist workers differ)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_blocks(demo: gr.Blocks, attempts: int = 5, **launch_kwargs: Any) -> Iterator[str]:
    """Serves ``demo`` on a free 127.0.0.1 port from this process; yields its URL, then
    closes the server. A port taken between picking and binding is retried.

    ``launch_kwargs`` go to ``demo.launch`` (e.g. ``allowed_paths`` for files an event
    returns from outside the working and temp directories)."""
    for attempt in range(attempts):
        port = free_port()
        try:
            demo.launch(
                prevent_thread_lock=True,
                server_name="127.0.0.1",
                server_port=port,
                quiet=True,
                show_error=True,
                **launch_kwargs,
            )
            break
        except OSError:
            if attempt == attempts - 1:
                raise
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()

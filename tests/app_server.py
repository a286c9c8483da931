"""The web app served from the test process on a free loopback port (imported like
cli_runner): ``with serve_app(config) as (app, url): ...``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from browser import free_port

from mmgen_app import App, AppConfig, build_app

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@contextmanager
def serve_app(config: AppConfig | None = None) -> Iterator[tuple[App, str]]:
    """Build the app for ``config`` (host and port replaced), serve it, yield (app, URL)."""
    config = replace(config or AppConfig(), host="127.0.0.1", port=free_port())
    app = build_app(config)
    app.launch(prevent_thread_lock=True, quiet=True)
    try:
        yield app, f"http://127.0.0.1:{config.port}/"
    finally:
        app.blocks.close()

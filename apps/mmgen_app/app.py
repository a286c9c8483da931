"""The mmgen web app: four tabs on the library's APIs, one queue, the app's limits.

    from mmgen_app import AppConfig, build_app
    build_app(AppConfig()).launch()        # or: mmgen app

Concurrency: every event goes through Gradio's queue, at most ``config.concurrency`` jobs at
once (shared by all tabs: they share the CPU) and ``config.queue_size`` waiting. Models are
loaded once and only read by requests (:mod:`.models`); each job has its own sampler,
generators, cancel flag and output folder (:mod:`.jobs`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gradio as gr

from mmgen_app.clip import ClipTab
from mmgen_app.colorize import ColorizeTab
from mmgen_app.config import AppConfig
from mmgen_app.jobs import Jobs, Outputs, limit_malloc_arenas
from mmgen_app.models import ModelStore
from mmgen_app.style import StyleTab
from mmgen_app.text_to_image import TextToImage

TITLE = "mmgen"


@dataclass
class App:
    """A built app: the Gradio ``Blocks`` and the handlers behind it (tests call them)."""

    blocks: gr.Blocks
    config: AppConfig
    store: ModelStore
    jobs: Jobs
    outputs: Outputs
    t2i: TextToImage
    style: StyleTab
    colorize: ColorizeTab
    clip: ClipTab

    def launch(self, **kwargs) -> None:
        """Serve on ``config.host:config.port`` (keyword arguments go to Gradio's launch)."""
        c = self.config
        self.blocks.launch(server_name=c.host, server_port=c.port, show_error=True,
                           max_file_size=f"{c.limits.max_upload_mb:g}mb",
                           allowed_paths=[str(self.outputs.root)]
                           + ([c.search_folder] if c.search_folder else []), **kwargs)


def build_app(config: AppConfig | None = None) -> App:
    """The app for ``config`` (models preloaded if ``config.preload``)."""
    config = config or AppConfig()
    limit_malloc_arenas()  # before the first threads allocate (jobs.py says why)
    store = ModelStore(config)
    if config.preload:
        store.preload()
    jobs, outputs = Jobs(), Outputs(config.output_dir, config.keep_outputs_s)
    t2i = TextToImage(store, jobs, outputs)
    style = StyleTab(store, jobs, outputs)
    colorize = ColorizeTab(store, outputs, config.limits)
    clip = ClipTab(store)
    with gr.Blocks(title=TITLE, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown("# mmgen\nText-to-image, style transfer, colorization and CLIP, on the "
                    "models bundled with mmgen (or yours: `mmgen app --model PATH`).")
        with gr.Tabs():
            with gr.Tab("Text to image", id="t2i"):
                t2i.build()
            with gr.Tab("Style transfer", id="style"):
                style.build()
            with gr.Tab("Colorize", id="colorize"):
                colorize.build()
            with gr.Tab("CLIP", id="clip"):
                clip.build()
    # the jobs of every tab share one concurrency group (JOBS): they compete for the CPU
    blocks.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    logging.getLogger("mmgen.app").info("mmgen app: %d models", len(store.t2i))
    return App(blocks, config, store, jobs, outputs, t2i, style, colorize, clip)

"""The style-transfer tab (:func:`mmgen.style.transfer.stylize`): a content photo (upload or
bundled), a style (bundled or upload), method, strength, colour preservation and size.

API (``gradio_client``): ``/style`` (see docs/app.md).
"""

from __future__ import annotations

import gradio as gr

from mmgen.data.photos import list_photos
from mmgen.hub import list_pretrained
from mmgen.style.images import MIN_SIDE as MIN_SIZE
from mmgen.style.styles import list_styles
from mmgen.style.transfer import (
    DEFAULT_ADAIN,
    DEFAULT_FAST,
    GATYS_STEPS,
    StyleRequest,
    load_style_network,
    save_png,
    stylize,
)
from mmgen_app.inputs import ImageInput, open_upload, unit, whole
from mmgen_app.jobs import JOBS, PROGRESS, Jobs, Outputs, StepProgress, user_errors
from mmgen_app.models import ModelStore


class StyleTab:
    """Handlers of the tab."""

    def __init__(self, store: ModelStore, jobs: Jobs, outputs: Outputs):
        self.store, self.jobs, self.outputs = store, jobs, outputs
        self.limits = store.config.limits
        installed = set(list_pretrained())
        # gatys runs offline on any style; fast and adain need their trained networks
        self.networks = {m: name for m, name in (("fast", DEFAULT_FAST),
                                                  ("adain", DEFAULT_ADAIN)) if name in installed}
        self.methods = ["gatys", *self.networks]

    def style(self, content: str | None, content_photo: str | None, style: str | None,
              style_name: str | None, method: str, strength: float, preserve_color: bool,
              size: float, steps: float, request: gr.Request = None,
              progress: gr.Progress = PROGRESS) -> tuple[str, str, str]:
        """Paint the content (an upload, else a bundled photo) in the style (an upload, else
        a bundled style): (result PNG, the same file to download, its parameters)."""
        lim = self.limits
        if method not in self.methods:
            raise ValueError(f"method {method!r} is not available here; this app has: "
                             f"{', '.join(self.methods)}")
        size = whole(size, "size", MIN_SIZE, lim.max_style_side)
        steps = whole(steps, "steps", 1, lim.max_gatys_steps) if method == "gatys" \
            else GATYS_STEPS
        if method == "fast" and style:
            raise ValueError("fast paints only the styles its network learned: pick a bundled "
                             "style, or use gatys or adain for an uploaded style")
        if not content and not content_photo:
            raise ValueError("Upload a content image or pick a bundled photo.")
        if not style and not style_name:
            raise ValueError("Upload a style image or pick a bundled style.")
        source = open_upload(content, lim, "content image") if content else content_photo
        painting = open_upload(style, lim, "style image") if style else style_name
        options = StyleRequest(method=method, strength=unit(strength, "strength"),
                               preserve_color=bool(preserve_color), size=size, steps=steps)
        with self.jobs.job(request) as flag:
            ticks = StepProgress(progress, flag, steps, "evaluation")
            model = None if method == "gatys" else self.store.get(
                f"style:{method}", lambda: load_style_network(method, self.networks[method]))
            image = stylize(source, [painting], options, progress=False, callback=ticks.evals,
                            model=model)
        path = str(save_png(image, self.outputs.job_dir() / "style.png"))
        return path, path, image.info["parameters"]

    def build(self) -> None:
        """The tab's components and events (inside a ``gr.Blocks``)."""
        lim = self.limits
        with gr.Row():
            with gr.Column():
                content = ImageInput(self.limits, label="Content (upload)",
                                   elem_id="style-content")
                content_photo = gr.Dropdown(list_photos(), value="astronaut",
                                            label="...or a bundled photo")
                style = ImageInput(self.limits, label="Style (upload)")
                style_name = gr.Dropdown(list_styles(), value="swirls",
                                         label="...or a bundled style", elem_id="style-name")
                method = gr.Radio(self.methods, value="gatys", label="Method",
                                  info="gatys: optimisation, any style (slow); fast / adain: "
                                       "one pass of a trained network")
                strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Strength")
                preserve = gr.Checkbox(False, label="Preserve the content's colours")
                size = gr.Slider(MIN_SIZE, lim.max_style_side, value=min(256, lim.max_style_side),
                                 step=16, label="Size (long side, px)", elem_id="style-size")
                steps = gr.Slider(1, lim.max_gatys_steps, value=min(GATYS_STEPS,
                                                                    lim.max_gatys_steps),
                                  step=1, label="Steps (gatys)", elem_id="style-steps")
                with gr.Row():
                    run = gr.Button("Stylize", variant="primary", elem_id="style-run")
                    cancel = gr.Button("Cancel", variant="stop")
            with gr.Column():
                result = gr.Image(label="Result", format="png", interactive=False,
                                  elem_id="style-result")
                file = gr.File(label="Download PNG (with its parameters)",
                               elem_id="style-file")
                info = gr.Textbox(label="Parameters", lines=4, interactive=False)
        event = run.click(user_errors(self.style),
                          [content, content_photo, style, style_name, method, strength,
                           preserve, size, steps], [result, file, info], api_name="style", **JOBS)
        cancel.click(self.jobs.cancel, None, None, cancels=[event], queue=False,
                     api_name=False)

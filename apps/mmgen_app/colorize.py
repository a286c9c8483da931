"""The colorization tab (:func:`mmgen.color.colorize.colorize`): a black-and-white photo, the
learned colorizer or a reference photo's colours, and how colourful.

API (``gradio_client``): ``/colorize`` (see docs/app.md).
"""

from __future__ import annotations

import gradio as gr

from mmgen.cli.colorize import MAX_COLORFULNESS
from mmgen.color.colorize import (
    DEFAULT_MODEL,
    ColorizeRequest,
    colorize,
    load_colorizer,
    save_png,
)
from mmgen.color.colorize import MIN_SIDE as MIN_SIZE
from mmgen_app.config import AppLimits
from mmgen_app.inputs import ImageInput, open_upload, whole
from mmgen_app.jobs import JOBS, Outputs, user_errors
from mmgen_app.models import ModelStore

METHODS = ("learned", "reference")  # zhang needs a file the server does not have


class ColorizeTab:
    """Handlers of the tab."""

    def __init__(self, store: ModelStore, outputs: Outputs, limits: AppLimits):
        self.store, self.outputs, self.limits = store, outputs, limits

    def colorize(self, image: str | None, method: str, colorfulness: float,
                 reference: str | None, size: float) -> tuple[str, str, str]:
        """Colour the photo: (result PNG, the same file to download, its parameters)."""
        lim = self.limits
        if image is None:
            raise ValueError("Upload a black-and-white photo first.")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; this app has: {', '.join(METHODS)}")
        if method == "reference" and reference is None:
            raise ValueError("The reference method copies the colours of a photo: upload one.")
        if isinstance(colorfulness, bool) or not isinstance(colorfulness, (int, float)) or \
                not 0 < colorfulness <= MAX_COLORFULNESS:
            raise ValueError(f"colourfulness must be in (0, {MAX_COLORFULNESS:g}], got "
                             f"{colorfulness!r}")
        size = whole(size, "size", MIN_SIZE, lim.max_style_side)
        photo = open_upload(image, lim, "photo")
        ref = open_upload(reference, lim, "reference photo") if method == "reference" else None
        request = ColorizeRequest(method=method, colorfulness=float(colorfulness), size=size)
        model = None if method == "reference" else self.store.get(
            "colorizer", lambda: load_colorizer("learned", DEFAULT_MODEL))
        result = colorize(photo, request, reference=ref, model=model)
        path = str(save_png(result, self.outputs.job_dir() / "colorized.png"))
        return path, path, result.info["parameters"]

    def build(self) -> None:
        """The tab's components and events (inside a ``gr.Blocks``)."""
        with gr.Row():
            with gr.Column():
                image = ImageInput(self.limits, label="Black-and-white photo",
                                 elem_id="color-image")
                method = gr.Radio(list(METHODS), value="learned", label="Method",
                                  info="learned: mmgen's photo-colorizer; reference: the "
                                       "colours of a photo you upload")
                colorfulness = gr.Slider(0.25, MAX_COLORFULNESS, value=1.0, step=0.05,
                                         label="Colourfulness")
                reference = ImageInput(self.limits, label="Reference photo (method reference)")
                size = gr.Slider(MIN_SIZE, self.limits.max_style_side, value=256, step=16,
                                 label="Working size (px)")
                run = gr.Button("Colorize", variant="primary", elem_id="color-run")
            with gr.Column():
                result = gr.Image(label="Result", format="png", interactive=False,
                                  elem_id="color-result")
                file = gr.File(label="Download PNG (with its parameters)", elem_id="color-file")
                info = gr.Textbox(label="Parameters", lines=4, interactive=False)
        run.click(user_errors(self.colorize), [image, method, colorfulness, reference, size],
                  [result, file, info], api_name="colorize", **JOBS)

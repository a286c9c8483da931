"""The text-to-image tab: generate, image-to-image and inpainting on one form, a gallery of
PNGs that carry their parameters, "reuse parameters" from a dropped PNG, progress and Cancel.

API (``gradio_client``): ``/generate``, ``/img2img``, ``/inpaint`` (see docs/app.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gradio as gr
from PIL import Image

from mmgen.diffusion.denoise import skipped_steps
from mmgen.diffusion.metadata import GenerationRequest, read_params, save_png_numbered
from mmgen.diffusion.samplers import SAMPLERS
from mmgen.limits import SEED_MAX
from mmgen_app.inputs import EditorInput, ImageInput, open_upload, unit, whole
from mmgen_app.jobs import JOBS, PROGRESS, Jobs, Outputs, StepProgress, user_errors
from mmgen_app.models import ModelStore

SEED_UI_MAX = 2**53 - 1  # what a browser's numbers hold exactly


@dataclass
class Form:
    """The shared parameter components of the tab, in the API's order."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    model: gr.Dropdown
    sampler: gr.Dropdown
    steps: gr.Slider
    guidance: gr.Slider
    seed: gr.Number
    width: gr.Slider
    height: gr.Slider
    num_images: gr.Slider

    def inputs(self) -> list[gr.components.Component]:
        return [self.prompt, self.negative_prompt, self.model, self.sampler, self.steps,
                self.guidance, self.seed, self.width, self.height, self.num_images]


class TextToImage:
    """Handlers of the tab (plain methods: tests call them without a browser)."""

    def __init__(self, store: ModelStore, jobs: Jobs, outputs: Outputs):
        self.store, self.jobs, self.outputs = store, jobs, outputs
        self.limits = store.config.limits

    def request(self, prompt: str, negative_prompt: str, model: str, sampler: str, steps: float,
                guidance: float, seed: float | None, width: float, height: float,
                num_images: float, strength: float = 1.0) -> tuple[Any, GenerationRequest]:
        """(pipeline, request) for the form's values, checked against the app's limits."""
        lim = self.limits
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("Write a prompt first.")
        if len(prompt) > lim.max_prompt_chars or len(negative_prompt or "") > lim.max_prompt_chars:
            raise ValueError(f"prompts are limited to {lim.max_prompt_chars} characters")
        steps = whole(steps, "steps", 1, lim.max_steps)
        num_images = whole(num_images, "number of images", 1, lim.max_images)
        width = whole(width, "width", 8, lim.max_side)
        height = whole(height, "height", 8, lim.max_side)
        seed = None if seed is None or seed == -1 else \
            whole(seed, "seed (-1: random)", 0, min(SEED_MAX, SEED_UI_MAX))
        pipe = self.store.pipeline(model)
        request = GenerationRequest(prompt, negative_prompt or None, steps=steps,
                                    guidance=float(guidance), sampler=sampler, seed=seed,
                                    num_images=num_images, height=height, width=width,
                                    strength=float(strength))
        request.check(SAMPLERS, pipe.latent_factor)
        return pipe, request

    def run(self, pipe: Any, request: GenerationRequest, image: Image.Image | None,
            mask: Image.Image | None, gr_request: gr.Request | None,
            progress: gr.Progress | None) -> tuple[list[str], list[str], int, str]:
        """Run one job: (gallery files, download files, seed used, parameters text)."""
        with self.jobs.job(gr_request) as flag:
            skipped = skipped_steps(request.steps, request.strength, image is not None)
            steps = StepProgress(progress, flag, request.num_images * (request.steps - skipped),
                                 "step")
            images = pipe.generate(request, image=image, mask=mask, callback=steps.images,
                                   progress=False)
        folder = self.outputs.job_dir()
        files = [str(save_png_numbered(im, folder, f"{json.loads(im.info['mmgen'])['seed']}"))
                 for im in images]
        first = json.loads(images[0].info["mmgen"])
        return files, files, int(first["seed"]), images[0].info["parameters"]

    def generate(self, prompt: str, negative_prompt: str, model: str, sampler: str,
                 steps: float, guidance: float, seed: float | None, width: float, height: float,
                 num_images: float, request: gr.Request = None,
                 progress: gr.Progress = PROGRESS) -> tuple[list[str], list[str], int, str]:
        """Text to image."""
        pipe, req = self.request(prompt, negative_prompt, model, sampler, steps, guidance, seed,
                                 width, height, num_images)
        return self.run(pipe, req, None, None, request, progress)

    def img2img(self, image: str | None, strength: float, prompt: str, negative_prompt: str,
                model: str, sampler: str, steps: float, guidance: float, seed: float | None,
                width: float, height: float, num_images: float, request: gr.Request = None,
                progress: gr.Progress = PROGRESS) -> tuple[list[str], list[str], int, str]:
        """Image to image (SDEdit): the input, resized to width x height, noised to
        ``strength`` of the schedule and denoised with the prompt."""
        if image is None:
            raise ValueError("Upload an input image first.")
        pipe, req = self.request(prompt, negative_prompt, model, sampler, steps, guidance, seed,
                                 width, height, num_images, unit(strength, "strength"))
        init = open_upload(image, self.limits, "input image").resize((req.width, req.height),
                                                                     Image.Resampling.LANCZOS)
        return self.run(pipe, req, init, None, request, progress)

    def inpaint(self, editor: dict | None, strength: float, prompt: str, negative_prompt: str,
                model: str, sampler: str, steps: float, guidance: float, seed: float | None,
                width: float, height: float, num_images: float, request: gr.Request = None,
                progress: gr.Progress = PROGRESS) -> tuple[list[str], list[str], int, str]:
        """Inpainting: repaint what is drawn over the image (the editor's layers), keep the
        rest. ``editor`` is Gradio's ImageEditor value: ``{"background": image, "layers":
        [images], "composite": image}``; the mask is every pixel the layers cover."""
        background = (editor or {}).get("background")
        if background is None:
            raise ValueError("Upload an image and paint over what to repaint.")
        pipe, req = self.request(prompt, negative_prompt, model, sampler, steps, guidance, seed,
                                 width, height, num_images, unit(strength, "strength"))
        size = (req.width, req.height)
        init = open_upload(background, self.limits, "input image")
        mask = Image.new("L", init.size, 0)
        for layer in editor.get("layers") or []:
            drawn = open_upload(layer, self.limits, "mask layer", mode="RGBA")
            if drawn.size != init.size:
                drawn = drawn.resize(init.size, Image.Resampling.NEAREST)
            mask.paste(255, mask=drawn.getchannel("A").point(lambda a: 255 if a > 0 else 0))
        if mask.getbbox() is None:
            raise ValueError("Paint over the part of the image to repaint (the mask is empty).")
        init = init.resize(size, Image.Resampling.LANCZOS)
        mask = mask.resize(size, Image.Resampling.NEAREST)
        return self.run(pipe, req, init, mask, request, progress)

    def reuse(self, png: str | None) -> tuple[Any, ...]:
        """Read a PNG written by mmgen back into the form (prompt, negative prompt, model,
        sampler, steps, guidance, seed, width, height)."""
        if png is None:
            return (gr.update(),) * 9
        p = read_params(png)
        model = p.model if p.model in self.store.t2i else gr.update()
        if p.model not in self.store.t2i:
            gr.Warning(f"This PNG was made by {p.model}, which this app does not serve; the "
                       "model was left as it is.")
        return (p.prompt, p.negative_prompt or "", model, p.sampler, p.steps, p.guidance,
                p.seed, p.width, p.height)

    def defaults(self, model: str) -> tuple[Any, ...]:
        """The model's own defaults (sampler, steps, guidance, width, height)."""
        c = self.store.pipeline(model).config
        return c.sampler, c.steps, c.guidance, c.width, c.height

    # ------------------------------------------------------------------ the UI

    def build(self) -> None:
        """The tab's components and events (inside a ``gr.Blocks``)."""
        first = next(iter(self.store.t2i))
        lim = self.limits
        c = self.store.pipeline(first).config  # the form starts at the model's defaults
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="t2i-prompt",
                                    placeholder="a large red circle in the center on a white "
                                                "background")
                negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="t2i-negative")
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="t2i-generate")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="t2i-cancel")
                with gr.Tabs():
                    with gr.Tab("Settings"):
                        model = gr.Dropdown(list(self.store.t2i), value=first, label="Model",
                                            elem_id="t2i-model")
                        sampler = gr.Dropdown(list(SAMPLERS), value=c.sampler, label="Sampler")
                        steps = gr.Slider(1, lim.max_steps, value=min(c.steps, lim.max_steps),
                                          step=1, label="Steps")
                        guidance = gr.Slider(1.0, 20.0, value=c.guidance, step=0.5,
                                             label="Guidance (CFG scale)")
                        with gr.Row():
                            seed = gr.Number(-1, precision=0, label="Seed (-1: random)",
                                             elem_id="t2i-seed", scale=3)
                            random_seed = gr.Button("Random", size="sm", scale=1)
                            last_seed = gr.Button("Last used", size="sm", scale=1)
                        with gr.Row():
                            width = gr.Slider(32, lim.max_side, value=min(c.width, lim.max_side),
                                              step=8, label="Width")
                            height = gr.Slider(32, lim.max_side,
                                               value=min(c.height, lim.max_side), step=8,
                                               label="Height")
                        num_images = gr.Slider(1, lim.max_images, value=1, step=1,
                                               label="Number of images")
                    with gr.Tab("Image to image"):
                        init_image = ImageInput(self.limits, label="Input image")
                        strength_i2i = gr.Slider(0.0, 1.0, value=0.75, step=0.05,
                                                 label="Strength (1: ignore the image)")
                        img2img = gr.Button("Image to image", variant="primary")
                    with gr.Tab("Inpaint"):
                        editor = EditorInput(self.limits, type="pil",
                                             label="Image (paint what to repaint)",
                                             brush=gr.Brush(colors=["#ffffff"]))
                        strength_inp = gr.Slider(0.0, 1.0, value=1.0, step=0.05,
                                                 label="Strength")
                        inpaint = gr.Button("Inpaint", variant="primary")
                    with gr.Tab("Reuse parameters"):
                        dropped = gr.File(label="Drop a PNG made by mmgen", file_types=[".png"],
                                          type="filepath", elem_id="t2i-reuse")
                form = Form(prompt, negative, model, sampler, steps, guidance, seed, width,
                            height, num_images)
            with gr.Column(scale=4):
                gallery = gr.Gallery(label="Images", format="png", columns=2, height=420,
                                     object_fit="contain", elem_id="t2i-gallery")
                files = gr.Files(label="Download PNGs (with their parameters)",
                                 elem_id="t2i-files")
                used_seed = gr.Number(label="Seed used", precision=0, interactive=False,
                                      elem_id="t2i-used-seed")
                info = gr.Textbox(label="Parameters", lines=4, interactive=False,
                                  elem_id="t2i-info")
        outputs = [gallery, files, used_seed, info]
        events = [
            generate.click(user_errors(self.generate), form.inputs(), outputs,
                           api_name="generate", **JOBS),
            img2img.click(user_errors(self.img2img), [init_image, strength_i2i, *form.inputs()],
                          outputs, api_name="img2img", **JOBS),
            inpaint.click(user_errors(self.inpaint), [editor, strength_inp, *form.inputs()],
                          outputs, api_name="inpaint", **JOBS),
        ]
        cancel.click(self.jobs.cancel, None, None, cancels=events, queue=False,
                     api_name=False)
        random_seed.click(lambda: -1, None, form.seed, queue=False, api_name=False)
        last_seed.click(lambda s: -1 if s is None else s, used_seed, form.seed, queue=False,
                        api_name=False)
        dropped.upload(user_errors(self.reuse), dropped,
                       [form.prompt, form.negative_prompt, form.model, form.sampler, form.steps,
                        form.guidance, form.seed, form.width, form.height], api_name=False)
        form.model.change(user_errors(self.defaults), form.model,
                          [form.sampler, form.steps, form.guidance, form.width, form.height],
                          api_name=False)


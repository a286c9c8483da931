"""What one running app serves and what it refuses: :class:`AppConfig` and :class:`AppLimits`.

The limits are the app's own (a shared server must refuse work that a user on their own machine
may ask of the library); every request is checked against them before any model runs, and
the library's limits (:mod:`mmgen.limits`) still apply underneath.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

BUNDLED_T2I = ("shapes-t2i", "shapes-dit")  # the bundled text-to-image pipelines


@dataclass
class AppLimits:
    """Per-request limits of the app (``mmgen app --max-...`` flags set them)."""

    max_side: int = 512  # text-to-image: height and width in px
    max_steps: int = 100  # sampler steps
    max_images: int = 4  # images per request
    max_style_side: int = 512  # style transfer: long side of the output
    max_gatys_steps: int = 600  # style transfer: gatys' loss evaluations
    max_input_pixels: int = 4096 * 4096  # an uploaded image, once decoded (decompression bombs)
    max_upload_mb: float = 20.0  # an uploaded file, in MB
    max_labels: int = 64  # CLIP zero-shot: labels per request
    max_prompt_chars: int = 1000  # a prompt's length


@dataclass
class AppConfig:
    """What ``mmgen app`` serves (its flags)."""

    host: str = "127.0.0.1"  # loopback by default: give 0.0.0.0 to serve a network
    port: int = 7860
    models: tuple[str, ...] = ()  # extra text-to-image models: names, folders or files
    clip_model: str = "shapes-clip"  # the CLIP tab's model
    search_folder: str | None = None  # the CLIP tab's image search: a folder of images
    concurrency: int = 2  # jobs that run at once (all tabs share the CPU)
    queue_size: int = 64  # jobs that may wait; more are refused with a message
    output_dir: Path | None = None  # where result PNGs are written (None: a temporary folder)
    keep_outputs_s: float = 3600.0  # result PNGs older than this are deleted
    preload: bool = True  # load the default models at start-up (else on first use)
    fast: bool = False  # text-to-image on the fast path (mmgen.fast: bf16, tiled attention)
    compile: bool = False  # the fast path with torch.compile (first call per size compiles)
    limits: AppLimits = field(default_factory=AppLimits)

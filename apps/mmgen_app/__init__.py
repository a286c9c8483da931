"""mmgen's Gradio web app (``mmgen app``): text-to-image, style transfer, colorization and CLIP
in one app, on the library's APIs. Installed with the ``app`` extra."""

from mmgen_app.app import App, build_app
from mmgen_app.config import AppConfig, AppLimits

__all__ = ["App", "AppConfig", "AppLimits", "build_app"]

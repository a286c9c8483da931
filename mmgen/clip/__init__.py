"""CLIP: contrastive image-text models, their tokenizer, and Stable Diffusion's text encoder.

Registered: ``clip/vit-b-32``, ``clip/vit-b-16``, ``clip/vit-l-14`` (OpenAI's architectures),
``clip/tiny`` (64 px, trains on a CPU), ``clip/text-sd15`` (SD 1.x text encoder), and the
Shapes benchmark's ``clip/shapes-tiny`` and ``clip/shapes-tiny-color-split``
(:mod:`mmgen.clip.shapes`). Weights of open_clip / OpenAI and transformers models load with
``mmgen.interop.from_open_clip`` and ``mmgen.interop.from_transformers``. See docs/clip.md.
"""

from mmgen.clip.model import (
    CLIP,
    PRESETS,
    TEXT_PRESETS,
    CLIPConfig,
    CLIPTextModel,
    CLIPVisionModel,
    TextConfig,
    TextOutput,
    VisionConfig,
    VisionOutput,
)
from mmgen.clip.preprocess import OPENAI_MEAN, OPENAI_STD, normalize_images, preprocess
from mmgen.clip.shapes import (
    SHAPES_PRESETS,
    ShapesCLIP,
    ShapesCLIPConfig,
    ShapesTextConfig,
    ShapesTextModel,
)
from mmgen.clip.tokenizer import CLIPTokenizer, tokenize
from mmgen.clip.zero_shot import (
    class_embeddings,
    encode_images,
    retrieve,
    zero_shot,
)

__all__ = [
    "CLIP",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "PRESETS",
    "SHAPES_PRESETS",
    "TEXT_PRESETS",
    "CLIPConfig",
    "CLIPTextModel",
    "CLIPTokenizer",
    "CLIPVisionModel",
    "ShapesCLIP",
    "ShapesCLIPConfig",
    "ShapesTextConfig",
    "ShapesTextModel",
    "TextConfig",
    "TextOutput",
    "VisionConfig",
    "VisionOutput",
    "class_embeddings",
    "encode_images",
    "normalize_images",
    "preprocess",
    "retrieve",
    "tokenize",
    "zero_shot",
]

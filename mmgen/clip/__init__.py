"""CLIP: contrastive image-text models, their tokenizer, and Stable Diffusion's text encoder.

Registered: ``clip/vit-b-32``, ``clip/vit-b-16``, ``clip/vit-l-14`` (OpenAI's architectures),
``clip/tiny`` (64 px, trains on a CPU) and ``clip/text-sd15`` (SD 1.x text encoder).
Weights of open_clip / OpenAI and transformers models load with
``mmgen.interop.from_open_clip`` and ``mmgen.interop.from_transformers``. See docs/clip.md.
"""

from mmgen.clip.model import (
    CLIP,
    OPENAI_MEAN,
    OPENAI_STD,
    PRESETS,
    TEXT_PRESETS,
    CLIPConfig,
    CLIPTextModel,
    CLIPVisionModel,
    TextConfig,
    TextOutput,
    VisionConfig,
    VisionOutput,
    normalize_images,
    preprocess,
)
from mmgen.clip.tokenizer import CLIPTokenizer, tokenize
from mmgen.clip.zero_shot import (
    ScoringCLIP,
    class_embeddings,
    clip_score,
    encode_images,
    retrieve,
    zero_shot,
)

__all__ = [
    "CLIP",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "PRESETS",
    "TEXT_PRESETS",
    "CLIPConfig",
    "CLIPTextModel",
    "CLIPTokenizer",
    "CLIPVisionModel",
    "TextConfig",
    "TextOutput",
    "VisionConfig",
    "VisionOutput",
    "normalize_images",
    "ScoringCLIP",
    "class_embeddings",
    "clip_score",
    "encode_images",
    "preprocess",
    "retrieve",
    "tokenize",
    "zero_shot",
]

"""mmgen: a small, readable PyTorch library of multimodal generative and vision models.

Public API::

    mmgen.list_models("cnn/*")            # registered architectures
    mmgen.create_model(name, **overrides)  # random weights
    model.save_pretrained(dir)             # config.json + model.safetensors
    mmgen.load(name_or_path)               # a saved folder or a bundled model
"""

from mmgen.hub import list_pretrained, load
from mmgen.registry import PretrainedModel, create_model, list_models, register_model
from mmgen.version import __version__

__all__ = [
    "PretrainedModel",
    "__version__",
    "create_model",
    "list_models",
    "list_pretrained",
    "load",
    "register_model",
]

"""mmgen: a small, readable PyTorch library of multimodal generative and vision models.

Public API::

    mmgen.list_models("cnn/*")            # registered architectures
    mmgen.create_model(name, **overrides)  # random weights
    model.save_pretrained(dir)             # config.json + model.safetensors
    mmgen.load(name_or_path)               # a saved folder or a bundled model
"""

__version__ = "0.1.0"

from mmgen.registry import (  # noqa: E402
    PretrainedModel,
    create_model,
    list_models,
    list_pretrained,
    load,
    register_model,
)

__all__ = [
    "PretrainedModel",
    "__version__",
    "create_model",
    "list_models",
    "list_pretrained",
    "load",
    "register_model",
]

"""Weight converters between mmgen and the checkpoints users own.

Each converter (torchvision, open_clip, transformers, diffusers, official DiT, pytorch/examples'
DCGAN) renames foreign keys with an explicit map and hands the result to
:func:`convert_state_dict`, which checks every key and shape before anything is loaded,
nanoGPT-style. Converters are imported lazily: using one
does not import the others' libraries.
"""

from typing import Any

from mmgen.interop.convert import KeyMapError, convert_state_dict, load_converted, regex_rename

_LAZY = {"from_torchvision": "mmgen.interop.torchvision",
         "from_open_clip": "mmgen.interop.open_clip",
         "from_transformers": "mmgen.interop.transformers_clip",
         "from_diffusers": "mmgen.interop.diffusers",
         "dit_from_diffusers": "mmgen.interop.dit",
         "load_dit_checkpoint": "mmgen.interop.dit",
         "load_dcgan_checkpoint": "mmgen.interop.dcgan",
         "sampler_from_diffusers": "mmgen.interop.diffusers_schedulers",
         "load_sd_folder": "mmgen.interop.stable_diffusion",
         "load_sd_single_file": "mmgen.interop.stable_diffusion",
         "sd_pipeline": "mmgen.interop.stable_diffusion",
         "read_sd_folder": "mmgen.interop.stable_diffusion",
         "read_sd_single_file": "mmgen.interop.stable_diffusion",
         "write_sd_single_file": "mmgen.interop.stable_diffusion",
         "to_diffusers": "mmgen.interop.diffusers_export"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmgen.interop' has no attribute {name!r}")


__all__ = ["KeyMapError", "convert_state_dict", "dit_from_diffusers", "from_diffusers",
           "from_open_clip", "from_torchvision", "from_transformers", "load_converted",
           "load_dcgan_checkpoint", "load_dit_checkpoint", "load_sd_folder",
           "load_sd_single_file", "read_sd_folder", "read_sd_single_file", "regex_rename",
           "sampler_from_diffusers", "sd_pipeline", "to_diffusers", "write_sd_single_file"]

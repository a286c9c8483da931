"""Weight converters between mmgen and the checkpoints users own.

Each converter (torchvision, open_clip, transformers, diffusers, official DiT, pytorch/examples'
DCGAN) renames foreign keys with an explicit map and hands the result to
:func:`convert_state_dict`, which checks every key and shape before anything is loaded,
nanoGPT-style. Converters are imported lazily: using one
does not import the others' libraries.
"""

from mmgen.interop.convert import KeyMapError, convert_state_dict, load_converted, regex_rename
from mmgen.lazy import lazy_exports

_LAZY = {"from_torchvision": "torchvision", "from_open_clip": "open_clip",
         "from_transformers": "transformers_clip", "from_diffusers": "diffusers",
         "dit_from_diffusers": "dit", "load_dit_checkpoint": "dit",
         "load_dcgan_checkpoint": "dcgan", "sampler_from_diffusers": "diffusers_schedulers",
         "load_sd_folder": "stable_diffusion", "load_sd_single_file": "stable_diffusion",
         "sd_pipeline": "stable_diffusion", "read_sd_folder": "stable_diffusion",
         "read_sd_single_file": "stable_diffusion", "write_sd_single_file": "stable_diffusion",
         "to_diffusers": "diffusers_export"}
__getattr__ = lazy_exports(__name__, _LAZY)  # converters load on first use

__all__ = ["KeyMapError", "convert_state_dict", "dit_from_diffusers", "from_diffusers",
           "from_open_clip", "from_torchvision", "from_transformers", "load_converted",
           "load_dcgan_checkpoint", "load_dit_checkpoint", "load_sd_folder",
           "load_sd_single_file", "read_sd_folder", "read_sd_single_file", "regex_rename",
           "sampler_from_diffusers", "sd_pipeline", "to_diffusers", "write_sd_single_file"]

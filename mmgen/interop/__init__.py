"""Weight converters between mmgen and the checkpoints users own.

Each converter (torchvision, open_clip, transformers, diffusers; added by the model families)
renames foreign keys with an explicit map and hands the result to :func:`convert_state_dict`,
which checks every key and shape before anything is loaded, nanoGPT-style.
"""

from mmgen.interop.convert import KeyMapError, convert_state_dict, load_converted, regex_rename

__all__ = ["KeyMapError", "convert_state_dict", "load_converted", "regex_rename"]

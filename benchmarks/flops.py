"""Multiply-adds (GMACs) of one forward pass of registered models, batch 1, attention included.

    python benchmarks/flops.py                    # every registered model with example inputs
    python benchmarks/flops.py "unet/*" cnn/resnet50

Models are built on the meta device (no weights are allocated, so SD-size models take well
under a second) and counted with :func:`mmgen.metrics.count_flops`. GMACs are what papers
call "Gflops" (DiT, fvcore); GFLOPs = 2 x GMACs. Elementwise ops are not counted.

Inputs per family (see ``example_inputs``): images at the config's size (224 where the
config has none), U-Nets and DiTs at their latent size with 77 context tokens (DiT: one
class label), text towers at their full context length. DiT-XL/2 should print 118.6 GMACs,
the "Gflops" of the DiT paper (Table 4).
"""

from __future__ import annotations

import argparse
import sys

import torch

import mmgen
from mmgen.metrics import count_flops


def example_inputs(name: str, config) -> tuple | None:
    """Batch-1 meta-device inputs for model ``name``, or None when its family has no entry."""
    family = name.split("/")[0]

    def image(channels: int, size: int) -> torch.Tensor:
        return torch.empty(1, channels, size, size, device="meta")

    def tokens(length: int) -> torch.Tensor:
        return torch.zeros(1, length, dtype=torch.long, device="meta")

    if family == "cnn":
        return (image(config.in_channels, getattr(config, "input_size", 224)),)
    if family == "vae":
        return (image(config.in_channels, config.sample_size),)
    if family == "unet":
        context = torch.empty(1, 77, config.cross_attention_dim, device="meta")
        return image(config.in_channels, config.sample_size), torch.tensor([500.0]), context
    if family == "dit":  # class labels, or 77 text token states
        cond = (torch.zeros(1, dtype=torch.long, device="meta") if config.num_classes else
                torch.empty(1, 77, config.cross_attention_dim, device="meta"))
        return image(config.in_channels, config.input_size), torch.tensor([500.0]), cond
    if family == "clip" and hasattr(config, "vision"):  # image and text towers
        return image(3, config.vision.image_size), tokens(config.text.context_length)
    if family == "clip" and hasattr(config, "context_length"):  # a text tower alone
        return (tokens(config.context_length),)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", default=["*"],
                        help='model names or globs (default: all), e.g. "unet/*"')
    args = parser.parse_args(argv)

    names = sorted({n for p in args.patterns for n in mmgen.list_models(p)})
    if not names:
        print(f"no registered model matches {args.patterns}; see mmgen.list_models()")
        return 1
    print(f"{'model':<28} {'GMACs':>10} {'GFLOPs':>10}")
    for name in names:
        with torch.device("meta"):
            model = mmgen.create_model(name).eval()
        inputs = example_inputs(name, model.config)
        if inputs is None:
            print(f"{name:<28} {'-':>10} {'-':>10}  (no example inputs: add its family to "
                  "example_inputs)")
            continue
        count = count_flops(model, *(x.to("meta") for x in inputs))
        print(f"{name:<28} {count.macs / 1e9:>10.3f} {count.flops / 1e9:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fast inference path: what ``pipe.enable_fast()``, ``mmgen.load(..., fast=True)``,
``mmgen generate --fast`` and ``mmgen app --fast`` turn on.

For each network of a pipeline (:func:`prepare`):

* weights in bfloat16 where the hardware computes it natively (CPUs with AVX512-BF16 or
  AMX, CUDA GPUs with bf16), cast once instead of per call as autocast does; fp32 elsewhere;
* channels_last on CPUs with AVX-512 and on CUDA (oneDNN's / cuDNN's NHWC kernels);
* self-attention's q, k, v projections fused into one matmul
  (:meth:`~mmgen.nn.Attention.fuse_projections`);
* on the CPU, the "tiled" attention backend (:mod:`mmgen.nn.attention`), 1.8x as fast as
  torch's flash kernel in bf16 at Stable Diffusion's 4,096 tokens (docs/performance.md);
* oneDNN's convolutions (the exact path's batch-invariant native kernels are slower).

With ``compile=True`` the denoiser and the VAE decoder also go through ``torch.compile``
(inductor, weights frozen into the graph, which fuses e.g. GroupNorm with SiLU), whose
compiled code is kept in a persistent cache (:func:`compile_cache_dir`) so that the next
process with the same shapes skips most of the compile time.

What each mode keeps (docs/performance.md has the measured numbers):

* exact (the default): fp32, batch-invariant kernels on the CPU; a seed gives the same
  pixels whatever the batch size, on every machine with the same torch.
* fast: a seed gives the same image again at the same batch size on the same machine;
  other batch sizes may round differently (oneDNN picks kernels by batch size), and
  outputs differ from fp32 by bf16 rounding (8 mantissa bits), so not bit for bit.
* fast + compile: as fast; the compiled kernels round a little differently again.

Thread settings: torch uses one thread per physical core by default, which is what this
path is measured with; ``OMP_NUM_THREADS`` / ``torch.set_num_threads`` change it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from mmgen.device import prefers_channels_last, resolve_dtype
from mmgen.nn import Attention, FusedSelfAttention

COMPILE_CACHE_ENV = "MMGEN_COMPILE_CACHE"
F = TypeVar("F", bound=Callable)


def fast_dtype(device: torch.device) -> torch.dtype:
    """The fast path's weight dtype on ``device``: bf16 where it is native, else fp32."""
    return resolve_dtype("auto", device)


def prepare(net: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Make ``net`` (in place) an inference network on the fast path: ``dtype`` weights,
    channels_last where preferred, fused q/k/v projections, the tiled attention backend on
    the CPU, eval mode without gradients. Returns ``net``."""
    convolutional = any(isinstance(m, nn.Conv2d) for m in net.modules())
    fmt = (torch.channels_last if convolutional and prefers_channels_last(device)
           else torch.preserve_format)
    net.to(device=device, dtype=dtype, memory_format=fmt).eval().requires_grad_(False)
    for module in net.modules():
        if isinstance(module, Attention):
            module.fuse_projections()
        if isinstance(module, (Attention, FusedSelfAttention)) and device.type == "cpu":
            module.backend = "tiled"
    return net


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept between processes: ``$MMGEN_COMPILE_CACHE``, else
    ``$XDG_CACHE_HOME/mmgen/inductor`` (``~/.cache/mmgen/inductor``)."""
    if os.environ.get(COMPILE_CACHE_ENV):
        return Path(os.environ[COMPILE_CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mmgen" / "inductor"


def compiled(fn: F) -> F:
    """``torch.compile(fn)`` for inference with inductor: weights frozen into the graph
    (constant-folded, prepacked for oneDNN), and inductor's caches in
    :func:`compile_cache_dir` (torch's own default is a temporary folder, emptied at
    reboot). The first call with new input shapes compiles (minutes for a Stable Diffusion
    U-Net on 2 cores); later calls, and later processes with a warm cache, do not."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())  # read when compiling
    return torch.compile(fn, options={"freezing": True})

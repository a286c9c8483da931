"""Device and precision policy: ``device="auto"`` and ``dtype="auto"`` mean the same everywhere.

* device ``"auto"``: CUDA if available, else Apple MPS, else CPU.
* dtype ``"auto"``: bfloat16 autocast where the hardware computes it natively (CPUs with
  AVX512-BF16 or AMX, CUDA GPUs that report bf16 support); float32 otherwise. fp32 stays the
  default for exactness; ``"auto"`` is opt-in.
* channels_last: used for convolutional nets on CUDA and on CPUs with AVX-512, where oneDNN's
  NHWC kernels are faster.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import threading
from collections.abc import Callable, Iterator

import torch

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → cuda > mps > cpu; anything else is checked and returned as a torch.device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    return dev


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_capability() -> str:
    """The SIMD level PyTorch dispatches to on this CPU (e.g. ``"AVX512"``)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # very old torch
        return "unknown"


def cpu_has_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_dtype(dtype: str | torch.dtype = "fp32",
                  device: str | torch.device = "cpu") -> torch.dtype:
    """The compute dtype for ``dtype`` on ``device``; ``"auto"`` picks bf16 where native."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        dev = resolve_device(device)
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if dev.type == "cpu":
            return torch.bfloat16 if cpu_has_bf16() else torch.float32
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``; a no-op for float32."""
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


_native_lock = threading.Lock()
_native_users = 0  # threads inside native_cpu_convolutions
_native_saved = True  # torch.backends.mkldnn.enabled before the first of them entered


@contextlib.contextmanager
def native_cpu_convolutions() -> Iterator[None]:
    """Compute CPU convolutions with PyTorch's native kernels instead of oneDNN's (restored
    afterwards). oneDNN chooses its algorithm by batch size, so an image's last bits depend
    on the batch it is in; the native kernels treat every image of a batch alike.

    The switch (``torch.backends.mkldnn.enabled``) is process-wide, so the context is
    counted: with several threads inside it at once (an app serving two users), oneDNN stays
    off until the last one leaves, and its previous state is restored then."""
    global _native_users, _native_saved
    with _native_lock:
        if _native_users == 0:
            _native_saved = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
        _native_users += 1
    try:
        yield
    finally:
        with _native_lock:
            _native_users -= 1
            if _native_users == 0:
                torch.backends.mkldnn.enabled = _native_saved


def batch_invariant_kernels(device: torch.device, enabled: bool = True
                            ) -> contextlib.AbstractContextManager:
    """:func:`native_cpu_convolutions` when ``enabled`` and ``device`` is the CPU (what a
    pipeline's ``batch_invariant`` asks for); otherwise nothing changes."""
    if enabled and device.type == "cpu":
        return native_cpu_convolutions()
    return contextlib.nullcontext()


def prefers_channels_last(device: str | torch.device) -> bool:
    """Whether conv nets should use channels_last memory format on ``device``."""
    dev = resolve_device(device)
    return dev.type == "cuda" or (dev.type == "cpu" and "avx512f" in cpu_flags())


def system_info() -> dict[str, str]:
    """Versions, device and CPU capability (what ``mmgen info`` prints)."""
    import accelerate
    import safetensors

    from mmgen.nn import available_attention_backends, get_attention_backend
    from mmgen.version import __version__

    dev = resolve_device("auto")
    info = {
        "mmgen": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "safetensors": safetensors.__version__,
        "platform": platform.platform(),
        "device (auto)": str(dev),
        "dtype (auto)": str(resolve_dtype("auto", dev)).replace("torch.", ""),
        "cpu threads": str(torch.get_num_threads()),
        "cpu capability": cpu_capability(),
        "cpu bf16": "yes" if cpu_has_bf16() else "no",
        "channels_last": "yes" if prefers_channels_last(dev) else "no",
        "attention backends": ", ".join(available_attention_backends()),
        "attention default": get_attention_backend(),
    }
    if dev.type == "cuda":
        info["cuda device"] = torch.cuda.get_device_name(0)
    return info


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = 250
            ) -> torch.Tensor:
    """``fn`` over ``x`` in chunks of ``size`` items (bounded memory), concatenated, in fp32."""
    return torch.cat([fn(x[i:i + size]).float() for i in range(0, len(x), size)])

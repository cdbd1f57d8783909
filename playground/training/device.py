"""Device choice and the per-device speed settings (threads, AMP, memory format)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

import torch


class DeviceError(RuntimeError):
    pass


def pick_device(name: str = "auto") -> torch.device:
    """Resolve auto/cpu/cuda/mps; asking for a device that is not there is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA GPU is available here; choose 'cpu' or 'auto'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("MPS was requested but Apple's Metal backend is not available here; choose 'cpu' or 'auto'")
    if name not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


@dataclass(frozen=True)
class SpeedSettings:
    channels_last: bool
    amp_dtype: torch.dtype | None  # autocast dtype, None = full fp32
    grad_scaler: bool
    data_on_device: bool
    eval_batch: int


def speed_settings(device: torch.device) -> SpeedSettings:
    """CPU: fp32 + channels_last (bf16 autocast and torch.compile measured slower on
    small-core CPUs). CUDA: fp16 AMP with a grad scaler, data kept on the GPU."""
    if device.type == "cuda":
        return SpeedSettings(True, torch.float16, True, True, 2048)
    if device.type == "mps":
        return SpeedSettings(False, None, False, True, 1024)
    return SpeedSettings(True, None, False, False, 256)  # CPU: bigger eval batches only cost memory


def configure_threads(threads: int | None = None) -> int:
    """Use every core for intra-op work and one inter-op thread; returns the count.

    Set once per process: torch refuses to change inter-op threads after work starts.
    """
    n = threads or int(os.environ.get("PLAYGROUND_THREADS", 0)) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (or parallel work already started) in this process
    return n


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LEAN_MMAP_THRESHOLD = 128 * 1024


def return_memory_eagerly() -> bool:
    """Have glibc give large freed blocks (tensors) back to the system at once instead of keeping
    them for reuse. Measured on `fast` at batch 128: a worker holds about 200 MiB less and trains
    at about half the speed, so only hosted mode (a 1 GB limit shared by every visitor) asks for it.
    False where the C library has no mallopt (not glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(M_MMAP_THRESHOLD, LEAN_MMAP_THRESHOLD))
    except (OSError, AttributeError, TypeError):
        return False

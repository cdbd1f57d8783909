"""Device choice and the per-device speed settings (threads, AMP, memory format)."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import settings
from ..errors import UserError


class DeviceError(UserError, RuntimeError):
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


@functools.cache
def cpu_bf16_units() -> tuple[str, ...]:
    """The CPU's bf16 matrix units (AMX-BF16, AVX512-BF16), read from /proc/cpuinfo; empty where it
    has none or the file is unreadable. Without them bf16 autocast is emulated and slower than fp32."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return tuple(name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if flag in flags)


def precision_name(settings: SpeedSettings) -> str:
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[settings.amp_dtype]


def speed_settings(device: torch.device, bf16: bool = False) -> SpeedSettings:
    """CPU: fp32 + channels_last, or bf16 autocast when asked for (``bf16``) and the CPU has bf16
    matrix units (on a 2-core Xeon with AMX-BF16 the training step ran 1.3-1.8x faster;
    emulated elsewhere it is slower, so fp32 stays). CUDA: fp16 AMP with a grad scaler, data kept
    on the GPU, whatever ``bf16`` says."""
    if device.type == "cuda":
        return SpeedSettings(True, torch.float16, True, True, 2048)
    if device.type == "mps":
        return SpeedSettings(False, None, False, True, 1024)
    amp = torch.bfloat16 if bf16 and cpu_bf16_units() else None
    return SpeedSettings(True, amp, False, False, 256)  # CPU: bigger eval batches only cost memory


def configure_threads(threads: int | None = None) -> int:
    """Use every core for intra-op work and one inter-op thread; returns the count.

    Set once per process: torch refuses to change inter-op threads after work starts.
    """
    n = threads or settings.whole("PLAYGROUND_THREADS") or (os.cpu_count() or 1)
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

import torch

from metaal.errors import DeviceError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as e:  # "Expected one of cpu, cuda, ... device type at start of device string"
        raise DeviceError(f"unknown device {str(device)!r}: use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for but torch sees no GPU; use --device cpu or auto")
    return device


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the system
    (the in-process form of the jemalloc/tcmalloc advice in PyTorch's CPU performance guide).
    A CNN step allocates and frees activations of up to 32 MiB; by default each comes from a fresh
    mmap and is returned on free, and the page faults that follow cost the SmallCNN episode about
    a third of its time on this machine (benchmarks/deep_episode_cost.py). The process keeps its
    peak memory in return. The commands call it; a library call never does. Returns whether it
    applied (False off glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # from glibc's malloc.h
    return all(mallopt(option, value) == 1 for option, value in
               ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 2**31 - 1), (m_top_pad, 1 << 30)))

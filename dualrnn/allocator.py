"""Host memory: keep freed buffers in the process instead of handing them back to the OS.

On Linux, glibc's ``malloc`` serves every allocation above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and returns it with ``munmap`` when freed. XLA (JAX, and TensorFlow with
``jit_compile``) allocates new output and scratch buffers for every call of a compiled step, so
each step of a CPU run whose weights are tens of MB touches fresh pages that the kernel must
fault in and zero: on the 2-core CPU a jitted ``a + b`` over 36 MB ran at 4 GB/s, against
17 GB/s once freed memory was kept. Dynamic evaluation at batch 1, which updates every weight
after every 5 tokens, is the step this limits most (README, "Throughput").

``retain_freed_memory`` raises the mmap threshold to 1 GiB and the trim threshold to 2 GiB - 1
(glibc ``mallopt``), so freed buffers stay in the heap and are reused. The resident memory then
does not shrink after a peak. It changes no number a computation produces. The experiment and
tuning scripts call it at start-up; library users call it themselves.
``DUALRNN_RETAIN_FREED_MEMORY=0`` turns it off; elsewhere than glibc (macOS, Windows, musl) it
does nothing.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1          # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30       # allocations above 1 GiB still get their own mapping
TRIM_THRESHOLD = (1 << 31) - 1
ENV = "DUALRNN_RETAIN_FREED_MEMORY"


def _libc():
    """The C library this process already links (no ``find_library``: it runs ``ldconfig``)."""
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):        # Windows has no dlopen(NULL)
        return None
    # gnu_get_libc_version exists only in glibc, whose mallopt takes these parameter numbers
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def retain_freed_memory() -> bool:
    """Keep freed host memory for reuse (see the module docstring). True if it took effect."""
    value = os.environ.get(ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV}={value!r} must be 0 (off) or 1 (on)")
    if value == "0":
        return False
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok

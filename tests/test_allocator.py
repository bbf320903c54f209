"""dualrnn.allocator: freed host memory is kept in the heap (glibc), and bad settings are refused."""

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest

from conftest import ROOT

LIBC = ctypes.util.find_library("c")
GLIBC = LIBC is not None and hasattr(ctypes.CDLL(LIBC), "gnu_get_libc_version")
HAS_MALLINFO2 = GLIBC and hasattr(ctypes.CDLL(LIBC), "mallinfo2")

# In a fresh interpreter: optionally call retain_freed_memory, then malloc 40 MB and print how
# many bytes glibc serves from separate mappings (mallinfo2's hblkhd) before and after.
PROBE = """
import ctypes, ctypes.util, sys
sys.path.insert(0, {root!r})
from dualrnn.allocator import retain_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
applied = retain_freed_memory() if {call} else None
before = libc.mallinfo2().hblkhd
p = libc.malloc(40 << 20)
print(applied, libc.mallinfo2().hblkhd - before)
"""


def probe(call, env=None):
    r = subprocess.run([sys.executable, "-c", PROBE.format(root=ROOT, call=call)],
                       capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr
    applied, mapped = r.stdout.split()
    return applied, int(mapped)


@pytest.mark.skipif(not HAS_MALLINFO2, reason="glibc >= 2.33 only (mallinfo2)")
def test_large_buffers_come_from_the_heap_once_retained():
    assert probe(False) == ("None", pytest.approx(40 << 20, rel=0.01))   # glibc's default: mmap
    assert probe(True) == ("True", 0)
    assert probe(True, {"DUALRNN_RETAIN_FREED_MEMORY": "0"}) == (
        "False", pytest.approx(40 << 20, rel=0.01))


def test_bad_setting_is_refused():
    from dualrnn.allocator import retain_freed_memory

    os.environ["DUALRNN_RETAIN_FREED_MEMORY"] = "yes"
    try:
        with pytest.raises(ValueError, match=r"'yes' must be 0 \(off\) or 1 \(on\)"):
            retain_freed_memory()
    finally:
        del os.environ["DUALRNN_RETAIN_FREED_MEMORY"]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "params.py")],
                       capture_output=True, text=True,
                       env={**os.environ, "DUALRNN_RETAIN_FREED_MEMORY": "2"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == ("params.py: error: DUALRNN_RETAIN_FREED_MEMORY='2' must be 0 (off) or 1 "
                        "(on)\n")

"""Process-wide settings of the command-line entry points (``msft-train``, ``msft-evaluate``).

`keep_freed_memory`: on Linux with glibc, every tensor larger than 32 MiB is its own ``mmap``, given
back to the kernel when freed and faulted in again, page by page, when the next step allocates it.
A training step of tiny MOIRAI on ETTh1's oil temperature with six past and two known covariates
(batch 256, context 512, msft [1, 2, 4], one thread) spent 7.7 of its 17.4 s in the kernel on 3.9
million page faults; with freed memory kept in the heap it took 9.2 s, and 7.2 s instead of 9.2 s with
the past covariates only (``benchmarks/bench_malloc.py``, ``results/multivariate/malloc.md``). The
price: the process keeps its peak heap (6.2 instead of 4.8 GiB in that benchmark) until it exits.
Only speed changes: the allocator decides where tensors live, not what they hold.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
OPT_OUT = "MSFT_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve large blocks from the heap and keep freed memory for the next step
    (no ``mmap`` per block, the heap trimmed only past 2 GiB free at its top). Returns whether it did:
    False off Linux, without glibc, or with ``MSFT_KEEP_FREED_MEMORY=0`` in the environment."""
    setting = os.environ.get(OPT_OUT, "1")
    if setting not in ("0", "1"):
        raise ValueError(f"{OPT_OUT}={setting!r}: expected 1 (keep freed memory, the default) or 0 (glibc's default)")
    if setting == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library: no ldconfig lookup
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    wanted = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 2**28))
    return all(mallopt(param, value) == 1 for param, value in wanted)

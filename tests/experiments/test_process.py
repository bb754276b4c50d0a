"""`msft_runner.process.keep_freed_memory`: the entry points' allocator setting."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from msft_runner.process import OPT_OUT, keep_freed_memory

_libc, _version = platform.libc_ver()
glibc = pytest.mark.skipif(
    _libc != "glibc" or tuple(int(p) for p in _version.split(".")[:2]) < (2, 33),
    reason=f"mallopt and mallinfo2: glibc 2.33 or later (this is {_libc or 'no glibc'} {_version})",
)

# A child process: set the allocator as the entry points do, then allocate a 64 MiB tensor while it
# counts the blocks glibc serves with their own mmap (``mallinfo2().hblks``).
CHILD = textwrap.dedent(
    """
    import ctypes, json, torch
    from msft_runner.process import keep_freed_memory

    class Info(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t fields
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    kept = keep_freed_memory()
    before = libc.mallinfo2().hblks
    x = torch.ones(16 * 2**20)  # 64 MiB: above glibc's largest mmap threshold (32 MiB)
    print(json.dumps({"kept": kept, "mmapped_blocks": libc.mallinfo2().hblks - before}))
    """
)


def _child(setting: str) -> dict:
    env = dict(os.environ, **{OPT_OUT: setting})
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_large_blocks_come_from_the_heap():
    """Kept: the 64 MiB block is heap memory (reused by the next step once freed, no page faults);
    glibc's default maps it on its own and unmaps it when freed."""
    assert _child("1") == {"kept": True, "mmapped_blocks": 0}
    assert _child("0") == {"kept": False, "mmapped_blocks": 1}


def test_bad_setting_is_refused(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "yes")
    with pytest.raises(ValueError, match=r"MSFT_KEEP_FREED_MEMORY='yes': expected 1 .* or 0"):
        keep_freed_memory()


def test_opt_out(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "0")
    assert keep_freed_memory() is False

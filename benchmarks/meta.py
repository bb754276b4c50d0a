"""What every CPU benchmark records about the run that made its numbers."""

from __future__ import annotations

import os
import platform

import torch


def cpu_run_meta(command: str) -> dict:
    """The regeneration command and the machine: platform, cores, torch threads and version, and the
    load average at the end (timings on a shared machine are read against it)."""
    return dict(
        command=command.strip(),
        machine=platform.platform(),
        cpu_cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        load_average_after=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )

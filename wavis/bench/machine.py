"""What a benchmark figure was measured on: CPU model, SIMD path, cores, memory, load, software
versions and the git commit (``machine`` and ``software`` of the results schema)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (the CPU backend's, ``/proc/cpuinfo``), whitespace collapsed."""
    from wavis.backend.cpu import cpu_model as model

    return re.sub(r"\s+", " ", model()).strip()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def simd() -> tuple[str, list[str]]:
    """The SIMD path the C++ core runs and the paths this CPU supports."""
    try:
        from wavis.backend import cpu

        return cpu.simd_path(), list(cpu.simd_paths())
    except Exception as e:  # an uninstalled core: still describe the machine
        return f"unknown ({type(e).__name__})", []


def cpu_family_model() -> tuple[int, int] | None:
    """The CPU's ``(cpu family, model)`` numbers from ``/proc/cpuinfo`` (e.g. ``(26, 2)`` for an
    AMD Zen 5, ``(25, 17)`` for a Zen 4); None where unreadable (not Linux, not x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    fam = re.search(r"^cpu family\s*:\s*(\d+)", text, re.M)
    mod = re.search(r"^model\s*:\s*(\d+)", text, re.M)
    return (int(fam.group(1)), int(mod.group(1))) if fam and mod else None


def cpu_id() -> str | None:
    """``"family F model M"`` (``cpu_family_model``): virtual machines often report only a brand
    name ("AMD EPYC"), the same for several generations, so results and README rows carry it."""
    fm = cpu_family_model()
    return f"family {fm[0]} model {fm[1]}" if fm else None


def host_class(model: str, path: str, ident: str | None = None) -> str:
    """The README's row key: CPU model (with its family and model numbers when known, so two
    generations sold under one brand name get their own rows) and SIMD path."""
    return f"{model} ({ident}) / {path}" if ident else f"{model} / {path}"


def machine_info(threads: int) -> dict:
    model, ident = cpu_model(), cpu_id()
    path, paths = simd()
    return {"cpu_model": model, "cpu_id": ident, "simd_path": path, "simd_paths": paths, "cores": os.cpu_count(),
            "threads": threads, "memory_gib": memory_gib(), "arch": platform.machine(),
            "host_class": host_class(model, path, ident), "loadavg_start": loadavg(), "loadavg_end": None, "gpu": None}


def git(root: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def software_info(root: Path) -> dict:
    import numpy

    import wavis

    dirty = git(root, "status", "--porcelain", "--untracked-files=no")
    return {"wavis": wavis.__version__, "git_commit": git(root, "rev-parse", "--short=12", "HEAD"),
            "git_dirty": bool(dirty) if dirty is not None else None, "python": sys.version.split()[0],
            "numpy": numpy.__version__}

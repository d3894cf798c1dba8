"""``wavis bench setup``: the reference libraries, each in its own virtual environment under
``benchmarks/`` (ignored by git), never in the main one.

* ``benchmarks/.venv-openfhe``: Python 3.10 (the PyPI ``openfhe`` wheel is a CPython 3.10
  extension; found with pyenv, ``python3.10`` on PATH, or ``--python310``) + ``openfhe`` +
  ``numpy``. That wheel is built without SIMD: every ratio against it says so.
* ``benchmarks/.venv-tenseal``: this interpreter's Python + ``tenseal`` + ``numpy``.

An environment whose library already imports is left alone (``--force`` rebuilds it).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

VENVS = {"openfhe": (".venv-openfhe", ["openfhe", "numpy"]), "tenseal": (".venv-tenseal", ["tenseal", "numpy"])}


def venv_python(bench_dir: Path, lib: str) -> Path:
    return bench_dir / VENVS[lib][0] / "bin" / "python"


def status(bench_dir: Path, lib: str) -> str:
    """'ok' when the library imports in its environment, else why not (with the fix)."""
    py = venv_python(bench_dir, lib)
    if not py.exists():
        return f"not installed: run `wavis bench setup` ({py.parent.parent.name})"
    try:
        r = subprocess.run([str(py), "-c", f"import {lib}"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return f"`import {lib}` timed out"
    return "ok" if r.returncode == 0 else f"broken: {(r.stderr.strip().splitlines() or ['?'])[-1][:200]}"


def find_python310(hint: str | None = None) -> str | None:
    cands = [hint] if hint else []
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    cands += sorted(glob.glob(os.path.join(root, "versions", "3.10*", "bin", "python")), reverse=True)
    cands += [shutil.which("python3.10")]
    for c in cands:
        if c and os.path.exists(c):
            return c
    return None


def base_python() -> str:
    """The interpreter behind this (virtual) environment."""
    return getattr(sys, "_base_executable", None) or sys.executable


def setup(bench_dir: Path, libs: list[str], python310: str | None = None, force: bool = False, log=print) -> int:
    rc = 0
    for lib in libs:
        d, pkgs = VENVS[lib]
        target = bench_dir / d
        if not force and status(bench_dir, lib) == "ok":
            log(f"{lib}: {target} is ready")
            continue
        py = find_python310(python310) if lib == "openfhe" else base_python()
        if py is None:
            log(f"{lib}: no Python 3.10 found (pyenv install 3.10, or --python310 PATH)")
            rc = 1
            continue
        if target.exists():
            shutil.rmtree(target)
        log(f"{lib}: creating {target} with {py} and installing {' '.join(pkgs)} ...")
        r = subprocess.run([py, "-m", "venv", str(target)])
        if r.returncode == 0:
            r = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q", *pkgs])
        st = status(bench_dir, lib)
        log(f"{lib}: {st}")
        rc |= 0 if st == "ok" else 1
    return rc

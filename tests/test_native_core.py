"""The C++ unit tests of the native core (csrc/tests, registered with ctest): built in the
scikit-build tree that ``./dev`` uses and run by ctest, so ``./dev test`` runs them too. They
check the library below the bindings: NTT / RNS / key-switching exactness and bit identity on
every SIMD path, ChaCha20 (RFC 8439 vector), the thread pool, TFHE kernels on every path."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build_dir() -> Path:
    dirs = sorted(ROOT.glob("build/*/CMakeCache.txt"), key=lambda p: p.stat().st_mtime)
    if not dirs:
        pytest.skip("no CMake build tree (./dev env creates build/<wheel tag>)")
    return dirs[-1].parent


def _cache(build: Path, key: str) -> str:
    m = re.search(rf"^{key}:\w+=(.*)$", (build / "CMakeCache.txt").read_text(), re.M)
    assert m, key
    return m.group(1)


def test_cpp_unit_tests_pass_under_ctest():
    build = _build_dir()
    cmake, ctest = _cache(build, "CMAKE_COMMAND"), _cache(build, "CMAKE_CTEST_COMMAND")
    r = subprocess.run([cmake, "--build", str(build), "--target", "wavis_core_tests"], capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run([ctest, "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    assert "100% tests passed" in r.stdout

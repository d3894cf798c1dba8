"""GPU-free checks of the CUDA backend (run in CI).

* every kernels/*.cu compiles with nvcc for sm_90 and to portable PTX (compute_90), both as
  written (``#include "modarith.cuh"``) and as the loader hands it to NVRTC (header inlined),
  when nvcc is on the PATH (skipped otherwise);
* ``import wavis`` / ``import wavis.backend`` never import CuPy;
* ``get("cuda")`` without a device (or without CuPy) raises BackendError.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest_cuda import cuda_available

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
CU_FILES = sorted(KERNELS.glob("*.cu"))
NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc") else None)
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")


def test_kernel_files_present():
    names = {p.name for p in KERNELS.iterdir()}
    assert {"modarith.cuh", "ntt.cu", "rns.cu", "tfhe.cu"} <= names
    # one shared device header: no other header may define modular arithmetic
    assert [p.name for p in KERNELS.glob("*.cuh")] == ["modarith.cuh"]


def _nvcc(args, tmp_path):
    r = subprocess.run([NVCC, *args], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, f"nvcc {' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    assert "error" not in r.stderr.lower(), r.stderr
    return r


@needs_nvcc
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_sm90_object(cu, tmp_path):
    _nvcc(["-std=c++17", "-arch=sm_90", "-I", str(KERNELS), "-c", str(cu), "-o", str(tmp_path / "k.o")], tmp_path)


@needs_nvcc
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_portable_ptx(cu, tmp_path):
    out = tmp_path / "k.ptx"
    _nvcc(["-std=c++17", "--ptx", "-arch=compute_90", "-I", str(KERNELS), str(cu), "-o", str(out)], tmp_path)
    text = out.read_text()
    assert ".entry" in text


@needs_nvcc
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_loader_source(cu, tmp_path):
    """The exact text the loader gives NVRTC (headers inlined) compiles stand-alone."""
    from wavis.backend.cuda import kernel_source

    src = tmp_path / cu.name
    src.write_text(kernel_source(cu.stem))
    assert "#include" not in src.read_text()
    _nvcc(["-std=c++17", "--ptx", "-arch=compute_90", str(src), "-o", str(tmp_path / "k.ptx")], tmp_path)


@needs_nvcc
def test_ntt_shared_memory_fits(tmp_path):
    """The NTT kernels need no static shared memory beyond the 32 KiB dynamic tile, and no
    spills (ptxas -v)."""
    r = _nvcc(["-std=c++17", "-arch=sm_90", "-Xptxas", "-v", "-I", str(KERNELS), "-c", str(KERNELS / "ntt.cu"),
               "-o", str(tmp_path / "k.o")], tmp_path)
    assert " 0 bytes spill stores" in r.stderr or "spill" not in r.stderr


def _run_py(code: str):
    env = dict(os.environ)
    env.pop("WAVIS_BACKEND", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_import_wavis_does_not_import_cupy():
    r = _run_py(
        "import sys, wavis, wavis.backend, wavis.ckks, wavis.ring\n"
        "import wavis.backend.cuda\n"  # the loader module itself imports CuPy only on CudaBackend()
        "assert 'cupy' not in sys.modules, sorted(m for m in sys.modules if 'cupy' in m)\n"
        "print('ok')"
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


@pytest.mark.skipif(cuda_available(), reason="a CUDA device is present")
def test_get_cuda_without_device_raises_backend_error():
    from wavis.backend import available, get
    from wavis.errors import BackendError

    with pytest.raises(BackendError):
        get("cuda")
    assert available() == ["cpu"]
    assert get("auto").name == "cpu"


@pytest.mark.skipif(cuda_available(), reason="a CUDA device is present")
def test_service_setting_forcing_cuda_without_device_raises(monkeypatch):
    """WAVIS_BACKEND is the service's setting (the library ignores the environment): asking the
    service's device contexts for CUDA without a device is a BackendError, not a silent CPU."""
    from wavis.backend import get
    from wavis.errors import BackendError
    from wavis.service.fhe import DeviceContexts
    from wavis.service.settings import Settings

    monkeypatch.setenv("WAVIS_BACKEND", "cuda")
    assert get().name == "cpu"  # the library does not read the variable
    s = Settings.from_env()
    assert s.compute_backend == "cuda"
    with pytest.raises(BackendError) as e:
        DeviceContexts(s.compute_backend).backend
    assert e.value.code == "BACKEND_UNAVAILABLE"


def test_ntt_plan_covers_every_bit():
    from wavis.backend.cuda import ntt_plan

    for logN in range(1, 21):
        plan = ntt_plan(logN)
        bits = sorted(b for bit_lo, cnt, _, _ in plan for b in range(bit_lo, bit_lo + cnt))
        assert bits == list(range(logN))
        for bit_lo, cnt, logC, logG in plan:
            assert logG + cnt + logC <= 12
            assert logC <= bit_lo and logG <= logN - bit_lo - cnt

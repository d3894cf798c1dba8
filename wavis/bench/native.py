"""``wavis bench setup --openfhe-src … --hexl-src …``: OpenFHE built with Intel HEXL, the
stronger C++ reference (the recipe of ``../shared/anchors/README.md``), in a cache outside the
repository, and the harness's native OpenFHE worker (``benchmarks/openfhe_native_worker.cpp``)
linked against it.

Sources are given, never downloaded: source trees (git work trees or plain copies) of

* ``openfheorg/openfhe-development`` (v1.5.1),
* ``openfheorg/openfhe-hexl`` (v1.5.1.0, the overlay staged over the OpenFHE tree, as its
  ``scripts/stage-openfhe-development-hexl.sh`` does),
* ``intel/hexl`` (v1.2.5 and later fixes; the overlay asks for 1.2.6 and the requested version
  is rewritten to the one the HEXL tree declares — every function the overlay calls exists in
  1.2.5),
* ``google/cpu_features`` (the commit HEXL pins).

Steps (each skipped when its stamp file exists and ``--force`` is not given), all under
``cache`` (default ``$WAVIS_BENCH_CACHE`` or ``~/.cache/wavis/openfhe-hexl``; refused inside
the repository):

1. cpu_features: static, PIC, installed to ``cache/install``;
2. HEXL: shared library, installed to ``cache/install``; the configure step's AVX-512 DQ /
   IFMA / VBMI2 findings are recorded (HEXL compiles its AVX-512 kernels only where the
   compiler's ``-march=native`` has them: on an AVX2-only host it runs its scalar fallback);
3. OpenFHE with the overlay staged (``cache/src/openfhe``), ``WITH_NATIVEOPT``,
   ``WITH_INTEL_HEXL``, ``INTEL_HEXL_PREBUILT``, OpenMP, no tests/examples/benchmarks;
4. ``objdump -d libhexl.so | grep -c vpmadd52`` (IFMA instructions compiled in);
5. the worker ``cache/bin/openfhe_native_worker`` and the anchors' one-shot bench
   ``cache/bin/openfhe_ckks_bench`` (when the anchors' source is found).

``cache/build.json`` records the sources' commits, versions, flags, the CPU's SIMD flags, the
IFMA instruction count and the step times; the harness reads it for the row's label.

Errors: :class:`NativeBuildError` (a missing source tree, a cache inside the repository, a
failed step — with the tail of its log, kept in ``cache/logs/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

OVERLAY_ITEMS = ["CMakeLists.txt", "CMakeLists.User.txt", "OpenFHEConfig.cmake.in", "benchmark", "configure", "src",
                 "third-party"]
WORKER_SRC = "openfhe_native_worker.cpp"
#: glibc malloc setting of the anchors (default malloc costs OpenFHE+HEXL 13-35 % on encrypt/multiply/rotate)
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


class NativeBuildError(RuntimeError):
    """A native reference build step failed or was given bad input."""


def default_cache() -> Path:
    return Path(os.environ.get("WAVIS_BENCH_CACHE") or Path.home() / ".cache" / "wavis" / "openfhe-hexl")


def worker_path(cache: Path | None = None) -> Path:
    return (cache or default_cache()) / "bin" / "openfhe_native_worker"


def manifest(cache: Path | None = None) -> dict | None:
    """``cache/build.json`` of a finished build, else None."""
    p = (cache or default_cache()) / "build.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def status(cache: Path | None = None) -> str:
    """'ok' when the native worker is built, else why not (with the fix)."""
    w = worker_path(cache)
    if not w.exists():
        return (f"not built: run `wavis bench setup --openfhe-src … --openfhe-hexl-src … --hexl-src … "
                f"--cpu-features-src …` ({w.parent.parent})")
    return "ok"


def cpu_simd_flags() -> list[str]:
    try:
        txt = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    m = re.search(r"^flags\s*:(.*)$", txt, re.M)
    return sorted(f for f in (m.group(1).split() if m else []) if f.startswith(("avx", "sse4")))


def _commit(src: Path) -> str | None:
    r = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def _describe(src: Path) -> str | None:
    r = subprocess.run(["git", "-C", str(src), "describe", "--tags", "--always"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def hexl_version(hexl_src: Path) -> str:
    m = re.search(r"project\(HEXL\s+VERSION\s+([0-9.]+)", (hexl_src / "CMakeLists.txt").read_text())
    if not m:
        raise NativeBuildError(f"{hexl_src}/CMakeLists.txt declares no HEXL version")
    return m.group(1)


HEXL_FLAGS = ("HEXL_HAS_AVX512DQ", "HEXL_HAS_AVX512IFMA", "HEXL_HAS_AVX512VBMI2", "HEXL_HAS_AVX256")


def hexl_configure_flags(log_text: str) -> dict[str, bool]:
    """HEXL's configure findings (``-- Setting HEXL_HAS_…`` / ``-- Compile flag not found: …``):
    which kernels it compiles, as the compiler's ``-march=native`` allows."""
    return {k: bool(re.search(rf"Setting {k}\b", log_text)) for k in HEXL_FLAGS}


def stage_overlay(openfhe_src: Path, overlay_src: Path, dest: Path, hexl_ver: str) -> list[str]:
    """Copy the OpenFHE tree to ``dest`` and the overlay over it; the overlay's requested HEXL
    version becomes ``hexl_ver``. Returns the rewrites made."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(openfhe_src, dest, ignore=shutil.ignore_patterns(".git"), symlinks=True)
    for item in OVERLAY_ITEMS:
        s = overlay_src / item
        if s.is_dir():
            shutil.copytree(s, dest / item, dirs_exist_ok=True)
        elif s.exists():
            shutil.copy2(s, dest / item)
    changes = []
    for rel in ("third-party/intel-hexl/intel-hexl.cmake", "CMakeLists.User.txt"):
        p = dest / rel
        txt = p.read_text()
        new = re.sub(r"find_package\(HEXL\s+[0-9.]+", f"find_package(HEXL {hexl_ver}", txt)
        if new != txt:
            p.write_text(new)
            changes.append(f"{rel}: find_package(HEXL {hexl_ver})")
    return changes


class _Builder:
    def __init__(self, cache: Path, jobs: int, force: bool, log) -> None:
        self.cache, self.jobs, self.force, self.log = cache, jobs, force, log
        self.prefix = cache / "install"
        self.logs = cache / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.times: dict[str, float] = {}

    def stamp(self, name: str) -> Path:
        return self.cache / "stamps" / name

    def done(self, name: str) -> bool:
        return not self.force and self.stamp(name).exists()

    def mark(self, name: str) -> None:
        self.stamp(name).parent.mkdir(parents=True, exist_ok=True)
        self.stamp(name).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def sh(self, step: str, argv: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
        logf = self.logs / f"{step}.log"
        t = time.monotonic()
        with open(logf, "a") as f:
            f.write(f"$ {' '.join(argv)}\n")
            f.flush()
            r = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
        self.times[step] = self.times.get(step, 0.0) + time.monotonic() - t
        if r.returncode != 0:
            tail = "".join(logf.read_text().splitlines(True)[-25:])
            raise NativeBuildError(f"{step} failed (exit {r.returncode}; log {logf}):\n{tail}")
        return logf.read_text()

    def cmake_build(self, step: str, src: Path, flags: list[str]) -> str:
        bdir = self.cache / "build" / step
        if self.force and bdir.exists():
            shutil.rmtree(bdir)
        out = self.sh(step, ["cmake", "-S", str(src), "-B", str(bdir), f"-DCMAKE_INSTALL_PREFIX={self.prefix}",
                             "-DCMAKE_BUILD_TYPE=Release", *flags])
        self.sh(step, ["cmake", "--build", str(bdir), "-j", str(self.jobs)])
        self.sh(step, ["cmake", "--install", str(bdir)])
        return out


def _src(p, what: str, probe: str) -> Path:
    if p is None:
        raise NativeBuildError(f"--{what}-src is required for the OpenFHE + HEXL build")
    p = Path(p).resolve()
    if not (p / probe).exists():
        raise NativeBuildError(f"{p} is not a {what} source tree (no {probe})")
    return p


def build(root: Path, openfhe_src, overlay_src, hexl_src, cpu_features_src, cache: Path | None = None,
          jobs: int = 2, force: bool = False, anchors_cpp: Path | None = None, log=print) -> dict:
    """Build cpu_features, HEXL, OpenFHE with the HEXL overlay and the native worker into
    ``cache``; returns the manifest written to ``cache/build.json``.

    Raises :class:`NativeBuildError` on bad input or a failed step."""
    cache = Path(cache or default_cache()).resolve()
    root = root.resolve()
    if cache == root or root in cache.parents:
        raise NativeBuildError(f"the cache {cache} is inside the repository {root}; give --cache outside it")
    srcs = {"openfhe-development": _src(openfhe_src, "openfhe", "src/pke/include/openfhe.h"),
            "openfhe-hexl": _src(overlay_src, "openfhe-hexl", "third-party/intel-hexl/intel-hexl.cmake"),
            "hexl": _src(hexl_src, "hexl", "hexl/include/hexl/hexl.hpp"),
            "cpu_features": _src(cpu_features_src, "cpu-features", "include/cpu_features_macros.h")}
    cache.mkdir(parents=True, exist_ok=True)
    b = _Builder(cache, jobs, force, log)
    hv = hexl_version(srcs["hexl"])
    man = {"sources": {k: {"path": str(v), "commit": _commit(v), "describe": _describe(v)} for k, v in srcs.items()},
           "hexl_version": hv, "cpu_simd_flags": cpu_simd_flags(), "prefix": str(b.prefix), "jobs": jobs}

    if not b.done("cpu_features"):
        log(f"[1/5] cpu_features ({srcs['cpu_features']}) ...")
        b.cmake_build("cpu_features", srcs["cpu_features"],
                      ["-DBUILD_PIC=ON", "-DBUILD_SHARED_LIBS=OFF", "-DBUILD_TESTING=OFF"])
        b.mark("cpu_features")
    if not b.done("hexl"):
        log(f"[2/5] HEXL {hv} ({srcs['hexl']}) ...")
        out = b.cmake_build("hexl", srcs["hexl"], ["-DHEXL_SHARED_LIB=ON", "-DHEXL_BENCHMARK=OFF", "-DHEXL_TESTING=OFF",
                                                   f"-DCMAKE_PREFIX_PATH={b.prefix}"])
        (cache / "hexl-configure.json").write_text(json.dumps(hexl_configure_flags(out)))
        b.mark("hexl")
    try:
        man["hexl_configure"] = json.loads((cache / "hexl-configure.json").read_text())
    except (OSError, ValueError):
        man["hexl_configure"] = None
    if not b.done("openfhe"):
        staged = cache / "src" / "openfhe"
        log(f"[3/5] OpenFHE with the HEXL overlay staged in {staged} (about 20 min on 2 idle cores) ...")
        man["overlay_rewrites"] = stage_overlay(srcs["openfhe-development"], srcs["openfhe-hexl"], staged, hv)
        (cache / "overlay-rewrites.json").write_text(json.dumps(man["overlay_rewrites"]))
        b.cmake_build("openfhe", staged, [
            "-DWITH_NATIVEOPT=ON", "-DWITH_INTEL_HEXL=ON", "-DINTEL_HEXL_PREBUILT=ON",
            f"-DINTEL_HEXL_HINT_DIR={b.prefix}/lib/cmake/hexl-{hv}", f"-DCMAKE_PREFIX_PATH={b.prefix}",
            "-DBUILD_UNITTESTS=OFF", "-DBUILD_EXAMPLES=OFF", "-DBUILD_BENCHMARKS=OFF", "-DWITH_OPENMP=ON"])
        b.mark("openfhe")
    try:
        man["overlay_rewrites"] = json.loads((cache / "overlay-rewrites.json").read_text())
    except (OSError, ValueError):
        pass
    log("[4/5] IFMA instructions in libhexl ...")
    libs = sorted(b.prefix.glob("lib*/libhexl.so*"))
    man["libhexl"] = str(libs[0]) if libs else None
    if libs:
        d = subprocess.run(["objdump", "-d", str(libs[0])], capture_output=True, text=True)
        man["vpmadd52_count"] = d.stdout.count("vpmadd52")
        man["avx512_zmm_count"] = d.stdout.count("%zmm")
    man["runs_avx512_kernels"] = bool(man.get("hexl_configure") and man["hexl_configure"].get("HEXL_HAS_AVX512DQ")
                                      and "avx512dq" in man["cpu_simd_flags"])
    man["runs_ifma_kernels"] = bool(man.get("hexl_configure") and man["hexl_configure"].get("HEXL_HAS_AVX512IFMA")
                                    and "avx512ifma" in man["cpu_simd_flags"] and man.get("vpmadd52_count"))
    log("[5/5] the native worker ...")
    build_worker(root, cache, b, anchors_cpp)
    man["worker"] = str(worker_path(cache))
    man["openfhe_version"] = _openfhe_version(cache)
    man["step_seconds"] = {k: round(v, 1) for k, v in b.times.items()}
    man["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (cache / "build.json").write_text(json.dumps(man, indent=1))
    log(f"native reference ready: {worker_path(cache)} ({describe(man)})")
    return man


def _compile(b: _Builder, step: str, src: Path, out: Path) -> None:
    inc = b.prefix / "include" / "openfhe"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = ["g++", "-O3", "-std=c++17", "-fopenmp", "-DMATHBACKEND=4",
            *[f"-I{inc / s}" if s else f"-I{inc}" for s in ("", "core", "pke", "binfhe", "cereal")],
            f"-I{b.prefix / 'include'}",  # hexl/hexl.hpp, included by the overlay's headers
            str(src), "-o", str(out), f"-L{b.prefix / 'lib'}", f"-Wl,-rpath,{b.prefix / 'lib'}",
            "-lOPENFHEpke", "-lOPENFHEbinfhe", "-lOPENFHEcore", "-lhexl"]
    b.sh(step, argv)


def build_worker(root: Path, cache: Path, b: _Builder | None = None, anchors_cpp: Path | None = None) -> Path:
    """Compile ``benchmarks/openfhe_native_worker.cpp`` (and the anchors' one-shot bench when
    found) against the installed OpenFHE; returns the worker's path."""
    b = b or _Builder(cache, 2, False, print)
    src = root / "benchmarks" / WORKER_SRC
    if not src.exists():
        raise NativeBuildError(f"{src} not found")
    anchors_cpp = Path(anchors_cpp) if anchors_cpp else root.parent / "shared" / "anchors" / "openfhe_ckks_bench.cpp"
    if anchors_cpp.exists():
        _compile(b, "anchors_bench", anchors_cpp, cache / "bin" / "openfhe_ckks_bench")
    _compile(b, "worker", src, worker_path(cache))
    return worker_path(cache)


def _openfhe_version(cache: Path) -> str | None:
    p = cache / "install" / "lib" / "OpenFHE" / "OpenFHEConfigVersion.cmake"
    m = re.search(r'PACKAGE_VERSION "([0-9.]+)"', p.read_text()) if p.exists() else None
    return m.group(1) if m else None


def describe(man: dict | None) -> str:
    """One line for a row label: versions, commits and which HEXL kernels run here."""
    if not man:
        return "not built"
    s = man.get("sources", {})
    c = lambda k: (s.get(k, {}).get("describe") or (s.get(k, {}).get("commit") or "?")[:10])  # noqa: E731
    if man.get("runs_ifma_kernels"):
        kern = "HEXL AVX-512 IFMA kernels"
    elif man.get("runs_avx512_kernels"):
        kern = "HEXL AVX-512 kernels (no IFMA)"
    else:
        kern = "HEXL without its AVX-512 kernels (this CPU has none: scalar fallback)"
    src, built = c("openfhe-development"), man.get("openfhe_version")
    ofhe = src if not built or src.lstrip("v") == built else f"{src} (built as {built}: the overlay's CMakeLists version)"
    return f"OpenFHE {ofhe} + HEXL {man.get('hexl_version')} ({c('hexl')}), -march=native, {kern}"

"""The benchmark harness (wavis.bench) on tiny inputs: the results schema of a real run, the
round protocol and its output checks, the regression comparison, the README generator and the
plots. No timing is asserted."""

from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest

from wavis.bench import main as bench_main
from wavis.bench.compare import compare
from wavis.bench.report import END, START, markdown_table, write_readme
from wavis.bench.runner import Budget, Worker, comparison_rows, interleave
from wavis.bench.schema import SCHEMA, load, make_row, new_doc, set_bound, stats, validate


def _doc(host="AMD EPYC / ifma", created="2026-12-07T12:00:00Z", commit="abc", rows=()):
    machine = {"cpu_model": host.split(" / ")[0], "simd_path": host.split(" / ")[1], "cores": 2, "threads": 1,
               "host_class": host, "loadavg_start": [1.0], "loadavg_end": [1.2]}
    d = new_doc("wavis bench --quick", "quick", machine, {"git_commit": commit, "wavis": "0.1.0"})
    d["created"] = created
    d["rows"] = list(rows)
    return d


def _row(name, value, lo, hi, unit="ms", better="lower", **params):
    return make_row("ckks", name, value, unit, better=better, params=params or {"N": 16384},
                    stats={"median": value, "min": lo, "max": hi, "n": 3, "spread_over": "rounds"})


def test_a_tiny_run_writes_the_schema_with_machine_bound_and_bounded_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("WAVIS_BENCH_BW_MIB", "16")
    monkeypatch.setenv("WAVIS_THREADS", "1")
    out = tmp_path / "r.json"
    rc = bench_main(["run", "--quick", "--suites", "ntt", "--no-refs", "--no-plots", "--quiet", "--out", str(out)])
    assert rc == 0
    doc = load(out)  # validates
    assert doc["schema"] == SCHEMA and doc["mode"] == "quick"
    m = doc["machine"]
    assert m["cores"] >= 1 and m["simd_path"] in m["simd_paths"] and m["host_class"].endswith(m["simd_path"])
    assert doc["software"]["git_commit"]
    b = doc["bound"]
    assert b["memory_bandwidth_GBps"] > 0 and b["mulmod_per_s"]["<=50"] > 0 and b["mulmod_path"] == m["simd_path"]
    assert doc["suites"]["ntt"]["status"] == "ok"
    names = {r["name"] for r in doc["rows"]}
    assert {"ntt_forward", "ntt_inverse"} <= names
    for r in doc["rows"]:
        assert r["value"] > 0 and r["stats"]["min"] <= r["value"] <= r["stats"]["max"]
        assert r["bound"]["limit"] in ("memory", "compute") and r["bound"]["mulmods"] == 16384 / 2 * 14
        assert r["ratio_to_bound"] == pytest.approx(r["value"] / r["bound"]["value"])


def test_mulmod_rate_rejects_what_the_cpu_or_the_prime_cannot_do():
    from wavis.backend import cpu

    q61 = cpu.generate_ntt_primes(61, 1, 4096)[0]
    assert cpu.mulmod_rate("portable", q61, 1000) > 0
    if "ifma" in cpu.simd_paths():
        with pytest.raises(ValueError, match="2\\^50"):
            cpu.mulmod_rate("ifma", q61, 1000)
    with pytest.raises(ValueError):
        cpu.mulmod_rate("nonsense", q61, 1000)


# A reference "library" that follows the protocol: add is right, multiply is wrong (its time
# must not count), rotate raises.
TOY = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from protocol import error_bits, serve

    def make(cfg):
        x = np.linspace(-1, 1, 8)
        def chk(want):
            def check(out):
                b = error_bits(float(np.max(np.abs(out - want))))
                return b >= 8, b, f"{b:.1f} bits"
            return check
        def boom():
            raise RuntimeError("no rotation here")
        return {"info": {"library": "toy", "version": "0"},
                "ops": {"add": (lambda: x + x, chk(2 * x)), "multiply_relin_rescale": (lambda: x + 1, chk(x * x)),
                        "rotate": (boom, chk(x))}}

    serve(make)
''')


def test_interleaved_rounds_check_every_output_before_its_time_counts(tmp_path):
    import wavis.bench

    toy = tmp_path / "toy.py"
    toy.write_text(TOY)
    proto_dir = str(next(iter(wavis.bench.__path__)))
    cfg = {"N": 2048, "depth": 1, "scale_bits": 30, "first_bits": 50, "dnum": 1, "security": "testing",
           "ops": ["add", "multiply_relin_rescale", "rotate"]}
    workers = {"wavis": Worker("wavis", [sys.executable, "-m", "wavis.bench.worker", "ckks", json.dumps(cfg)]),
               "toy": Worker("toy", [sys.executable, str(toy), proto_dir, "{}"])}
    try:
        for w in workers.values():
            w.wait_ready(timeout=120)
        assert workers["wavis"].info["limbs"] == 2
        data = interleave(workers, cfg["ops"], rounds=2, reps=1, budget=Budget(120), log=lambda m: None)
    finally:
        for w in workers.values():
            w.close()
    assert all(v is not None for v in data["add"]["wavis"].rounds + data["add"]["toy"].rounds)
    assert data["add"]["wavis"].check["ok"] and data["add"]["wavis"].check["bits"] > 10
    bad = data["multiply_relin_rescale"]["toy"]
    assert bad.rounds == [None, None] and "check failed" in bad.error  # wrong output: no time
    assert data["multiply_relin_rescale"]["wavis"].check["ok"]
    assert "no rotation here" in data["rotate"]["toy"].error
    refs = {"toy": {"label": "Toy 0", "status": "ok", "deviations": {"*": ["toy arithmetic"]}},
            "absent": {"label": "Absent", "status": "not installed: run `wavis bench setup`"}}
    rows = {r["name"]: r for r in comparison_rows("ckks", data, {"N": 2048}, refs)}
    add = rows["add"]["refs"]["toy"]
    assert add["status"] == "ok" and add["ratio"]["n"] == 2 and add["deviations"] == ["toy arithmetic"]
    assert add["ratio"]["min"] <= add["ratio"]["median"] <= add["ratio"]["max"]
    assert "ratio" not in rows["multiply_relin_rescale"]["refs"]["toy"]
    assert rows["multiply_relin_rescale"]["refs"]["toy"]["status"].startswith("check failed")
    assert rows["add"]["refs"]["absent"]["status"].startswith("not installed")
    doc = _doc(rows=list(rows.values()))
    assert validate(doc) == []
    assert "Toy" in markdown_table(doc) or "toy" in markdown_table(doc)


def test_compare_flags_a_regression_beyond_the_noise_and_nothing_within_it(tmp_path):
    old = _doc(rows=[_row("multiply", 10.0, 9.8, 10.2), _row("rotate", 10.0, 8.0, 12.0),
                     _row("gates", 100.0, 99.0, 101.0, unit="gates/s", better="higher"),
                     _row("encode", 2.0, 2.0, 2.0)])
    new = _doc(rows=[_row("multiply", 12.0, 11.9, 12.1),      # +20 % against ±4 % noise: regression
                     _row("rotate", 11.0, 9.0, 13.0),         # +10 % inside the 40 % spread: same
                     _row("gates", 80.0, 79.0, 81.0, unit="gates/s", better="higher"),  # throughput down
                     _row("encode", 1.5, 1.5, 1.5)])          # faster: improvement
    res = compare(old, new)
    verdict = {r["name"]: r["verdict"] for r in res["rows"]}
    assert verdict == {"multiply": "regression", "rotate": "same", "gates": "regression", "encode": "improvement"}
    assert res["regressions"] == 2 and res["same_host"]
    # one descheduled block among five samples does not hide a regression
    spiky = _row("multiply", 10.0, 9.9, 50.0)
    spiky["samples"] = [9.9, 10.0, 10.0, 10.1, 50.0]
    assert compare(_doc(rows=[spiky]), _doc(rows=[_row("multiply", 12.0, 11.9, 12.1)]))["regressions"] == 1
    # on CPU time: rows carry "cpu"; a change in wall time alone is not a CPU regression
    a_cpu, b_cpu = _row("multiply", 10.0, 9.9, 10.1), _row("multiply", 20.0, 19.9, 20.1)
    a_cpu["cpu"], b_cpu["cpu"] = stats([5.0]), stats([5.05])
    assert compare(_doc(rows=[a_cpu]), _doc(rows=[b_cpu]), metric="cpu")["regressions"] == 0
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(old))
    b.write_text(json.dumps(new))
    assert bench_main(["compare", str(a), str(b)]) == 1
    assert bench_main(["compare", str(a), str(a)]) == 0
    from wavis.cli import main as cli_main  # `wavis bench …` delegates to wavis.bench.main

    assert cli_main(["bench", "compare", str(a), str(b)]) == 1


def test_readme_generator_writes_one_row_per_host_class_and_only_its_section(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    mult = _row("multiply_relin_rescale", 14.0, 13.0, 15.0)
    mult["refs"]["openfhe"] = {"label": "OpenFHE 1.6.1.0 (PyPI wheel, no SIMD)", "status": "ok",
                               "stats": stats([50.0]), "ratio": stats([0.28]), "deviations": []}
    set_bound(mult, 3.5, limit="compute")
    (res / "bench-quick-a.json").write_text(json.dumps(_doc(commit="old111", created="2026-12-01T00:00:00Z", rows=[mult])))
    (res / "bench-quick-b.json").write_text(json.dumps(_doc(commit="new222", created="2026-12-07T00:00:00Z", rows=[mult])))
    (res / "bench-quick-c.json").write_text(json.dumps(_doc(host="Intel Xeon / avx2", commit="x333", rows=[mult])))
    (res / "bench-broken.json").write_text("{}")  # not the schema: ignored
    readme = tmp_path / "README.md"
    before, after = "# Title\n\n## Intro\nkeep me\n\n## Performance\n", "\n## Next\nkeep me too\n"
    readme.write_text(before + START + "\nold text\n" + END + after)
    assert write_readme(readme, res, tmp_path)
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(after) and "old text" not in text
    section = text[text.index(START):text.index(END)]
    host_rows = [ln for ln in section.splitlines() if ln.startswith("| AMD EPYC") or ln.startswith("| Intel Xeon")]
    assert len(host_rows) == 2  # one per host class, the newest run of each
    assert "new222" in section and "old111" not in section
    assert "0.28× OpenFHE wheel (no SIMD)" in section and "4.0× bound" in section
    assert not write_readme(readme, res, tmp_path)  # idempotent
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="markers"):
        write_readme(readme, res, tmp_path)


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from wavis.bench.report import plot

    r = _row("multiply_relin_rescale", 14.0, 13.0, 15.0)
    r["refs"]["openfhe"] = {"label": "x", "status": "ok", "ratio": stats([0.3, 0.25, 0.35])}
    set_bound(r, 3.5, limit="compute")
    ntt = [make_row("ntt", "ntt_forward", 10.0 * n / 4096, "us", params={"N": n, "prime_bits": 50, "limbs": 1})
           for n in (4096, 8192)]
    paths = plot(_doc(rows=[r, *ntt]), tmp_path / "run")
    assert sorted(p.name for p in paths) == ["run-bound.png", "run-ratios.png", "run-scaling.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_baseline_and_simd_columns_run_this_checkouts_worker(tmp_path):
    """--baseline DIR runs this checkout's worker with DIR's interpreter (here: this checkout's own,
    which must then report its real SIMD path), TFHE with the preset fields it is handed, and
    --simd-also runs the worker under WAVIS_SIMD=<path>; every output is checked as usual."""
    from pathlib import Path

    from wavis.backend import cpu
    from wavis.bench.runner import child_env
    from wavis.tfhe.params import get_preset

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "baseline_worker.py"
    cfg = {"N": 2048, "depth": 1, "scale_bits": 30, "first_bits": 50, "dnum": 1, "security": "testing",
           "ops": ["add", "multiply_relin_rescale"]}
    workers = {"wavis": Worker("wavis", [sys.executable, "-m", "wavis.bench.worker", "ckks", json.dumps(cfg)]),
               "baseline": Worker("baseline", [sys.executable, str(script), "ckks", json.dumps(cfg)],
                                  env=child_env(1)),
               "wavis_portable": Worker("wavis_portable", [sys.executable, "-m", "wavis.bench.worker", "ckks",
                                                           json.dumps(cfg)], env=child_env(1, WAVIS_SIMD="portable"))}
    fields = {f: getattr(get_preset("testing"), f) for f in ("name", "preset_id", "lwe_dimension", "glwe_dimension",
                                                             "polynomial_size", "pbs_base_log", "pbs_level",
                                                             "ks_base_log", "ks_level", "lwe_noise_std",
                                                             "glwe_noise_std", "security_bits", "insecure")}
    tfhe = Worker("baseline", [sys.executable, str(script), "tfhe",
                               json.dumps({"preset": "standard_128", "tfhe_fields": fields, "batches": []})],
                  env=child_env(1))
    try:
        for w in [*workers.values(), tfhe]:
            w.wait_ready(timeout=300)
        assert workers["wavis"].info["simd_path"] == cpu.simd_path()
        assert workers["baseline"].info["simd_path"] == cpu.simd_path()
        assert workers["wavis_portable"].info["simd_path"] == "portable"
        assert tfhe.info["n"] == get_preset("testing").n != get_preset("standard_128").n  # the fields won
        data = interleave(workers, cfg["ops"], rounds=2, reps=1, budget=Budget(300), log=lambda m: None)
        gate = interleave({"baseline": tfhe}, ["nand_gate"], rounds=1, reps=1, budget=Budget(300), log=lambda m: None)
    finally:
        for w in [*workers.values(), tfhe]:
            w.close()
    assert gate["nand_gate"]["baseline"].check["ok"]
    refs = {lib: {"label": lib, "status": "ok", "deviations": {}} for lib in ("baseline", "wavis_portable")}
    rows = {r["name"]: r for r in comparison_rows("ckks", data, {"N": 2048}, refs)}
    for op in cfg["ops"]:
        for lib in refs:
            ref = rows[op]["refs"][lib]
            assert ref["check"]["ok"] and ref["ratio"]["n"] == 2, (op, lib, ref)


# ------------------------------------------------------------------ OpenFHE + HEXL (wavis.bench.native)
def _fake_sources(tmp_path):
    """Source trees with the files the build checks and the overlay's two HEXL version pins."""
    from pathlib import Path

    t = Path(tmp_path)
    (t / "ofhe/src/pke/include").mkdir(parents=True)
    (t / "ofhe/src/pke/include/openfhe.h").write_text("// openfhe")
    (t / "ofhe/CMakeLists.txt").write_text("project(OpenFHE)  # upstream\n")
    (t / "ofhe/src/core").mkdir(parents=True)
    (t / "ofhe/src/core/keep.cpp").write_text("// upstream core file the overlay does not touch")
    (t / "ovl/third-party/intel-hexl").mkdir(parents=True)
    (t / "ovl/third-party/intel-hexl/intel-hexl.cmake").write_text("find_package(HEXL 1.2.6 HINTS ${X} REQUIRED)\n")
    (t / "ovl/CMakeLists.User.txt").write_text("    find_package(HEXL 1.2.6 HINTS ${Y} REQUIRED)\n")
    (t / "ovl/CMakeLists.txt").write_text("project(OpenFHE)  # overlay\n")
    (t / "ovl/src/core/include").mkdir(parents=True)
    (t / "ovl/src/core/include/hexl.h").write_text("// overlay header")
    (t / "hexl/hexl/include/hexl").mkdir(parents=True)
    (t / "hexl/hexl/include/hexl/hexl.hpp").write_text("")
    (t / "hexl/CMakeLists.txt").write_text("project(HEXL VERSION 1.2.5 LANGUAGES C CXX)\n")
    (t / "cpuf/include").mkdir(parents=True)
    (t / "cpuf/include/cpu_features_macros.h").write_text("")
    return t / "ofhe", t / "ovl", t / "hexl", t / "cpuf"


def test_native_build_refuses_a_cache_inside_the_repository_and_a_missing_source_tree(tmp_path):
    from wavis.bench import native

    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    srcs = _fake_sources(tmp_path)
    with pytest.raises(native.NativeBuildError, match="inside the repository"):
        native.build(repo, *srcs, cache=repo / "cache")
    with pytest.raises(native.NativeBuildError, match="not a hexl source tree"):
        native.build(repo, srcs[0], srcs[1], tmp_path / "nowhere", srcs[3], cache=tmp_path / "c")
    with pytest.raises(native.NativeBuildError, match="--openfhe-src is required"):
        native.build(repo, None, *srcs[1:], cache=tmp_path / "c")
    assert not (repo / "cache").exists()
    assert native.status(tmp_path / "c").startswith("not built: run `wavis bench setup --openfhe-src")


def test_the_overlay_is_staged_over_openfhe_and_asks_for_the_hexl_version_given(tmp_path):
    from wavis.bench import native

    ofhe, ovl, hexl, _ = _fake_sources(tmp_path)
    ver = native.hexl_version(hexl)
    assert ver == "1.2.5"
    dest = tmp_path / "staged"
    changes = native.stage_overlay(ofhe, ovl, dest, ver)
    assert (dest / "src/pke/include/openfhe.h").exists() and (dest / "src/core/keep.cpp").exists()
    assert (dest / "src/core/include/hexl.h").exists()
    assert "overlay" in (dest / "CMakeLists.txt").read_text()
    assert "find_package(HEXL 1.2.5 HINTS" in (dest / "third-party/intel-hexl/intel-hexl.cmake").read_text()
    assert "find_package(HEXL 1.2.5 HINTS" in (dest / "CMakeLists.User.txt").read_text()
    assert len(changes) == 2
    assert "1.2.6" in (ovl / "CMakeLists.User.txt").read_text()  # the source tree itself is untouched
    (hexl / "CMakeLists.txt").write_text("project(HEXL LANGUAGES CXX)\n")
    with pytest.raises(native.NativeBuildError, match="declares no HEXL version"):
        native.hexl_version(hexl)


def test_hexl_configure_findings_and_the_row_label_say_which_kernels_run():
    from wavis.bench import native

    log = ("-- Compile flag not found: HEXL_HAS_AVX512DQ\n-- Compile flag not found: HEXL_HAS_AVX512IFMA\n"
           "-- Compile flag not found: HEXL_HAS_AVX512VBMI2\n-- Setting HEXL_HAS_AVX256\n")
    f = native.hexl_configure_flags(log)
    assert f == {"HEXL_HAS_AVX512DQ": False, "HEXL_HAS_AVX512IFMA": False, "HEXL_HAS_AVX512VBMI2": False,
                 "HEXL_HAS_AVX256": True}
    man = {"openfhe_version": "1.5.0", "hexl_version": "1.2.5", "runs_avx512_kernels": False, "runs_ifma_kernels": False,
           "sources": {"hexl": {"describe": "v1.2.5-4-g2d196fd"}, "openfhe-development": {"describe": "v1.5.1"}}}
    assert "without its AVX-512 kernels" in native.describe(man)
    assert "OpenFHE v1.5.1 (built as 1.5.0: the overlay's CMakeLists version) + HEXL 1.2.5" in native.describe(man)
    assert "AVX-512 IFMA kernels" in native.describe(dict(man, runs_avx512_kernels=True, runs_ifma_kernels=True))
    assert native.describe(None) == "not built"


def test_quick_bootstrap_compares_openfhe_at_the_presets_ring_slots_and_secret():
    from wavis.bench.suites import PLANS, bootstrap_deviations
    from wavis.ckks.presets import BOOTSTRAP_PRESETS

    for mode in ("quick", "full"):
        bp = PLANS[mode]["bootstrap"]
        p = BOOTSTRAP_PRESETS[bp["preset"]]
        o = bp["openfhe"]
        assert o["N"] == p.poly_degree and o["slots"] == (bp["slots"] or p.poly_degree // 2)
        assert o["first_mod_bits"] == p.first_mod_bits
    bp = PLANS["quick"]["bootstrap"]
    devs = bootstrap_deviations(bp["preset"], {}, bp["openfhe"], {"boot_depth": 12, "special_bits": [60, 60]})
    assert any("dnum 16" in d and "dnum 8" in d for d in devs)  # WAVIS's and OpenFHE's digits both recorded
    assert any("sparse-secret encapsulation h = 32" in d for d in devs)


def test_heavy_lock_is_taken_for_memory_heavy_suites_only(tmp_path, monkeypatch):
    import fcntl

    from wavis.bench import heavy_suite
    from wavis.bench.suites import PLANS

    assert heavy_suite("bootstrap", PLANS["quick"]) and heavy_suite("ckks", PLANS["full"])
    assert not heavy_suite("ckks", PLANS["quick"]) and not heavy_suite("ntt", PLANS["full"])
    monkeypatch.setenv("WAVIS_BENCH_BW_MIB", "16")
    monkeypatch.setenv("WAVIS_THREADS", "1")  # run() sets it when unset: it must not leak into later tests
    lock = tmp_path / "big.lock"
    held = open(lock, "a")
    fcntl.flock(held, fcntl.LOCK_EX)  # another job holds it: a light suite must not wait for it
    out = tmp_path / "r.json"
    rc = bench_main(["run", "--quick", "--suites", "ntt", "--no-refs", "--no-plots", "--quiet", "--out", str(out),
                     "--heavy-lock", str(lock)])
    assert rc == 0 and load(out)["suites"]["ntt"]["status"] == "ok"
    held.close()


def test_heavy_lock_is_held_while_a_heavy_suite_runs(tmp_path):
    import fcntl
    import types

    from wavis.bench import _heavy_lock
    from wavis.bench.suites import PLANS

    h = types.SimpleNamespace(plan=PLANS["quick"], log=lambda m: None)
    lock = tmp_path / "big.lock"
    f = _heavy_lock(str(lock), "bootstrap", h)
    other = open(lock, "a")
    with pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.close()
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the suite
    other.close()
    assert _heavy_lock(str(lock), "ntt", h) is None


def test_a_suite_whose_every_figure_failed_is_reported_failed(tmp_path, monkeypatch):
    from wavis.bench import suites

    def broken(h, budget):  # a worker died: rows carry the error and no figure
        row = make_row("ntt", "ntt_forward", None, "us", params={"N": 16}, error="AttributeError: no diag_mac")
        return [row], ""

    monkeypatch.setitem(suites.SUITES, "ntt", broken)
    monkeypatch.setenv("WAVIS_BENCH_BW_MIB", "16")
    monkeypatch.setenv("WAVIS_THREADS", "1")
    out = tmp_path / "r.json"
    rc = bench_main(["run", "--quick", "--suites", "ntt", "--no-refs", "--no-plots", "--quiet", "--out", str(out)])
    s = load(out)["suites"]["ntt"]
    assert rc == 1 and s["status"] == "failed" and "diag_mac" in s["note"]


def test_two_cpu_generations_under_one_brand_name_get_their_own_readme_rows(tmp_path):
    """A VM that reports only "AMD EPYC" for a Zen 4 and a Zen 5: the family/model numbers of
    /proc/cpuinfo (machine.cpu_id) keep their rows apart; the run names the file after them."""
    from wavis.bench.machine import cpu_id, host_class, machine_info

    assert host_class("AMD EPYC", "ifma") == "AMD EPYC / ifma"  # results written before cpu_id
    assert host_class("AMD EPYC", "ifma", "family 26 model 2") == "AMD EPYC (family 26 model 2) / ifma"
    m = machine_info(1)
    assert m["cpu_id"] == cpu_id() and m["host_class"] == host_class(m["cpu_model"], m["simd_path"], m["cpu_id"])
    if m["cpu_id"] is not None:
        assert re.fullmatch(r"family \d+ model \d+", m["cpu_id"])
    res = tmp_path / "results"
    res.mkdir()
    mult = _row("multiply_relin_rescale", 14.0, 13.0, 15.0)
    for name, ident, commit in (("zen4", "family 25 model 17", "zen4aaa"), ("zen5", "family 26 model 2", "zen5bbb")):
        d = _doc(host=host_class("AMD EPYC", "ifma", ident), commit=commit, rows=[mult])
        d["machine"]["cpu_id"] = ident
        (res / f"bench-quick-{name}.json").write_text(json.dumps(d))
    readme = tmp_path / "README.md"
    readme.write_text("# T\n" + START + "\n" + END + "\n")
    assert write_readme(readme, res, tmp_path)
    rows = [ln for ln in readme.read_text().splitlines() if ln.startswith("| AMD EPYC")]
    assert len(rows) == 2 and any("family 25 model 17" in r and "zen4aaa" in r for r in rows)
    assert any("family 26 model 2" in r and "zen5bbb" in r for r in rows)

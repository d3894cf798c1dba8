"""Presenting a results document: the terminal table (rich), PNG plots (matplotlib), the
markdown table, and the README's performance section (one row per host class)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from .schema import load

REF_ORDER = ("openfhe", "openfhe-native", "tenseal")
REF_SHORT = {"openfhe": "OpenFHE wheel (no SIMD)", "openfhe-native": "OpenFHE+HEXL (native)", "tenseal": "TenSEAL"}
SHORT_PARAMS = ("N", "depth", "scale_bits", "dnum", "prime_bits", "limbs", "preset", "slots", "batch", "threads",
                "concurrency", "max_batch", "delay_ms")


def fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    a = abs(v)
    s = f"{v:.3g}" if a < 100 else f"{v:.0f}"
    if 1000 <= a < 1e6:
        s = f"{v:,.0f}"
    return f"{s} {unit}".strip()


def fmt_stats(st: dict | None, unit: str) -> str:
    if not st:
        return "-"
    if st["n"] <= 1 or st["min"] == st["max"]:
        return fmt(st["median"], unit)
    return f"{fmt(st['median'], unit)} [{fmt(st['min'])}–{fmt(st['max'])}]"


def fmt_ratio(r: dict | None) -> str:
    if not r:
        return "-"
    if r["n"] <= 1 or r["min"] == r["max"]:
        return f"{r['median']:.2f}"
    return f"{r['median']:.2f} [{r['min']:.2f}–{r['max']:.2f}]"


def short_params(p: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items() if k in SHORT_PARAMS and v is not None)


def refs_in(doc: dict) -> list[str]:
    seen = {lib for r in doc["rows"] for lib in r.get("refs", {})}
    return [x for x in REF_ORDER if x in seen] + sorted(seen - set(REF_ORDER))


def ref_cell(ref: dict | None, unit: str) -> tuple[str, str]:
    """(figure, ratio) cells of one reference."""
    if not ref:
        return "", ""
    if ref.get("status") != "ok" and not ref.get("stats"):
        return ref.get("status", "-").split(": ")[0][:40], "-"
    ratio = fmt_ratio(ref.get("ratio"))
    if ref.get("cpu_ratio"):
        ratio += f" (cpu {ref['cpu_ratio']['median']:.2f})"
    if ref.get("deviations"):
        ratio += " †"
    return fmt_stats(ref.get("stats"), unit), ratio


def table_rows(doc: dict) -> tuple[list[str], list[list[str]]]:
    libs = refs_in(doc)
    head = ["suite", "figure", "parameters", "WAVIS median [min–max]", "WAVIS CPU", "check"]
    for lib in libs:
        head += [REF_SHORT.get(lib, lib), f"WAVIS/{REF_SHORT.get(lib, lib)} per round"]
    head += ["bound", "× bound"]
    body = []
    for r in doc["rows"]:
        chk = r.get("check") or {}
        c = ("ok" if chk.get("ok") else "FAILED") + (f" {chk['bits']:.1f} b" if chk.get("bits") is not None else "")
        if not chk:
            c = "-"
        line = [r["suite"], r["name"], short_params(r.get("params", {})), fmt_stats(r.get("stats"), r["unit"])
                if r.get("stats") else fmt(r.get("value"), r["unit"]),
                fmt((r.get("cpu") or {}).get("median"), r["unit"]) if r.get("cpu") else "-", c]
        for lib in libs:
            line += list(ref_cell(r.get("refs", {}).get(lib), r["unit"]))
        b = r.get("bound") or {}
        line += [fmt(b.get("value"), r["unit"]) + (f" ({b['limit']})" if b.get("limit") else "") if b else "-",
                 f"{r['ratio_to_bound']:.1f}" if r.get("ratio_to_bound") else "-"]
        body.append(line)
    return head, body


def header_lines(doc: dict) -> list[str]:
    m, s, b = doc["machine"], doc["software"], doc.get("bound", {})
    ident = f" ({m['cpu_id']})" if m.get("cpu_id") else ""
    out = [f"{m['cpu_model']}{ident}, SIMD path {m['simd_path']}, {m['cores']} cores, threads {m['threads']}, "
           f"load {m.get('loadavg_start')} → {m.get('loadavg_end')}",
           f"wavis {s.get('wavis')} @ {s.get('git_commit')}{' (dirty)' if s.get('git_dirty') else ''}, "
           f"OpenFHE {s.get('openfhe') or '-'} (PyPI wheel, no SIMD), TenSEAL {s.get('tenseal') or '-'}; "
           f"{doc['created']}; `{doc['command']}`"]
    if s.get("openfhe_native"):
        out.append(f"OpenFHE+HEXL (native): {s['openfhe_native']}")
    if b:
        mm = b.get("mulmod_per_s", {})
        out.append(f"bound: memory {b['memory_bandwidth_GBps']:.1f} GB/s (1 thread); modular multiplies "
                   f"({b.get('mulmod_path')}) {mm.get('<=50', 0) / 1e9:.2f} G/s (50-bit), {mm.get('>50', 0) / 1e9:.2f} G/s (61-bit)")
    return out


def print_table(doc: dict, console=None) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # the bench extra is missing: plain text
        print("\n".join(header_lines(doc)))
        print(markdown_table(doc))
        return
    if console is None:
        import shutil

        cols = shutil.get_terminal_size((0, 0)).columns
        console = Console(width=max(cols, 200) if not sys.stdout.isatty() else max(cols, 120))
    head, body = table_rows(doc)
    t = Table(title="WAVIS benchmark", caption="\n".join(header_lines(doc)) + "\n† parameter deviations in the JSON row",
              show_lines=False, header_style="bold")
    for h in head:
        t.add_column(h, overflow="fold")
    for line in body:
        t.add_row(*line)
    console.print(t)
    for name, s in doc["suites"].items():
        console.print(f"[bold]{name}[/]: {s['status']} in {s['seconds']:.0f} s (budget {s['budget_s']} s)"
                      + (f" — {s['note']}" if s.get("note") else ""))


def markdown_table(doc: dict) -> str:
    head, body = table_rows(doc)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- plots
def plot(doc: dict, stem: Path) -> list[Path]:
    """PNG files ``<stem>-ratios.png`` (WAVIS / reference per row, median and min–max),
    ``<stem>-bound.png`` (time over the hardware bound) and ``<stem>-scaling.png`` (figures vs
    ring degree, limbs, batch size, concurrency) where the document has such rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    title = f"{doc['machine']['host_class']}, {doc['created'][:10]}, {doc['software'].get('git_commit')}"
    libs = refs_in(doc)
    items = []
    for r in doc["rows"]:
        for lib in libs:
            ref = r.get("refs", {}).get(lib)
            if ref and ref.get("ratio"):
                items.append((f"{r['suite']} {r['name']} {short_params({k: v for k, v in r['params'].items() if k in ('N', 'preset', 'slots')})}", lib, ref["ratio"]))
    if items:
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(items) + 1.8))
        colors = {"openfhe": "tab:blue", "openfhe-native": "tab:green", "tenseal": "tab:orange"}
        for i, (label, lib, r) in enumerate(items):
            ax.errorbar(r["median"], i, xerr=[[r["median"] - r["min"]], [r["max"] - r["median"]]], fmt="o",
                        color=colors.get(lib, "tab:gray"), capsize=3)
        ax.set_yticks(range(len(items)), [f"{a} vs {REF_SHORT.get(b, b)}" for a, b, _ in items], fontsize=7)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("WAVIS time / reference time (per round: median, min–max); < 1 = WAVIS faster")
        ax.set_title(title, fontsize=8)
        ax.invert_yaxis()
        fig.tight_layout()
        p = stem.with_name(stem.name + "-ratios.png")
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append(p)
    bnd = [r for r in doc["rows"] if r.get("ratio_to_bound")]
    if bnd:
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(bnd) + 1.8))
        ys = range(len(bnd))
        ax.barh(list(ys), [r["ratio_to_bound"] for r in bnd],
                color=["tab:red" if (r.get("bound") or {}).get("limit") == "compute" else "tab:green" for r in bnd])
        ax.set_yticks(list(ys), [f"{r['suite']} {r['name']} {short_params(r['params'])}" for r in bnd], fontsize=7)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("measured / machine bound (red: compute-bound, green: memory-bound; 1 = at the limit)")
        ax.set_title(title, fontsize=8)
        ax.invert_yaxis()
        fig.tight_layout()
        p = stem.with_name(stem.name + "-bound.png")
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append(p)
    series = _scaling_series(doc)
    if series:
        fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 4), squeeze=False)
        for ax, (xname, lines) in zip(axes[0], series.items()):
            for label, pts in lines.items():
                pts.sort()
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(xname)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
        fig.suptitle(title, fontsize=8)
        fig.tight_layout()
        p = stem.with_name(stem.name + "-scaling.png")
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append(p)
    return out


def _scaling_series(doc: dict) -> dict:
    """{x-axis name: {line label: [(x, y)]}} for lines with at least two points."""
    s: dict = {}
    for r in doc["rows"]:
        p, v = r.get("params", {}), r.get("value")
        if v is None:
            continue
        if r["suite"] == "ntt" and r["name"] != "ntt_forward_per_limb":
            s.setdefault("ring degree N", {}).setdefault(f"{r['name']} {p.get('prime_bits')}-bit (us)", []).append((p["N"], v))
        elif r["suite"] == "ntt":
            s.setdefault("limbs (N=2^14)", {}).setdefault(f"{r['name']} (us/limb)", []).append((p["limbs"], v))
        elif r["name"].startswith("scaling_") and p.get("depth") == 2 and p.get("scale_bits") == 40:
            s.setdefault("ring degree N", {}).setdefault(f"ckks {r['name'][8:]} depth 2 (ms)", []).append((p["N"], v))
        elif r["name"].startswith("scaling_"):
            s.setdefault("limbs (N=2^14)", {}).setdefault(f"ckks {r['name'][8:]} (ms)", []).append((p.get("limbs") or 0, v))
        elif r["name"] == "nand_batch_gates_per_s":
            s.setdefault("batch size", {}).setdefault(f"tfhe {p.get('preset')} {p.get('threads')} thr (gates/s)", []).append((p["batch"], v))
        elif r["name"] == "gate_requests_per_s":
            s.setdefault("concurrency", {}).setdefault(f"service batch<={p.get('max_batch')} delay {p.get('delay_ms')} (req/s)", []).append((p["concurrency"], v))
    return {k: {lab: pts for lab, pts in lines.items() if len(pts) >= 2} for k, lines in s.items()
            if any(len(pts) >= 2 for pts in lines.values())}


# --------------------------------------------------------------------------------------- README
START, END = "<!-- wavis-bench:start -->", "<!-- wavis-bench:end -->"
HEADLINES = [  # (suite, name, params filter, column title)
    ("ckks", "multiply_relin_rescale", {"N": 16384}, "CKKS multiply N=2^14"),
    ("ckks", "rotate", {"N": 16384}, "CKKS rotate N=2^14"),
    ("ckks", "encrypt", {"N": 16384}, "CKKS encrypt N=2^14"),
    ("ntt", "ntt_forward", {"N": 16384, "prime_bits": 50}, "NTT N=2^14 (1 limb)"),
    ("bootstrap", "bootstrap", {}, "CKKS bootstrap"),
    ("tfhe", "nand_gate", {"preset": "standard_128"}, "TFHE gate standard_128"),
]


def _find(doc: dict, suite: str, name: str, flt: dict) -> dict | None:
    for r in doc["rows"]:
        if r["suite"] == suite and r["name"] == name and all(r["params"].get(k) == v for k, v in flt.items()):
            return r
    return None


def headline_cell(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return "-"
    cell = fmt(r["value"], r["unit"])
    if r.get("cpu"):
        cell += f" (CPU {fmt(r['cpu']['median'], r['unit'])})"
    if r["suite"] == "bootstrap":
        cell += f", {r['params'].get('preset')}, {r['params'].get('slots')} slots"
    o = r.get("refs", {}).get("openfhe")
    if o and o.get("ratio"):
        cpu = f" (CPU {o['cpu_ratio']['median']:.2f}×)" if o.get("cpu_ratio") else ""
        cell += f", {o['ratio']['median']:.2f}×{cpu} OpenFHE wheel (no SIMD)"
    nat = r.get("refs", {}).get("openfhe-native")
    if nat and nat.get("ratio"):
        cpu = f" (CPU {nat['cpu_ratio']['median']:.2f}×)" if nat.get("cpu_ratio") else ""
        cell += f", {nat['ratio']['median']:.2f}×{cpu} OpenFHE+HEXL"
    if r.get("ratio_to_bound"):
        cell += f", {r['ratio_to_bound']:.1f}× bound"
    return cell


def latest_per_host(results_dir: Path) -> list[tuple[Path, dict]]:
    best: dict[str, tuple[Path, dict]] = {}
    for p in sorted(results_dir.glob("bench-*.json")):
        try:
            doc = load(p)
        except (ValueError, json.JSONDecodeError):
            continue
        hc = doc["machine"]["host_class"]
        if hc not in best or doc["created"] > best[hc][1]["created"]:
            best[hc] = (p, doc)
    return sorted(best.values(), key=lambda x: x[1]["created"], reverse=True)


def readme_section(results_dir: Path, repo_root: Path) -> str:
    docs = latest_per_host(results_dir)
    lines = [START, "<!-- written by `wavis bench readme` from benchmarks/results/bench-*.json; edits here are overwritten -->",
             "One row per host class (CPU model / SIMD path), from its latest `wavis bench` run. Ratios are WAVIS time /",
             "OpenFHE time, interleaved round by round, same ring, chain, scale and dnum; the OpenFHE column is the",
             "PyPI wheel, which is built **without SIMD**; \"OpenFHE+HEXL\" is OpenFHE built with Intel HEXL",
             "(`wavis bench setup --openfhe-src …`; on a host without AVX-512 HEXL runs its scalar fallback, the",
             "row's JSON says which kernels ran).",
             "Wall-clock figures on a loaded shared host are upper bounds; the process CPU time (all threads) is given",
             "beside them, and the ratio column also gives the CPU-time ratio.", ""]
    if not docs:
        return "\n".join(lines + ["No results yet: run `wavis bench --quick`.", END])
    head = ["host (CPU / SIMD path)", "date", "commit", "command", "load"] + [h[3] for h in HEADLINES]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p, doc in docs:
        m, s = doc["machine"], doc["software"]
        cells = [f"{m['host_class']} ({m['cores']} cores)", doc["created"][:10],
                 f"{s.get('git_commit')}{'+' if s.get('git_dirty') else ''}", f"`{doc['command']}`",
                 f"{(m.get('loadavg_start') or ['?'])[0]}–{(m.get('loadavg_end') or ['?'])[0]}"]
        cells += [headline_cell(_find(doc, *h[:3])) for h in HEADLINES]
        lines.append("| " + " | ".join(cells) + " |")
    p, doc = docs[0]
    rel = p.relative_to(repo_root) if p.is_relative_to(repo_root) else p
    lines += ["", f"Latest run in full ({rel}; plots beside it as `{p.stem}-*.png`):", ""]
    lines += header_lines(doc)[:4]
    lines += ["", markdown_table(doc), "", "† the row records parameter deviations (JSON `refs.*.deviations`).", END]
    return "\n".join(lines)


def write_readme(readme: Path, results_dir: Path, repo_root: Path) -> bool:
    """Replace the text between the markers in ``readme``; returns whether it changed. Raises
    ValueError when the markers are missing (only the generated section is ever touched)."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} … {END} markers: add them where the performance section goes")
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: readme_section(results_dir, repo_root), text,
                 count=1, flags=re.S)
    if new != text:
        readme.write_text(new)
    return new != text

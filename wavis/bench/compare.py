"""``wavis bench compare OLD.json NEW.json``: which figures moved beyond the measured noise.

Rows are matched by suite, name and parameters. For each pair the noise is the larger
relative spread ((max − min) / median) of the two measurements — over their samples with the
highest and lowest dropped when there are at least five (one descheduled block on a shared host
does not make every change look like noise) — and never below ``min_noise`` (default 5 %: a
single-round quick run has no spread of its own). ``metric="cpu"`` compares the process CPU
medians instead of wall-clock medians (steadier on a loaded host; rows without CPU time are
skipped). A change
larger than the noise, in the bad direction for the row's unit (time up, throughput down), is
a regression; in the good direction, an improvement. Documents from different host classes
are compared but flagged, since their differences are not regressions.
"""

from __future__ import annotations

from .schema import rel_spread, row_key, stats


def noise_of(row: dict, metric: str = "wall") -> float:
    """Relative spread of a row's measurement (trimmed when it has ≥ 5 samples)."""
    if metric == "cpu":
        return rel_spread(row.get("cpu"))
    samples = sorted(v for v in row.get("samples") or [] if v is not None)
    if len(samples) >= 5:
        return rel_spread(stats(samples[1:-1]))
    return rel_spread(row.get("stats"))


def _value(row: dict, metric: str) -> float | None:
    if metric == "cpu":
        return (row.get("cpu") or {}).get("median")
    return row.get("value")


def compare(old: dict, new: dict, min_noise: float = 0.05, metric: str = "wall") -> dict:
    """{"rows": [{"key", "suite", "name", "params", "unit", "old", "new", "change", "noise", "verdict"}],
    "regressions": n, "improvements": n, "same_host": bool, "only_old": [...], "only_new": [...]}."""
    o = {row_key(r): r for r in old["rows"] if _value(r, metric)}
    n = {row_key(r): r for r in new["rows"] if _value(r, metric)}
    out = []
    for k in o.keys() & n.keys():
        a, b = o[k], n[k]
        noise = max(noise_of(a, metric), noise_of(b, metric), min_noise)
        va, vb = _value(a, metric), _value(b, metric)
        change = (vb - va) / va
        worse = change > 0 if a.get("better", "lower") == "lower" else change < 0
        verdict = "same" if abs(change) <= noise else ("regression" if worse else "improvement")
        out.append({"key": k, "suite": b["suite"], "name": b["name"], "params": b.get("params", {}), "unit": b["unit"],
                    "old": va, "new": vb, "change": change, "noise": noise, "verdict": verdict})
    out.sort(key=lambda r: ({"regression": 0, "improvement": 1, "same": 2}[r["verdict"]], r["suite"], r["name"]))
    return {"rows": out, "metric": metric, "regressions": sum(r["verdict"] == "regression" for r in out),
            "improvements": sum(r["verdict"] == "improvement" for r in out),
            "same_host": old["machine"]["host_class"] == new["machine"]["host_class"],
            "only_old": sorted(o.keys() - n.keys()), "only_new": sorted(n.keys() - o.keys())}


def print_comparison(res: dict, old: dict, new: dict) -> None:
    from .report import fmt, short_params

    print(f"old: {old['created']} {old['software'].get('git_commit')} on {old['machine']['host_class']}")
    print(f"new: {new['created']} {new['software'].get('git_commit')} on {new['machine']['host_class']}")
    if not res["same_host"]:
        print("WARNING: different host classes: differences are not regressions of the code")
    for r in res["rows"]:
        print(f"  {r['verdict']:<11s} {r['suite']:<9s} {r['name']:<26s} {short_params(r['params']):<40s} "
              f"{fmt(r['old'], r['unit']):>12s} → {fmt(r['new'], r['unit']):>12s}  {100 * r['change']:+6.1f} % "
              f"(noise ±{100 * r['noise']:.1f} %)")
    print(f"{res['regressions']} regression(s), {res['improvements']} improvement(s), "
          f"{len(res['rows'])} figures compared; {len(res['only_old'])} only in old, {len(res['only_new'])} only in new")

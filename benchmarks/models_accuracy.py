"""Accuracy and latency of the catalogue models under CKKS (issue 19).

For each model: a key with exactly the model's needs at its 128-bit ``params_required`` (or
``--poly-degree/--security testing`` for a quick run), the *whole* held-out split
(``wavis/models/data/digits_test.npz``, 540 samples) packed ``max_batch`` samples per
ciphertext, encrypted inference through the library (the same code the server's job runs),
decryption, and:

* plaintext accuracy (the float64 graph) and encrypted accuracy (argmax of the decrypted
  logits), each with a Wilson 95 % interval; the argmax agreement and the largest |logit
  difference| between the two;
* latency: wall and CPU (user+sys of this process, all threads) per ciphertext inference,
  min/median over the ciphertexts (one ciphertext carries up to ``max_batch`` samples and costs
  the same for 1 sample as for a full batch, so this is also the one-sample latency); key
  generation time; the host's load average before and after (wall-clock figures under load are
  upper bounds).

Writes ``benchmarks/results/models_<poly>.json`` and, for a 128-bit run, the ``measured``
section of each ``wavis/models/data/<id>.json`` (the catalogue's numbers).

Run (heavy: take the bench lock on the shared host):
    flock /work/notes/bench.lock .venv/bin/python benchmarks/models_accuracy.py [--only ID]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import time
from pathlib import Path

import numpy as np

from wavis import models
from wavis.bench.machine import cpu_model
from wavis.ckks import Evaluator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCRIPT = "benchmarks/models_accuracy.py"


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """Wilson score interval of a proportion k/n (95 %)."""
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(c - h, 4), round(c + h, 4)]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(m, params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    from wavis.client import KeyPair

    mid = m.id
    t0, c0 = time.perf_counter(), cpu_s()
    boot = bool(params.get("bootstrap_preset")) and m.graph.bootstraps_needed(int(params["max_depth"])) > 0
    keys = KeyPair.generate(params, galois_steps=m.galois_steps(int(params["poly_degree"]) // 2),
                            bootstrappable=boot)  # = wavis.client.models.model_keys
    keygen = (time.perf_counter() - t0, cpu_s() - c0)
    ev = Evaluator(keys.params, keys.eval_keys)
    slots = int(keys.params.slot_count)
    cap = m.max_batch(slots)
    logits, walls, cpus = [], [], []
    for s in range(0, len(y), cap):
        xb = x[s:s + cap]
        ct = keys.encrypt(m.encode_batch(xb, slots))
        t0, c0 = time.perf_counter(), cpu_s()
        out = m.infer(ev, ct)
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_s() - c0)
        logits.append(m.decode_batch(keys.decrypt(out), len(xb)))
        print(f"  {mid}: {s + len(xb)}/{len(y)} samples, {walls[-1] * 1e3:.0f} ms", flush=True)
    enc = np.concatenate(logits)
    plain = m.predict_plain(x)
    k_plain = int(np.sum(plain.argmax(1) == y))
    k_enc = int(np.sum(enc.argmax(1) == y))
    n = len(y)
    return {
        "model": mid, "params": keys.params.to_dict(), "rss_max_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "levels_consumed": m.depth,
        "galois_keys": len(keys.eval_keys.galois_keys), "samples": n,
        "bootstraps_per_inference": m.graph.bootstraps_needed(int(params["max_depth"])) if boot else 0, "samples_per_ciphertext": cap,
        "ciphertexts": len(walls),
        "accuracy_plaintext": round(k_plain / n, 4), "accuracy_plaintext_ci95": wilson(k_plain, n),
        "accuracy_encrypted": round(k_enc / n, 4), "accuracy_encrypted_ci95": wilson(k_enc, n),
        "argmax_agreement": round(float(np.mean(plain.argmax(1) == enc.argmax(1))), 4),
        "max_abs_logit_error": float(np.max(np.abs(plain - enc))),
        "keygen_s": {"wall": round(keygen[0], 3), "cpu": round(keygen[1], 3)},
        "inference_ms_per_ciphertext": {
            "wall_min": round(min(walls) * 1e3, 1), "wall_median": round(float(np.median(walls)) * 1e3, 1),
            "cpu_min": round(min(cpus) * 1e3, 1), "cpu_median": round(float(np.median(cpus)) * 1e3, 1)},
        "inference_ms_per_sample_amortized": round(float(np.median(walls)) * 1e3 / cap, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append")
    ap.add_argument("--poly-degree", type=int, help="override the ring degree (with --security testing)")
    ap.add_argument("--security", default=None, help="override the security level (e.g. testing)")
    ap.add_argument("--model-dir", help="measure the model files in this folder (default: the package's)")
    args = ap.parse_args()
    if args.model_dir:
        from wavis.models.catalogue import _load

        found = {p.stem: p for p in Path(args.model_dir).glob("*.json")}
        load, ids, where = (lambda i: _load(found[i])), sorted(found), (lambda i: found[i])
    else:
        load, ids, where = models.get, models.model_ids(), models.catalogue_path
    x, y = models.load_split("digits_test")
    load_before = os.getloadavg()
    host = {"cpu": cpu_model(), "cores": os.cpu_count(), "wavis_threads": os.environ.get("WAVIS_THREADS"),
            "simd": os.environ.get("WAVIS_SIMD", "auto"), "loadavg_before": [round(v, 2) for v in load_before]}
    runs = []
    for mid in ids:
        if args.only and mid not in args.only:
            continue
        params = load(mid).params_for(args.poly_degree, args.security)
        print(f"{mid}: N={params['poly_degree']} depth={params['max_depth']} {params['security_level']}", flush=True)
        runs.append(measure(load(mid), params, x, y))
        print(json.dumps(runs[-1], indent=1), flush=True)
    host["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    secure = args.security in (None, "128-bit") and args.poly_degree is None
    name = "models_128bit.json" if secure else f"models_{args.security or 'custom'}_{args.poly_degree}.json"
    out = RESULTS / name
    old = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    for r in runs:
        old["runs"][r["model"]] = {**r, "measured_at": stamp, "host": host}
    old["command"] = f"flock /work/notes/bench.lock .venv/bin/python {SCRIPT}"
    out.write_text(json.dumps(old, indent=1) + "\n")
    print(f"wrote {out}")
    if not secure:
        return
    for r in runs:  # the catalogue's numbers
        path = where(r["model"])
        spec = json.loads(path.read_text())
        lat = r["inference_ms_per_ciphertext"]
        spec["measured"] = {
            "accuracy_plaintext": r["accuracy_plaintext"], "accuracy_encrypted": r["accuracy_encrypted"],
            "accuracy_ci95": r["accuracy_encrypted_ci95"], "accuracy_samples": r["samples"],
            "argmax_agreement": r["argmax_agreement"], "max_abs_logit_error": r["max_abs_logit_error"],
            "latency_ms_cpu": lat["wall_median"],
            "latency_note": (f"median wall time of one ciphertext inference (up to {r['samples_per_ciphertext']} "
                             f"samples) at N={r['params']['poly_degree']}, 128-bit, on {host['cpu']} "
                             f"({host['cores']} cores), CPU time {lat['cpu_median']} ms, load average "
                             f"{host['loadavg_before'][0]}→{host['loadavg_after'][0]} (wall under load is an "
                             "upper bound)"),
            "measured_by": f"{SCRIPT} ({stamp}; benchmarks/results/{name})",
        }
        path.write_text(json.dumps(spec, indent=1) + "\n")
        print(f"updated {path}")


if __name__ == "__main__":
    main()

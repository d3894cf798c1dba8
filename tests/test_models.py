"""Encrypted inference (issue 19): the model runtime against its plaintext graph, and every
catalogue model end to end through the real service (PostgreSQL, Redis, the job engine) on a
seeded sample of 20 held-out inputs on `testing` parameters; the errors of POST /models/{id}/infer."""

from __future__ import annotations

import numpy as np
import pytest

from wavis import models, serialize
from wavis.ckks import Evaluator
from wavis.client import AsyncClient
from wavis.client.models import infer_async, model_keys
from wavis.errors import ParameterError, ShapeError
from conftest import bearer, error_of

N_TEST = 4096  # `testing` ring: 2048 slots = 32 samples of one 64-slot block per ciphertext
SAMPLE, SEED = 20, 19
EPS = 1e-3  # |encrypted − plaintext logit| bound (observed ~1e-6 at a 2^40 scale)


def _sample():
    x, y = models.load_split("digits_test")
    idx = np.random.default_rng(SEED).choice(len(y), SAMPLE, replace=False)
    return x[idx], y[idx]


@pytest.fixture(scope="module")
def model_pairs():
    """One `testing` key pair per model with exactly its needs (cached: keygen dominates)."""
    return {mid: model_keys(mid, models.get(mid).params_for(N_TEST, "testing"), seed=bytes([i + 1]) * 32)
            for i, mid in enumerate(models.model_ids())}


def test_catalogue_is_complete_and_consistent():
    ids = models.model_ids()
    assert {"digits-logreg", "digits-mlp", "digits-transformer"} <= set(ids)
    for e in models.catalogue():
        for f in ("id", "name", "task", "input_shape", "output_shape", "params_required", "galois_steps_required",
                  "bootstrappable", "accuracy_plaintext", "accuracy_encrypted", "latency_ms_cpu", "dataset",
                  "trained_by", "input_encoding", "output_decoding"):
            assert f in e, (e["id"], f)
        m = models.get(e["id"])
        assert e["galois_steps_required"] == m.galois_steps(e["params_required"]["poly_degree"] // 2)
        assert e["params_required"]["security_level"] == "128-bit"
        assert e["params_required"]["max_depth"] >= m.graph.min_levels
        if e["params_required"]["max_depth"] < m.depth:  # runs out of levels: bootstraps between layers
            assert e["bootstrappable"] and e["params_required"]["bootstrap_preset"]
            assert e["bootstraps_per_inference"] >= 1
        # the catalogue's numbers come from the measuring script, over ≥ 500 held-out samples
        assert e["accuracy_samples"] >= 500 and e["latency_ms_cpu"] > 0
        assert abs(e["accuracy_plaintext"] - e["accuracy_encrypted"]) <= 0.01
    with pytest.raises(ParameterError):
        models.get("no-such-model")


def test_weights_are_npz_without_pickle_and_the_plain_model_matches_training():
    for mid in models.model_ids():
        m = models.get(mid)
        x, y = models.load_split("digits_test")
        acc = float(np.mean(m.predict_plain(x).argmax(1) == y))
        assert acc == pytest.approx(m.spec["training"]["test_accuracy_float64"], abs=1e-4)


def test_graph_validation():
    from wavis.models.runtime import Graph

    w = {"w": np.ones((3, 4)), "b": np.zeros(2)}
    with pytest.raises(ShapeError):
        Graph.from_spec([{"op": "linear", "in": "x", "out": "y", "weight": "w"}], w, 5, 8)
    with pytest.raises(ShapeError):
        Graph.from_spec([{"op": "linear", "in": "x", "out": "y", "weight": "w", "bias": "b"}], w, 4, 8)
    with pytest.raises(ParameterError):
        Graph.from_spec([{"op": "softmax", "in": "x", "out": "y"}], w, 4, 8)
    with pytest.raises(ParameterError):
        Graph.from_spec([{"op": "poly", "in": "h", "out": "y", "coeffs": [1]}], w, 4, 8)
    with pytest.raises(ShapeError):  # wider than the block
        Graph.from_spec([{"op": "linear", "in": "x", "out": "y", "weight": "w"}], w, 4, 2)
    g = Graph.from_spec([{"op": "linear", "in": "x", "out": "y", "weight": "w"},
                         {"op": "poly", "in": "y", "out": "z", "coeffs": [0, 1, 1]},
                         {"op": "mul", "in": ["y", "z"], "out": "p"}], w, 4, 8)
    assert g.depth == 4
    with pytest.raises(ShapeError):
        g.check_slots(4)


def test_encrypted_inference_in_the_library(model_pairs):
    """The library path (no server): one packed ciphertext through each model's graph."""
    for mid, keys in model_pairs.items():
        m = models.get(mid)
        x, _ = _sample()
        x = x[:m.max_batch(keys.params.slot_count)]
        ct = keys.encrypt(m.encode_batch(x, keys.params.slot_count))
        out = m.infer(Evaluator(keys.params, keys.eval_keys), ct)
        if keys.params.bootstrap_preset is None:
            assert out.level == keys.params.max_level - m.depth
        else:  # testing-n1024 has 2 levels between bootstraps: one after every hidden layer
            assert m.graph.bootstraps_needed(keys.params.max_level) >= 1 and out.level >= 0
        got = m.decode_batch(keys.decrypt(out), len(x))
        want = m.predict_plain(x)
        assert np.max(np.abs(got - want)) < EPS, mid
        assert np.array_equal(got.argmax(1), want.argmax(1)), mid
    with pytest.raises(ShapeError):  # more samples than blocks
        m.encode_batch(np.zeros((keys.params.slot_count // 64 + 1, 64)), keys.params.slot_count)


# --- through the service ------------------------------------------------------------------------------

@pytest.mark.service
async def test_get_models_is_public_and_priced(api):
    resp = await api.get("/api/v1/models")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    ids = [e["id"] for e in body["models"]]
    assert ids == models.model_ids()
    lr = next(e for e in body["models"] if e["id"] == "digits-logreg")
    assert lr["fcu_per_inference"] == 21  # matmul 20 + add-plain 1 (API.md's FCU table)
    assert lr["galois_steps_required"] == models.get("digits-logreg").galois_steps()
    one = await api.get("/api/v1/models/digits-mlp")
    assert one.status == 200 and (await one.json())["id"] == "digits-mlp"
    await error_of(await api.get("/api/v1/models/nope"), 404, "NOT_FOUND")


@pytest.mark.service
async def test_infer_end_to_end_every_model(api, model_pairs):
    """A seeded sample of 20 held-out digits per model through the SDK helper and the REST
    endpoint: the encrypted argmax equals the plaintext argmax, logits within EPS."""
    x, _ = _sample()
    base = str(api.make_url("")).rstrip("/")
    async with AsyncClient(base, api_key=await api.account()) as c:
        for mid, keys in model_pairs.items():
            r = await infer_async(c, mid, x, keys=keys)
            want = models.get(mid).predict_plain(x)
            assert r.logits.shape == want.shape
            assert np.max(np.abs(r.logits - want)) < EPS, mid
            assert np.array_equal(r.predictions, want.argmax(1)), mid
            assert r.meta["operation"] == "model-infer" and r.meta["model_id"] == mid
            assert r.meta["levels_consumed"] == models.get(mid).depth
            if keys.params.bootstrap_preset is None:
                assert r.meta["level"] == keys.params.max_level - models.get(mid).depth
            n_requests = -(-SAMPLE // models.get(mid).max_batch(keys.params.slot_count))
            assert len(r.meta.get("requests", [r.meta])) == n_requests
            entry = (await c.request("GET", f"/models/{mid}"))[1]
            assert r.meta["cost_units"] == entry["fcu_per_inference"]
            job = (await c.request("GET", f"/jobs/{r.meta['job_id']}"))[1]
            assert job["status"] == "COMPLETED"


@pytest.mark.service
async def test_infer_refuses_keys_that_cannot_run_the_model(api, model_pairs, ckks_pair_factory):
    from wavis.client import KeyPair

    h = bearer(await api.account())
    mlp = models.get("digits-mlp")

    async def upload(pair) -> tuple[str, str]:
        resp = await api.post("/api/v1/keys/upload", json=pair.upload_body(), headers=h)
        assert resp.status == 200, await resp.text()
        key_id = (await resp.json())["key_id"]
        ct = pair.encrypt(np.zeros(8))
        resp = await api.post("/api/v1/ciphertexts", headers=h, json={
            "key_id": key_id, "ciphertext_b64": serialize.b64encode(serialize.dumps(ct))})
        assert resp.status == 201, await resp.text()
        return key_id, (await resp.json())["ciphertext_id"]

    async def infer(mid, key_id, ct_id):
        return await api.post(f"/api/v1/models/{mid}/infer", headers=h,
                              json={"key_id": key_id, "ciphertext_ids": [ct_id]})

    # too few levels: the error names what the model needs
    shallow = await upload(ckks_pair_factory(max_depth=1, poly_degree=N_TEST))
    err = await error_of(await infer("digits-mlp", *shallow), 400, "MODEL_PARAMS_MISMATCH")
    assert err["details"]["levels_consumed"] == mlp.depth
    assert err["details"]["params_required"] == mlp.params_required
    # enough levels, no Galois keys: the missing steps are named
    bare = KeyPair.generate(mlp.params_for(N_TEST, "testing"), seed=b"\x07" * 32)
    key_id, ct_id = await upload(bare)
    err = await error_of(await infer("digits-mlp", key_id, ct_id), 400, "MISSING_ROTATION_KEY")
    assert err["details"]["galois_steps_required"] == mlp.galois_steps(N_TEST // 2)
    assert set(err["details"]["galois_steps_missing"]) == set(mlp.galois_steps(N_TEST // 2))
    # a logreg key's steps do not cover the MLP
    lr_pair = model_pairs["digits-logreg"]
    lr_key, lr_ct = await upload(KeyPair.generate(mlp.params_for(N_TEST, "testing"),
                                                  galois_steps=models.get("digits-logreg").galois_steps(N_TEST // 2),
                                                  seed=b"\x08" * 32))
    err = await error_of(await infer("digits-mlp", lr_key, lr_ct), 400, "MISSING_ROTATION_KEY")
    assert err["details"]["galois_steps_missing"]
    assert lr_pair is not None
    # a model that outruns the key's levels needs a bootstrap preset
    for deep in (models.get(i) for i in models.model_ids()):
        if deep.graph.bootstrappable:
            key4, ct4 = await upload(ckks_pair_factory(max_depth=4, poly_degree=N_TEST))
            err = await error_of(await infer(deep.id, key4, ct4), 400, "MODEL_PARAMS_MISMATCH")
            assert "bootstrap preset" in err["message"] and err["details"]["levels_consumed"] == deep.depth
            break
    # unknown model, malformed body, a ciphertext of another key
    await error_of(await infer("nope", key_id, ct_id), 404, "NOT_FOUND")
    resp = await api.post("/api/v1/models/digits-mlp/infer", headers=h, json={"key_id": key_id})
    assert resp.status in (400, 422)
    await error_of(await infer("digits-mlp", lr_key, ct_id), 400, "KEY_MISMATCH")
    # no API key
    resp = await api.post("/api/v1/models/digits-mlp/infer", json={"key_id": key_id, "ciphertext_ids": [ct_id]})
    assert resp.status == 401


@pytest.mark.service
async def test_infer_is_admitted_by_cost(make_client, service_settings, model_pairs):
    """An inference whose estimated memory exceeds the plan is refused before any job starts."""
    from dataclasses import replace

    from conftest import add_account_helper
    from wavis.service import ops, ratelimit

    keys = model_pairs["digits-mlp"]
    cost = ops.model_infer_cost(keys.params.to_dict(), "digits-mlp")
    assert cost.bytes > ops.BASE_BYTES and cost.cpu_s > 0
    plans = dict(ratelimit.PLANS)
    plans["free"] = replace(plans["free"], max_job_bytes=cost.bytes - 1)
    api = await make_client(replace(service_settings, plans=plans))
    add_account_helper(api)
    h = bearer(await api.account(plan="free"))
    resp = await api.post("/api/v1/keys/upload", json=keys.upload_body(), headers=h)
    assert resp.status == 200, await resp.text()
    key_id = (await resp.json())["key_id"]
    ct = serialize.b64encode(serialize.dumps(keys.encrypt(np.zeros(64))))
    resp = await api.post("/api/v1/ciphertexts", json={"key_id": key_id, "ciphertext_b64": ct}, headers=h)
    ct_id = (await resp.json())["ciphertext_id"]
    resp = await api.post("/api/v1/models/digits-mlp/infer", headers=h,
                          json={"key_id": key_id, "ciphertext_ids": [ct_id]})
    err = await error_of(resp, 413, "REQUEST_TOO_LARGE")
    assert err["details"]["operation"] == "models/digits-mlp/infer"
    jobs = await api.get("/api/v1/jobs", headers=h)
    assert jobs.status == 200 and not [j for j in (await jobs.json())["data"] if j["operation"] == "model-infer"]


def test_baby_step_choice_cuts_rotations_of_clustered_offsets():
    from wavis.models.runtime import best_baby_steps, rotations_of_plan

    offsets = [-64 * r + d for r in range(8) for d in range(-7, 8)]  # the attention layouts' clusters
    default = int(np.ceil(np.sqrt(max(offsets) - min(offsets) + 1)))
    b = best_baby_steps(offsets, 2048)
    assert rotations_of_plan(offsets, 2048, b) < rotations_of_plan(offsets, 2048, default)


def test_slow_models_are_async_only():
    from dataclasses import dataclass

    from wavis.service.routes.models import async_only

    @dataclass
    class S:
        request_timeout_s: float

    tf = models.get("digits-transformer")
    assert not async_only(tf, S(120.0))  # ~31 s measured at 128-bit: synchronous within 120 s
    assert async_only(tf, S(tf.entry["latency_ms_cpu"] / 1e3))  # past half the budget: 202 only


def test_galois_steps_from_offsets_equal_the_transforms_plans():
    """``galois_steps`` comes from the diagonal offsets alone (no slots-long arrays: GET /models
    stays cheap); it must be exactly the union of the LinearTransforms' steps."""
    for mid in models.model_ids():
        g = models.get(mid).graph
        for slots in (2048,):
            steps = set()
            for i, n in enumerate(g.nodes):
                if n.op == "linear":
                    steps |= set(g.transform(i, slots, f"plan-check-{slots}").galois_steps())
            assert steps == set(g.galois_steps(slots)), mid


def test_bootstrap_points_run_only_when_levels_run_out():
    """A graph with bootstrap points: none with enough levels, exactly where the levels run
    out with a bootstrap preset (testing-n1024: 2 levels), and the result matches the plain graph."""
    from wavis.ckks import CkksParameters
    from wavis.client import KeyPair
    from wavis.models.runtime import Graph

    rng = np.random.default_rng(3)
    w = {"a": rng.normal(0, 0.3, (8, 8)), "b": rng.normal(0, 0.3, (8, 8))}
    spec = [{"op": "linear", "in": "x", "out": "y", "weight": "a"},
            {"op": "mul", "in": ["y", "y"], "out": "y2"},
            {"op": "bootstrap", "in": "y2", "out": "yb", "input_range": 1.0, "min_level": 2},
            {"op": "linear", "in": "yb", "out": "z", "weight": "b"},
            {"op": "mul", "in": ["z", "z"], "out": "out"}]
    g = Graph.from_spec(spec, w, 8, 8)
    assert g.depth == 4 and g.min_levels == 2 and g.bootstrappable
    assert g.bootstraps_needed(4) == 0 and g.bootstraps_needed(2) == 1
    x = rng.uniform(-1, 1, (64, 8))
    keys = KeyPair.generate(CkksParameters.bootstrappable("testing-n1024"), galois_steps=g.galois_steps(512),
                            bootstrappable=True, seed=b"\x09" * 32)
    ct = keys.encrypt(x.reshape(-1))
    out = g.forward_encrypted(Evaluator(keys.params, keys.eval_keys), ct)
    got = keys.decrypt(out).real.reshape(64, 8)
    assert np.max(np.abs(got - g.forward_plain(x))) < 1e-3
    plain_keys = KeyPair.generate({"poly_degree": 1024, "scale_bits": 40, "max_depth": 2, "security_level": "testing"},
                                  galois_steps=g.galois_steps(512), seed=b"\x0a" * 32)
    from wavis.errors import DepthExhaustedError
    with pytest.raises(DepthExhaustedError):  # too few levels and no bootstrap preset
        g.forward_encrypted(Evaluator(plain_keys.params, plain_keys.eval_keys), plain_keys.encrypt(x.reshape(-1)))


@pytest.mark.service
async def test_infer_async_job(api, model_pairs):
    """``"async": true`` gives 202 and a job; its result ciphertext decrypts to the same logits."""
    import asyncio

    mid = "digits-logreg"
    keys, m = model_pairs[mid], models.get(mid)
    x, _ = _sample()
    base = str(api.make_url("")).rstrip("/")
    async with AsyncClient(base, api_key=await api.account()) as c:
        await c.upload_keys(keys)
        ct = keys.encrypt(m.encode_batch(x, keys.params.slot_count))
        _, up, _ = await c.request("POST", "/ciphertexts", {"key_id": keys.key_id,
                                                            "ciphertext_b64": serialize.b64encode(serialize.dumps(ct))})
        status, acc, _ = await c.request("POST", f"/models/{mid}/infer", {
            "key_id": keys.key_id, "ciphertext_ids": [up["ciphertext_id"]], "async": True})
        assert status == 202 and acc["operation"] == "model-infer"
        for _ in range(200):
            job = (await c.request("GET", f"/jobs/{acc['job_id']}"))[1]
            if job["status"] in ("COMPLETED", "FAILED"):
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "COMPLETED" and job["cost_units"] == 21, job
        _, got, _ = await c.request("GET", f"/ciphertexts/{job['result_ciphertext_id']}")
        out = serialize.loads(serialize.b64decode(got["ciphertext_b64"]), expected_type=serialize.Ciphertext,
                              params=keys.params)
        logits = m.decode_batch(keys.decrypt(out), len(x))
        assert np.max(np.abs(logits - m.predict_plain(x))) < EPS

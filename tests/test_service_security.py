"""Issue 15 through the real server (PostgreSQL, Redis): decryption is never a key-recovery
oracle (findings 1 and 2: crafted and chained ciphertexts get 403 NOT_SERVER_PRODUCED), server
decryptions are flooded (finding 3), `testing` keys need the operator's insecure mode
(finding 5), parameters without headroom are refused (finding 7) and server-emitted blobs carry a
keyed tag that tells them from forgeries (finding 8). docs/security.md maps claims to tests."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import numpy as np
import pytest

from wavis import frame, serialize, tfhe
from wavis.ckks import CkksParameters
from wavis.ckks.structures import Ciphertext
from wavis.service import provenance, tfhe_store
from wavis.service.state import CTSTORE, SETTINGS

from conftest import add_account_helper, bearer, error_of

pytestmark = pytest.mark.service

V1 = "/api/v1"
# a default-shaped key (40-bit scale): the crafted attacks must be refused before any decryption
ATTACK_PARAMS = {"poly_degree": 2048, "scale_bits": 40, "max_depth": 2, "security_level": "testing"}
# server decryption floods with σ = 2^30·B: a scale large enough to keep bits afterwards
FLOOD_PARAMS = {"poly_degree": 2048, "scale_bits": 58, "first_mod_bits": 61, "magnitude_bits": 2, "max_depth": 1,
                "security_level": "testing"}


async def _post(api, key: str, path: str, body=None):
    return await api.post(V1 + path, json=body if body is not None else {}, headers=bearer(key))


async def _server_key(api, dev: str, params: dict) -> dict:
    resp = await _post(api, dev, "/keys/generate", {"params": params})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _encrypt(api, dev: str, key_id: str, values) -> dict:
    resp = await _post(api, dev, "/ciphertexts/encrypt", {"key_id": key_id, "values": list(values)})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _blob(api, dev: str, ct_id: str) -> bytes:
    resp = await api.get(f"{V1}/ciphertexts/{ct_id}", headers=bearer(dev))
    assert resp.status == 200, await resp.text()
    return base64.b64decode((await resp.json())["ciphertext_b64"])


async def _compute(api, dev: str, op: str, key_id: str, ids: list[str], **extra) -> dict:
    resp = await _post(api, dev, f"/compute/{op}", {"key_id": key_id, "ciphertext_ids": ids, **extra})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _upload(api, dev: str, key_id: str, ct: Ciphertext) -> str:
    resp = await _post(api, dev, "/ciphertexts", {"key_id": key_id, "ciphertext_b64": serialize.b64encode(
        serialize.dumps(ct))})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["provenance"] == "client"
    return body["ciphertext_id"]


def _crafted(params: CkksParameters, key_tag: bytes, monomial: int) -> Ciphertext:
    """(0, Δ·X^monomial) in the NTT domain: it decrypts to Δ·X^monomial·s, i.e. the key itself."""
    from wavis.ckks import Encoder

    enc = Encoder(params)
    level = params.max_level
    idx = list(range(level + 1))
    coeffs = np.zeros(params.poly_degree, dtype=np.int64)
    coeffs[monomial] = 1 << params.scale_bits
    c1 = enc.ctx.from_signed(coeffs, idx)
    enc.ctx.ntt(c1, idx)
    data = np.stack([np.zeros_like(np.asarray(c1)), np.asarray(c1)])
    return Ciphertext(data, level, params.level_scale(level), params.fingerprint, key_tag)


# -- finding 1 ------------------------------------------------------------------------------------------------
async def test_crafted_and_chained_ckks_ciphertexts_are_never_decrypted(api):
    """The review's key extraction: (0, Δ) and (0, Δ·X^{N/2}) uploads decrypted to s exactly.
    Now every upload, and everything computed from one (negate twice, add-plain 0, added to a
    server ciphertext), answers 403 NOT_SERVER_PRODUCED; the server's own results do not."""
    dev = await api.account()
    key = await _server_key(api, dev, ATTACK_PARAMS)
    kid = key["key_id"]
    params = CkksParameters.from_dict(key["params"])
    mine = await _encrypt(api, dev, kid, [0.5])
    assert mine["provenance"] == "server"
    key_tag = frame.unpack(await _blob(api, dev, mine["ciphertext_id"]), frame.SCHEME_CKKS).key_id
    n = params.poly_degree
    crafted = [await _upload(api, dev, kid, _crafted(params, key_tag, m)) for m in (0, n // 2)]
    for ct_id in crafted:
        await error_of(await _post(api, dev, f"/ciphertexts/{ct_id}/decrypt"), 403, "NOT_SERVER_PRODUCED")
    # chains: negate twice, add-plain 0, and a mix with a server ciphertext
    a = (await _compute(api, dev, "negate", kid, [crafted[0]]))["result_ciphertext_id"]
    twice = (await _compute(api, dev, "negate", kid, [a]))["result_ciphertext_id"]
    plus0 = (await _compute(api, dev, "add-plain", kid, [crafted[1]], plain_operand=[0.0]))["result_ciphertext_id"]
    mixed = (await _compute(api, dev, "add", kid, [mine["ciphertext_id"], crafted[0]]))["result_ciphertext_id"]
    for ct_id in (a, twice, plus0, mixed):
        meta = await (await api.get(f"{V1}/ciphertexts/{ct_id}", headers=bearer(dev))).json()
        assert meta["provenance"] == "client"
        err = await error_of(await _post(api, dev, f"/ciphertexts/{ct_id}/decrypt"), 403, "NOT_SERVER_PRODUCED")
        assert err["details"]["ciphertext_id"] == ct_id
    # re-uploading the server's own blob does not make it decryptable either (an upload is an upload)
    again = await _post(api, dev, "/ciphertexts", {"key_id": kid, "ciphertext_b64": base64.b64encode(
        await _blob(api, dev, mine["ciphertext_id"])).decode()})
    assert (await again.json())["provenance"] == "client"
    await error_of(await _post(api, dev, f"/ciphertexts/{(await again.json())['ciphertext_id']}/decrypt"), 403,
                   "NOT_SERVER_PRODUCED")
    # server-produced all the way down stays server-produced
    neg = (await _compute(api, dev, "negate", kid, [mine["ciphertext_id"]]))["result_ciphertext_id"]
    sq = (await _compute(api, dev, "multiply", kid, [neg, mine["ciphertext_id"]]))["result_ciphertext_id"]
    for ct_id in (neg, sq):
        meta = await (await api.get(f"{V1}/ciphertexts/{ct_id}", headers=bearer(dev))).json()
        assert meta["provenance"] == "server"
    # (at this 40-bit scale the flood leaves no bits: a typed 409, not a leak and not garbage)
    err = await error_of(await _post(api, dev, f"/ciphertexts/{neg}/decrypt"), 409, "INSUFFICIENT_PRECISION")
    assert err["details"]["precision_bits"] < 1 and err["details"]["scale_bits_for_8_bits"] > 40


async def test_the_keyed_tag_is_checked_not_only_the_row(api):
    """A row that says ``server`` whose blob was swapped for a forged one (a crafted blob, or an
    upload carrying the server's tag for ``client``) is refused: the tag binds blob, account,
    key and provenance under a key only the server has."""
    dev = await api.account()
    key = await _server_key(api, dev, FLOOD_PARAMS)
    kid = key["key_id"]
    params = CkksParameters.from_dict(key["params"])
    mine = await _encrypt(api, dev, kid, [0.5])
    good = await _blob(api, dev, mine["ciphertext_id"])
    tags = provenance.tags_for(api.app[SETTINGS].master_key)
    acct = await _account_of(api, kid)
    assert provenance.ckks_is_server(tags, good, acct, kid)
    assert not provenance.ckks_is_server(tags, good, acct, "key_other")
    crafted_id = await _upload(api, dev, kid, _crafted(params, frame.unpack(good, 1).key_id, 0))
    client_tagged = await _blob(api, dev, crafted_id)
    assert frame.unpack(client_tagged, frame.SCHEME_CKKS).tagged  # uploads are tagged too, as client
    raw = bytearray(good)
    raw[frame.HEAD_BYTES + 40] ^= 1  # altered payload, unkeyed digest recomputed
    raw[-16:] = hashlib.blake2b(bytes(raw[:-16]), digest_size=16).digest()
    store = api.app[CTSTORE]  # what an attacker with write access to the blob store could do
    for forged in (client_tagged, serialize.dumps(_crafted(params, frame.unpack(good, 1).key_id, 0)), bytes(raw)):
        await store.put(acct, mine["ciphertext_id"], forged)
        await error_of(await _post(api, dev, f"/ciphertexts/{mine['ciphertext_id']}/decrypt"), 403,
                       "NOT_SERVER_PRODUCED")
    await store.put(acct, mine["ciphertext_id"], good)
    assert (await _post(api, dev, f"/ciphertexts/{mine['ciphertext_id']}/decrypt")).status == 200


async def _account_of(api, key_id: str) -> str:
    from wavis.service.state import DB

    async with api.app[DB].acquire() as conn:
        return await conn.fetchval("SELECT account_id FROM fhe_keys WHERE id = $1", key_id)


# -- finding 3 ------------------------------------------------------------------------------------------------
async def test_server_decryption_is_flooded_and_rounded(api):
    dev = await api.account()
    key = await _server_key(api, dev, FLOOD_PARAMS)
    kid = key["key_id"]
    x = [0.5, -1.25, 3.0, 0.1]
    ct = await _encrypt(api, dev, kid, x)
    sq = (await _compute(api, dev, "multiply-plain", kid, [ct["ciphertext_id"]], plain_operand=[1.0] * 4))
    for ct_id, want in ((ct["ciphertext_id"], x), (sq["result_ciphertext_id"], x)):
        resp = await _post(api, dev, f"/ciphertexts/{ct_id}/decrypt")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["statistical_bits"] >= 30 and body["precision_bits"] >= 4
        step = 2.0 ** -body["precision_bits"]
        assert all(v / step == round(v / step) for v in body["values"])
        # rounding moves a slot by <= step/2 and step >= 7 sigma_slot (flooding.precision_bits), so
        # |error| <= 1.5 step except with probability ~1e-12 per slot; atol=step alone failed for
        # the ~1 slot in a thousand whose flood exceeded 3.5 sigma
        tol = 1.5 * step
        assert np.allclose(body["values"][:4], want, rtol=0, atol=tol) and np.allclose(body["values"][4:], 0, rtol=0, atol=tol)
    # the flood is fresh randomness each time (checked before rounding: after rounding to a step of
    # >= 7 sigma the published values almost never differ, which is the point of the rounding)
    from wavis.ckks import flooding

    zeros = np.zeros(4096)
    a, b = flooding.flood_coefficients(zeros, 1.0), flooding.flood_coefficients(zeros, 1.0)
    assert not np.array_equal(a, b) and 0.9 < float(np.std(a)) < 1.1


# -- finding 5 ------------------------------------------------------------------------------------------------
async def test_testing_parameters_need_the_operators_insecure_mode(make_client, service_settings, ckks_pair_factory):
    pair = ckks_pair_factory(max_depth=1, index=0)
    strict = await make_client(replace(service_settings, allow_insecure_params=False))
    add_account_helper(strict)
    dev = await strict.account()
    for path, body in (("/keys/upload", pair.upload_body()), ("/keys/generate", {"params": ATTACK_PARAMS})):
        err = await error_of(await _post(strict, dev, path, body), 400, "INSUFFICIENT_SECURITY")
        assert err["details"]["security_level"] == "testing" and "WAVIS_ALLOW_INSECURE_PARAMS" in err["message"]
    secure = {"poly_degree": 8192, "scale_bits": 40, "max_depth": 1, "security_level": "128-bit"}
    resp = await _post(strict, dev, "/keys/generate", {"params": secure})
    assert resp.status == 200, await resp.text()
    meta = await resp.json()
    assert meta["insecure"] is False and "X-Security-Warning" not in resp.headers
    assert meta["magnitude_bound"] == 2.0**19  # finding 7: the bound is in the key's metadata


async def test_insecure_mode_marks_the_key(api, ckks_pair_factory):
    assert api.app[SETTINGS].allow_insecure_params  # the test fixtures turn it on explicitly
    dev = await api.account()
    resp = await _post(api, dev, "/keys/upload", ckks_pair_factory(max_depth=1, index=0).upload_body())
    assert resp.status == 200, await resp.text()
    meta = await resp.json()
    assert meta["insecure"] is True and "testing" in resp.headers["X-Security-Warning"]
    got = await (await api.get(f"{V1}/keys/{meta['key_id']}", headers=bearer(dev))).json()
    assert got["insecure"] is True


# -- finding 7 ------------------------------------------------------------------------------------------------
async def test_parameters_without_headroom_are_refused_over_rest(api):
    dev = await api.account()
    bad = {"poly_degree": 8192, "scale_bits": 59, "first_mod_bits": 60, "max_depth": 1, "security_level": "128-bit"}
    err = await error_of(await _post(api, dev, "/keys/generate", {"params": bad}), 400, "INVALID_PARAMS")
    assert err["details"]["headroom_bits"] == 1
    ok = {**bad, "magnitude_bits": 0}  # a declared bound that fits: accepted and reported
    resp = await _post(api, dev, "/keys/generate", {"params": ok})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["magnitude_bound"] == 1.0


# -- finding 2 and 8 (TFHE) ---------------------------------------------------------------------------------
def _tfhe_b64(ct) -> str:
    return base64.b64encode(tfhe.serialize.dumps(ct)).decode()


async def test_crafted_and_chained_tfhe_ciphertexts_are_never_decrypted(api):
    """a = e_i·2^30, b = 2^29 decrypts to bit s_i: all n key bits in one request. Now it, a NOT of
    a crafted inline input, a batch that touches one, and an altered server output get 403;
    the session's own outputs decrypt."""
    dev = await api.account()
    resp = await _post(api, dev, "/tfhe/session", {"preset": "fast_128"})
    sid = (await resp.json())["session_id"]
    resp = await _post(api, dev, f"/tfhe/session/{sid}/encrypt", {"bits": [True, False]})
    one, zero = (await resp.json())["ciphertexts_b64"]
    head = frame.unpack(base64.b64decode(one), frame.SCHEME_TFHE)
    params = tfhe.serialize.peek(base64.b64decode(one)).params
    n = params.n
    words = np.zeros((n, n + 1), dtype=np.uint32)
    words[np.arange(n), np.arange(n)] = 1 << 30
    words[:, n] = 1 << 29
    crafted = [_tfhe_b64(tfhe.LweCiphertext(params, head.key_id, words[i])) for i in range(n)]
    err = await error_of(await _post(api, dev, f"/tfhe/session/{sid}/decrypt", {"ciphertexts_b64": crafted}), 403,
                         "NOT_SERVER_PRODUCED")
    assert err["details"]["operand"] == "ciphertexts_b64[0]"
    # NOT of a crafted inline input (no bootstrap: a linear map) and a batch mixing one in
    resp = await _post(api, dev, "/tfhe/gate", {"session_id": sid, "op": "NOT", "a": crafted[0]})
    assert resp.status == 200, await resp.text()
    not_crafted = (await resp.json())["result_b64"]
    resp = await _post(api, dev, "/tfhe/batch", {"session_id": sid, "gates": [
        {"op": "NOT", "a": crafted[1]}, {"op": "AND", "a": "$0", "b": one}, {"op": "XOR", "a": one, "b": zero},
        {"op": "NOT", "a": "$2"}]})
    assert resp.status == 200, await resp.text()
    r = (await resp.json())["results_b64"]
    for text in (not_crafted, r[0], r[1]):
        await error_of(await _post(api, dev, f"/tfhe/session/{sid}/decrypt", {"ciphertext_b64": text}), 403,
                       "NOT_SERVER_PRODUCED")
    # altered server output: payload word changed, unkeyed digest recomputed
    raw = bytearray(base64.b64decode(r[2]))
    raw[frame.HEAD_BYTES + 9] ^= 0x40
    raw[-16:] = hashlib.blake2b(bytes(raw[:-16]), digest_size=16).digest()
    await error_of(await _post(api, dev, f"/tfhe/session/{sid}/decrypt",
                               {"ciphertext_b64": base64.b64encode(bytes(raw)).decode()}), 403, "NOT_SERVER_PRODUCED")
    # the session's own outputs (encrypt, gates on them, chains of them) still decrypt
    resp = await _post(api, dev, f"/tfhe/session/{sid}/decrypt", {"ciphertexts_b64": [one, zero, r[2], r[3]]})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["bits"] == [True, False, True, False]
    # outputs of another session (even of the same account) are not this session's
    resp = await _post(api, dev, "/tfhe/session", {"preset": "fast_128"})
    other = (await resp.json())["session_id"]
    await error_of(await _post(api, dev, f"/tfhe/session/{other}/decrypt", {"ciphertext_b64": one}), 400,
                   "KEY_MISMATCH")


def test_tfhe_phase_is_checked_on_tag_valid_ciphertexts():
    """After the tag, the phase must be near ±1/8: a tag-valid ciphertext with phase 0 (which
    only a bug could produce) is refused with the same 403."""
    import secrets

    ck, sk = tfhe.keygen("testing", seed=7)
    keys = tfhe_store.SessionKeys("sess_x", sk, ck)
    tagging = tfhe_store.Tagging(provenance.BlobTags(secrets.token_bytes(32)), "acct_x", "sess_x")
    good = tfhe_store.encrypt(keys, tagging, [True, False])
    assert tfhe_store.decrypt(keys, tagging, good) == [True, False]
    zero_phase = tfhe.LweCiphertext(ck.params, ck.key_id, np.zeros(ck.params.n + 1, dtype=np.uint32))
    signed = tagging.sign(tfhe.serialize.dumps(zero_phase), provenance.SERVER)
    from wavis.service.errors import ApiError

    with pytest.raises(ApiError) as exc:
        tfhe_store.decrypt(keys, tagging, [base64.b64encode(signed).decode()])
    assert exc.value.status == 403 and exc.value.code == "NOT_SERVER_PRODUCED"
    other = tfhe_store.Tagging(tagging.tags, "acct_x", "sess_y")  # another session's tag
    with pytest.raises(ApiError):
        tfhe_store.decrypt(keys, other, good)

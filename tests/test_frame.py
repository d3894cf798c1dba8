"""The one wire frame (issue 11 step 5): one header and digest for CKKS and TFHE, the keyed-tag
slot, version-1 blobs still loading, and no global state behind CkksParameters.fingerprint."""

from __future__ import annotations

import hashlib
import secrets
import struct
import zlib

import numpy as np
import pytest

from wavis import frame, serialize, tfhe
from wavis.backend.cpu import pack_bits
from wavis.ckks import CkksParameters, Encoder, Encryptor, KeyGenerator
from wavis.ckks.structures import Ciphertext, EvaluationKeys, PublicKey, SecretKey
from wavis.errors import CiphertextFormatError

KEY = secrets.token_bytes(32)


@pytest.fixture(scope="module")
def ckks_objects():
    params = CkksParameters(poly_degree=256, scale_bits=30, max_depth=2, security_level="testing")
    kg = KeyGenerator(params, seed=bytes(range(32)))
    ct = Encryptor(params, kg.public_key()).encrypt(Encoder(params).encode([0.5, -1.0]))
    return params, kg, ct


@pytest.fixture(scope="module")
def tfhe_objects():
    ck, sk = tfhe.keygen("testing", seed=3)
    return ck, sk


def test_both_schemes_share_one_header_and_digest(ckks_objects, tfhe_objects):
    params, kg, ct = ckks_objects
    ck, sk = tfhe_objects
    c = serialize.dumps(ct)
    t = tfhe.serialize.dumps(ck.encrypt(True))
    for blob, scheme, params_id, key_id in ((c, frame.SCHEME_CKKS, params.fingerprint_bytes, ct.key_tag),
                                            (t, frame.SCHEME_TFHE, ck.params.fingerprint, ck.key_id)):
        f = frame.unpack(blob, scheme)
        assert blob[:6] == b"WAVS\x02\x00" and f.params_id == params_id and f.key_id == key_id
        assert not f.tagged and f.tag == bytes(32)
        assert blob[-16:] == hashlib.blake2b(blob[:-16], digest_size=16).digest()
    with pytest.raises(CiphertextFormatError, match="expected a CKKS object"):
        serialize.loads(t, Ciphertext, params)
    with pytest.raises(CiphertextFormatError, match="expected a TFHE object"):
        tfhe.serialize.loads(c)


def test_keyed_tag_binds_blob_key_and_associated_data(ckks_objects, tfhe_objects):
    _, _, ct = ckks_objects
    ck, _ = tfhe_objects
    for blob in (serialize.dumps(ct), tfhe.serialize.dumps(ck.encrypt(False))):
        signed = frame.sign(blob, KEY, b"acct:key:server")
        assert frame.verify(signed, KEY, b"acct:key:server")
        assert not frame.verify(blob, KEY, b"acct:key:server")  # untagged
        assert not frame.verify(signed, KEY, b"acct:key:client")  # other provenance
        assert not frame.verify(signed, secrets.token_bytes(32), b"acct:key:server")  # other key
        # altering one payload byte and fixing the unkeyed digest still fails the tag
        raw = bytearray(signed)
        raw[frame.HEAD_BYTES + 3] ^= 1
        raw[-16:] = hashlib.blake2b(bytes(raw[:-16]), digest_size=16).digest()
        assert not frame.verify(bytes(raw), KEY, b"acct:key:server")
        # a tagged blob still loads everywhere (the tag is for its issuer), stripping is an untagged frame
        assert not frame.verify(frame.strip_tag(signed), KEY, b"acct:key:server")
        assert frame.unpack(frame.strip_tag(signed), signed[6]).tag_alg == frame.TAG_NONE
        assert not frame.verify(b"junk", KEY) and not frame.verify(signed[:-1], KEY, b"acct:key:server")
    assert serialize.loads(frame.sign(serialize.dumps(ct), KEY), Ciphertext, ckks_objects[0]).level == ct.level


# -- version 1 still loads ---------------------------------------------------------------------------
def _v1_ckks(kind: int, fp: bytes, key_tag: bytes, body: bytes) -> bytes:
    head = struct.pack("<4sHBB16s16sQ", b"WAVS", 1, kind, 0, fp, key_tag, len(body))
    return head + body + hashlib.blake2b(head + body, digest_size=16).digest()


def _v1_rows(a: np.ndarray, moduli) -> bytes:
    a = a.reshape(-1, len(moduli), a.shape[-1])
    return b"".join(pack_bits(np.ascontiguousarray(a[i, r]), int(q).bit_length())
                    for i in range(a.shape[0]) for r, q in enumerate(moduli))


def test_version_1_ckks_blobs_still_load(ckks_objects):
    """The version-1 writer (commit b0bcda9) packed every row at its modulus's width, no width
    bytes; keys stored in PostgreSQL that way must keep loading."""
    params, kg, ct = ckks_objects
    d = np.asarray(ct.data)
    body = struct.pack("<HBBdIH", ct.level, d.shape[0], 0, ct.scale, d.shape[2], d.shape[1])
    blob = _v1_ckks(1, params.fingerprint_bytes, ct.key_tag, body + _v1_rows(d, params.moduli[:d.shape[1]]))
    back = serialize.loads(blob, Ciphertext, params)
    assert np.array_equal(np.asarray(back.data), d) and back.scale == ct.scale
    pk = kg.public_key()
    pd = np.asarray(pk.data)
    body = struct.pack("<HI", pd.shape[1], pd.shape[2]) + b"\x01" + _v1_rows(pd[0], params.moduli) + pk.a_seed
    back = serialize.loads(_v1_ckks(2, params.fingerprint_bytes, pk.key_tag, body), PublicKey, params)
    assert np.array_equal(np.asarray(back.data), pd)
    c = np.asarray(kg.secret_key.coeffs, dtype=np.int8)
    blob = _v1_ckks(4, params.fingerprint_bytes, kg.secret_key.key_tag, struct.pack("<I", c.size) + c.tobytes())
    assert np.array_equal(serialize.loads(blob, SecretKey, params).coeffs, kg.secret_key.coeffs)
    evk = kg.evaluation_keys()
    rk = np.asarray(evk.relin_key.data)
    allq = params.all_moduli
    body = struct.pack("<BIHHI", 1, 0, rk.shape[0], rk.shape[2], rk.shape[3]) + b"\x01" \
        + _v1_rows(rk[:, 0], allq) + evk.relin_key.a_seed
    back = serialize.loads(_v1_ckks(3, params.fingerprint_bytes, evk.key_tag, body), EvaluationKeys, params)
    assert np.array_equal(np.asarray(back.relin_key.data), rk)
    bad = bytearray(blob)
    bad[60] ^= 1
    with pytest.raises(CiphertextFormatError, match="digest"):
        serialize.loads(bytes(bad), SecretKey, params)


def test_version_1_tfhe_blobs_still_load(tfhe_objects):
    ck, sk = tfhe_objects

    def v1(blob: bytes) -> bytes:
        f = frame.unpack(blob, frame.SCHEME_TFHE)
        head = struct.pack("<4sHBB16sQ", b"WVTF", 1, f.kind, ck.params.preset_id, f.key_id, len(f.payload))
        body = head + bytes(f.payload)
        return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)

    old_sk = tfhe.serialize.load_server_key(v1(tfhe.serialize.dumps(sk)))
    assert old_sk.key_id == sk.key_id
    old_ck = tfhe.serialize.load_client_key(v1(tfhe.serialize.dumps(ck)))
    ct = tfhe.serialize.load_ciphertext(v1(tfhe.serialize.dumps(ck.encrypt(True))), key=sk)
    assert old_ck.decrypt(ct) is True
    raw = bytearray(v1(tfhe.serialize.dumps(ck.encrypt(True))))
    raw[40] ^= 1
    with pytest.raises(CiphertextFormatError, match="checksum"):
        tfhe.serialize.loads(bytes(raw))
    assert not frame.verify(v1(tfhe.serialize.dumps(ck.encrypt(True))), KEY)  # v1 never carries a tag


def test_fingerprint_has_no_global_state(ckks_objects):
    """CkksParameters.fingerprint is a pure function; serializing needs no registry of
    parameter sets (writing takes the widths from the data, reading takes explicit params)."""
    import wavis.ckks.params as mod

    before = dict(vars(mod))
    for n in (64, 128, 512):
        p = CkksParameters(poly_degree=n, scale_bits=30, max_depth=1, security_level="testing")
        assert p.fingerprint == CkksParameters.from_dict(p.to_dict()).fingerprint
    after = dict(vars(mod))
    assert before.keys() == after.keys() and all(before[k] is after[k] for k in before)
    assert not hasattr(mod, "params_for") and not hasattr(mod, "_KNOWN")
    params, _, ct = ckks_objects
    # an object with a fingerprint this process never computed still serializes
    foreign = Ciphertext(np.asarray(ct.data).copy(), ct.level, ct.scale, "ab" * 16, ct.key_tag)
    assert frame.unpack(serialize.dumps(foreign), frame.SCHEME_CKKS).params_id == bytes.fromhex("ab" * 16)

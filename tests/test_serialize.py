"""Wire format: round trips and typed errors for truncated, corrupted and foreign blobs."""

from __future__ import annotations

import numpy as np
import pytest

from wavis import serialize
from wavis.ckks import Ciphertext, CkksParameters, Decryptor, Encoder, Encryptor, EvaluationKeys, KeyGenerator, PublicKey, SecretKey
from wavis.errors import CiphertextFormatError, KeyMismatchError


@pytest.fixture(scope="module")
def setup():
    params = CkksParameters(poly_degree=512, scale_bits=30, max_depth=2, security_level="testing")
    kg = KeyGenerator(params, seed=b"s" * 32)
    enc = Encoder(params)
    ct = Encryptor(params, kg.public_key()).encrypt(enc.encode([0.5, -0.25, 0.125]))
    return params, kg, enc, ct


def test_roundtrips(setup):
    params, kg, enc, ct = setup
    assert serialize.loads(serialize.dumps(params)) == params
    ct2 = serialize.loads(serialize.dumps(ct), Ciphertext, params)
    assert ct2.level == ct.level and ct2.scale == ct.scale and ct2.key_tag == ct.key_tag
    assert np.array_equal(np.asarray(ct2.data), np.asarray(ct.data))
    pk = serialize.loads(serialize.dumps(kg.public_key()), PublicKey, params)
    assert np.array_equal(np.asarray(pk.data), np.asarray(kg.public_key().data))
    evk = kg.evaluation_keys(galois_steps=[1])
    evk2 = serialize.loads(serialize.dumps(evk), EvaluationKeys, params)
    assert set(evk2.galois_keys) == set(evk.galois_keys)
    assert np.array_equal(np.asarray(evk2.relin_key.data), np.asarray(evk.relin_key.data))
    sk = serialize.loads(serialize.dumps(kg.secret_key), SecretKey, params)
    vals = enc.decode(Decryptor(params, sk).decrypt(ct2)).real[:3]
    assert np.allclose(vals, [0.5, -0.25, 0.125], atol=1e-4)


def test_truncated_and_corrupted(setup):
    params, _, _, ct = setup
    blob = serialize.dumps(ct)
    for cut in (0, 3, 20, len(blob) // 2, len(blob) - 1):
        with pytest.raises(CiphertextFormatError):
            serialize.loads(blob[:cut], Ciphertext, params)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x40
    with pytest.raises(CiphertextFormatError):
        serialize.loads(bytes(flipped), Ciphertext, params)
    with pytest.raises(CiphertextFormatError):
        serialize.loads(blob + b"\0", Ciphertext, params)
    with pytest.raises(CiphertextFormatError):
        serialize.loads(b"NOPE" + blob[4:], Ciphertext, params)
    with pytest.raises(CiphertextFormatError):
        serialize.loads(blob, PublicKey, params)


def test_foreign_parameters(setup):
    params, _, _, ct = setup
    other = CkksParameters(poly_degree=512, scale_bits=31, max_depth=2, security_level="testing")
    with pytest.raises(KeyMismatchError):
        serialize.loads(serialize.dumps(ct), Ciphertext, other)


def test_residue_out_of_range_is_rejected(setup):
    params, _, _, ct = setup
    bad = ct.copy()
    data = np.asarray(bad.data).copy()
    data[0, 0, 0] = np.uint64(params.moduli[0])
    bad.data = data
    with pytest.raises(CiphertextFormatError):
        serialize.loads(serialize.dumps(bad), Ciphertext, params)


def test_base64():
    assert serialize.b64decode(serialize.b64encode(b"abc\x00")) == b"abc\x00"
    for bad in ("abc", "a$==", "YWJj\n!"):
        with pytest.raises(CiphertextFormatError):
            serialize.b64decode(bad)


def test_compact_sizes(setup):
    """Residues take ⌈log2 q⌉ bits and keys carry a seed instead of their uniform half."""
    params, kg, _, ct = setup
    rows = ct.level + 1
    bits = sum(q.bit_length() for q in params.moduli[:rows])
    # frame: 84-byte header + 16-byte digest; payload head; one width byte per packed row; a seed
    assert len(serialize.dumps(ct)) <= 2 * params.poly_degree * bits // 8 + 128
    assert len(serialize.dumps(ct)) == serialize.ciphertext_size(params, ct.level)
    pk_blob = serialize.dumps(kg.public_key())
    assert len(pk_blob) <= params.poly_degree * sum(q.bit_length() for q in params.moduli) // 8 + 160
    evk = kg.evaluation_keys()
    full = len(params.digits) * 2 * len(params.all_moduli) * params.poly_degree * 8
    assert len(serialize.dumps(evk)) < full * 0.5


def test_seed_expansion_reproduces_the_key(setup):
    params, kg, enc, _ = setup
    evk = kg.evaluation_keys(galois_steps=[1])
    back = serialize.loads(serialize.dumps(evk), EvaluationKeys, params)
    assert back.relin_key.a_seed == evk.relin_key.a_seed
    assert np.array_equal(np.asarray(back.relin_key.data), np.asarray(evk.relin_key.data))
    for g, k in evk.galois_keys.items():
        assert np.array_equal(np.asarray(back.galois_keys[g].data), np.asarray(k.data))


def test_loads_with_parameters_in_the_type_slot_is_a_typed_error(setup):
    """`loads(blob, params)` (the parameters where expected_type goes) raised AttributeError
    ('CkksParameters' object has no attribute '__name__') from the kind check; now ParameterError."""
    from wavis.errors import ParameterError

    params, _, _, ct = setup
    blob = serialize.dumps(ct)
    for bad in (params, "Ciphertext", int, [Ciphertext]):
        with pytest.raises(ParameterError) as exc:
            serialize.loads(blob, bad)
        assert exc.value.details["field"] == "expected_type"
    assert serialize.loads(blob, params=params).level == ct.level

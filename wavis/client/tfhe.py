"""TFHE on the client: keys, bits and unsigned integers, and circuits over integers built from
Boolean gates, so a user never touches the wire format.

    from wavis.client import TfheKeys, Circuit
    keys = TfheKeys.generate("fast_128")                 # client key stays here
    c = Circuit()
    x, y = c.inputs(keys.encrypt_uint(200, 8)), c.inputs(keys.encrypt_uint(55, 8))
    total, carry = c.add(x, y)                           # ripple-carry adder: 5 gates a bit
    outs = keys.server_key.evaluate_circuit(c.gates)     # locally, or client.tfhe_run(session, c)
    assert keys.decrypt_uint(c.pick(outs, total)) == 255

Integers are unsigned, little-endian lists of single-bit ciphertexts (bit 0 first). The gate
semantics are those of :mod:`wavis.tfhe.gates` (Chillotti et al., TFHE, J. Cryptology 2020,
§5: each gate but NOT is one gate bootstrap, MUX two).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Sequence, Union

from wavis import tfhe
from wavis.errors import ParameterError
from wavis.tfhe import ClientKey, LweCiphertext, ServerKey

__all__ = ["TfheKeys", "Circuit", "Wire", "ct_to_b64", "ct_from_b64"]

# a circuit operand: an input ciphertext, or "$k" (the output of gate k of the same circuit)
Wire = Union[LweCiphertext, str]


def ct_to_b64(ct: LweCiphertext) -> str:
    """Base64 of one ciphertext's wire blob (what the REST API's ``a``/``b``/``sel`` carry)."""
    return base64.b64encode(tfhe.serialize.dumps(ct)).decode()


def ct_from_b64(text: str, key: ClientKey | ServerKey | None = None) -> LweCiphertext:
    """The ciphertext in a REST answer (``key`` checks it belongs to that key)."""
    return tfhe.serialize.load_ciphertext(base64.b64decode(text), key=key)


@dataclass
class TfheKeys:
    """A TFHE key pair made on the client: ``client_key`` (secret: encrypts and decrypts) and
    ``server_key`` (bootstrapping and key-switching keys, nothing secret; what a blind session
    uploads, 11–21 MB)."""

    client_key: ClientKey
    server_key: ServerKey

    @classmethod
    def generate(cls, preset: str = "fast_128", seed: bytes | int | None = None, *, context=None) -> "TfheKeys":
        """Keys for ``preset`` (``fast_128``, ``standard_128``, ``conservative_128``: each
        ≥ 128-bit, docs/tfhe.md). ``seed`` makes them reproducible (tests only; default: 32
        bytes from ``secrets``). ``context``: the device they compute on (default the CPU)."""
        ck, sk = tfhe.keygen(preset, seed=seed, context=context)
        return cls(ck, sk)

    @property
    def params(self):
        return self.client_key.params

    @property
    def preset(self) -> str:
        return self.params.name

    def n(self) -> int:
        """LWE dimension n of the ciphertexts (the hosted documentation's ``keys.n()``)."""
        return int(self.params.n)

    def big_n(self) -> int:
        """GLWE polynomial size N of the bootstrapping key (``keys.big_n()``)."""
        return int(self.params.big_n)

    # bits
    def encrypt(self, bit: bool | int) -> LweCiphertext:
        """One bit → one ciphertext."""
        return self.client_key.encrypt(bool(bit) if isinstance(bit, bool) else int(bit))

    def encrypt_bits(self, bits: Sequence[bool | int]) -> list[LweCiphertext]:
        """Bits → one ciphertext each (encrypted together, then split)."""
        if len(bits) == 0:
            raise ParameterError("no bits to encrypt")
        return list(self.client_key.encrypt(list(bits)))

    def decrypt(self, ct: LweCiphertext) -> bool:
        return bool(self.client_key.decrypt(ct))

    def decrypt_bits(self, cts: Sequence[LweCiphertext]) -> list[bool]:
        return [bool(self.client_key.decrypt(c)) for c in cts]

    # unsigned integers
    def encrypt_uint(self, value: int, width: int) -> list[LweCiphertext]:
        """An unsigned integer 0 ≤ value < 2^width → ``width`` ciphertexts, bit 0 first.
        Raises ParameterError when it does not fit."""
        value, width = int(value), int(width)
        if width < 1 or not 0 <= value < 1 << width:
            raise ParameterError(f"{value} is not an unsigned {width}-bit integer")
        return self.encrypt_bits([(value >> i) & 1 for i in range(width)])

    def decrypt_uint(self, cts: Sequence[LweCiphertext]) -> int:
        return sum(int(b) << i for i, b in enumerate(self.decrypt_bits(cts)))

    def server_key_b64(self) -> str:
        return base64.b64encode(tfhe.serialize.dumps(self.server_key)).decode()

    def save(self, directory) -> list:
        """``tfhe.client.key`` (secret) and ``tfhe.server.key`` in ``directory``, mode 0600."""
        from .files import write_private  # noqa: PLC0415

        return [write_private(directory, "tfhe.client.key", tfhe.serialize.dumps(self.client_key)),
                write_private(directory, "tfhe.server.key", tfhe.serialize.dumps(self.server_key))]

    @classmethod
    def load(cls, directory) -> "TfheKeys":
        from pathlib import Path  # noqa: PLC0415

        d = Path(directory)
        ck = tfhe.serialize.load_client_key((d / "tfhe.client.key").read_bytes())
        sk = tfhe.serialize.load_server_key((d / "tfhe.server.key").read_bytes())
        if ck.key_id != sk.key_id:
            raise ParameterError("tfhe.client.key and tfhe.server.key are not one key pair")
        return cls(ck, sk)


class Circuit:
    """A Boolean circuit as the list of gate objects ``/tfhe/batch`` and
    :meth:`wavis.tfhe.ServerKey.evaluate_circuit` take: each gate's operands are input
    ciphertexts or ``"$k"``, the output of an earlier gate k. Every method returns the wire(s) of
    its output; integers are lists of wires, bit 0 first. At most 1024 gates per request."""

    def __init__(self) -> None:
        self.gates: list[dict] = []

    def __len__(self) -> int:
        return len(self.gates)

    @staticmethod
    def inputs(cts: Sequence[LweCiphertext] | LweCiphertext) -> list[Wire]:
        """Ciphertexts as circuit inputs (a batch ciphertext is split into its bits)."""
        return list(cts) if not isinstance(cts, LweCiphertext) or cts.is_batch else [cts]

    def gate(self, op: str, a: Wire, b: Wire | None = None, sel: Wire | None = None) -> str:
        op = op.upper()
        if op not in tfhe.OPS:
            raise ParameterError(f"unknown gate {op!r} (one of {', '.join(tfhe.OPS)})")
        g = {"op": op, "a": a}
        if b is not None:
            g["b"] = b
        if sel is not None:
            g["sel"] = sel
        self.gates.append(g)
        return f"${len(self.gates) - 1}"

    def and_(self, a, b): return self.gate("AND", a, b)
    def or_(self, a, b): return self.gate("OR", a, b)
    def xor(self, a, b): return self.gate("XOR", a, b)
    def xnor(self, a, b): return self.gate("XNOR", a, b)
    def nand(self, a, b): return self.gate("NAND", a, b)
    def nor(self, a, b): return self.gate("NOR", a, b)
    def not_(self, a): return self.gate("NOT", a)

    def mux(self, sel: Wire, a: Wire, b: Wire) -> str:
        """``a`` where ``sel`` is 1, ``b`` where it is 0 (two bootstraps)."""
        return self.gate("MUX", a, b, sel)

    # integers (unsigned, bit 0 first)
    @staticmethod
    def _same_width(x: Sequence[Wire], y: Sequence[Wire]) -> None:
        if len(x) != len(y) or not x:
            raise ParameterError(f"operands must have the same, non-zero width ({len(x)} vs {len(y)})")

    def add(self, x: Sequence[Wire], y: Sequence[Wire], carry: Wire | None = None) -> tuple[list[str], str]:
        """Ripple-carry x + y (+ carry): (sum bits, carry out). Per bit: s = x⊕y⊕c,
        c' = (x∧y) ∨ ((x⊕y)∧c): 5 gates (2 for bit 0 without a carry in)."""
        self._same_width(x, y)
        out = []
        for xi, yi in zip(x, y):
            t = self.xor(xi, yi)
            if carry is None:
                out.append(t)
                carry = self.and_(xi, yi)
            else:
                out.append(self.xor(t, carry))
                carry = self.or_(self.and_(xi, yi), self.and_(t, carry))
        return out, carry

    def equal(self, x: Sequence[Wire], y: Sequence[Wire]) -> str:
        """x == y: XNOR per bit, AND of them (2·width − 1 gates)."""
        self._same_width(x, y)
        eqs = [self.xnor(a, b) for a, b in zip(x, y)]
        acc = eqs[0]
        for e in eqs[1:]:
            acc = self.and_(acc, e)
        return acc

    def less_than(self, x: Sequence[Wire], y: Sequence[Wire]) -> str:
        """Unsigned x < y, from bit 0 up: lt = MUX(x_i == y_i, lt, y_i)."""
        self._same_width(x, y)
        lt = self.and_(self.not_(x[0]), y[0])
        for a, b in zip(x[1:], y[1:]):
            lt = self.mux(self.xnor(a, b), lt, b)
        return lt

    def compare(self, x: Sequence[Wire], y: Sequence[Wire]) -> tuple[str, str]:
        """(x < y, x == y)."""
        return self.less_than(x, y), self.equal(x, y)

    def select(self, cond: Wire, x: Sequence[Wire], y: Sequence[Wire]) -> list[str]:
        """``x`` where ``cond`` is 1, else ``y`` (one MUX a bit)."""
        self._same_width(x, y)
        return [self.mux(cond, a, b) for a, b in zip(x, y)]

    def maximum(self, x: Sequence[Wire], y: Sequence[Wire]) -> list[str]:
        """max(x, y) = select(x < y, y, x)."""
        return self.select(self.less_than(x, y), y, x)

    @staticmethod
    def pick(outputs: Sequence[LweCiphertext], wires: Sequence[str] | str):
        """The ciphertexts of ``wires`` ("$k") among a circuit's ``outputs`` (one per gate)."""
        if isinstance(wires, str):
            return outputs[int(wires[1:])]
        return [outputs[int(w[1:])] for w in wires]

    def wire_body(self) -> list[dict]:
        """The gates with input ciphertexts as base64 (the ``/tfhe/batch`` body's ``gates``)."""
        return [{k: (ct_to_b64(v) if isinstance(v, LweCiphertext) else v) for k, v in g.items()}
                for g in self.gates]

"""CKKS public-key encryption and decryption (CKKS ASIACRYPT 2017 §3.4, RNS form per
Cheon et al. SAC 2018): Enc(m) = (v·b + e_0 + m, v·a + e_1) with v uniform ternary and
e_0, e_1 Gaussian (σ = 3.2); Dec(c) = c_0 + c_1·s (+ c_2·s²) mod Q_ℓ."""

from __future__ import annotations

from ..errors import KeyMismatchError, ParameterError
from ..ring.sampling import Sampler
from .context import CkksContext, context_of
from .params import CkksParameters
from .structures import Ciphertext, Plaintext, PublicKey, SecretKey


def _check_fp(obj, params: CkksParameters, what: str) -> None:
    if obj.params_fingerprint != params.fingerprint:
        raise KeyMismatchError(f"{what} belongs to other parameters", expected=params.fingerprint,
                               got=obj.params_fingerprint)


class Encryptor:
    """Encrypts plaintexts under a :class:`PublicKey`.

    Args:
        params: a :class:`CkksContext` or the scheme parameters (then the default CPU context, or the
            context of ``backend``); public_key: the key; seed: 32 bytes for tests only.

    Raises:
        KeyMismatchError: the key or a plaintext belongs to other parameters.
    """

    def __init__(self, params: "CkksParameters | CkksContext", public_key: PublicKey, seed: bytes | None = None,
                 backend=None):
        self.context = context_of(params, backend)
        params = self.context.params
        _check_fp(public_key, params, "public key")
        self.params = params
        self.public_key = public_key
        self.backend = self.context.backend
        self.ctx = self.context.ring
        self.sampler = Sampler(seed)

    def encrypt(self, pt: Plaintext) -> Ciphertext:
        """Encrypt at the plaintext's level and scale.

        Returns: Ciphertext with data (2, level+1, N) uint64 (NTT domain).
        """
        if not isinstance(pt, Plaintext):
            raise ParameterError("encrypt takes a Plaintext (use Encoder.encode first)")
        _check_fp(pt, self.params, "plaintext")
        ctx, n = self.ctx, self.params.poly_degree
        idx = list(range(pt.level + 1))
        rows = len(idx)
        pk = self.public_key.data
        v = ctx.from_signed(self.sampler.ternary(n), idx)
        ctx.ntt(v, idx)
        out = ctx.zeros(2 * rows).reshape(2, rows, n)
        for c in range(2):
            e = ctx.from_signed(self.sampler.gaussian(n), idx)
            ctx.ntt(e, idx)
            comp = ctx.zeros(rows)
            ctx.mul(v, pk[c, :rows].copy(), comp, idx)
            ctx.add(comp, e, comp, idx)
            if c == 0:
                ctx.add(comp, pt.data, comp, idx)
            out[c] = comp
        return Ciphertext(out, pt.level, pt.scale, self.params.fingerprint, self.public_key.key_tag)


class Decryptor:
    """Decrypts ciphertexts of size 2 or 3 with the :class:`SecretKey`.

    Raises:
        KeyMismatchError: ciphertext of other parameters or of another key.
    """

    def __init__(self, params: "CkksParameters | CkksContext", secret_key: SecretKey, backend=None):
        self.context = context_of(params, backend)
        params = self.context.params
        _check_fp(secret_key, params, "secret key")
        self.params = params
        self.secret_key = secret_key
        self.backend = self.context.backend
        self.ctx = self.context.ring

    def decrypt(self, ct: Ciphertext) -> Plaintext:
        """Returns the Plaintext m + e (NTT domain) at the ciphertext's level and scale."""
        _check_fp(ct, self.params, "ciphertext")
        if ct.key_tag != self.secret_key.key_tag:
            raise KeyMismatchError("ciphertext was encrypted under another key")
        ctx = self.ctx
        rows = ct.level + 1
        idx = list(range(rows))
        s = self.secret_key.data[:rows].copy()
        acc = ct.data[0].copy()
        s_pow = s.copy()
        for c in range(1, ct.size):
            ctx.mul_add(ct.data[c], s_pow, acc, idx)
            if c + 1 < ct.size:
                ctx.mul(s_pow, s, s_pow, idx)
        return Plaintext(acc, ct.level, ct.scale, self.params.fingerprint)

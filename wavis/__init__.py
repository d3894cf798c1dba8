"""WAVIS: fully homomorphic encryption (RNS-CKKS and TFHE) with a C++ CPU core and CUDA kernels.

Layers (imports flow downward only; see docs/architecture.md):
``wavis.service`` → ``wavis.client`` → ``wavis.serialize`` → ``wavis.ckks`` | ``wavis.tfhe``
→ ``wavis.ring`` → ``wavis.backend`` → ``wavis._core`` (C++) / ``kernels/`` (CUDA).

``import wavis`` imports neither CuPy nor any service dependency.
"""

__version__ = "0.1.0"

"""Ring layer: moduli, RNS bases and NTT tables (via the backend), samplers, security table.

Device-agnostic: it asks ``wavis.backend`` for a :class:`~wavis.backend.protocol.RingOps`; the
CSPRNG and the prime search reach native code through ``wavis.backend.host()``.
"""

from .security import MAX_LOG_QP, SECURITY_LEVELS, max_log_qp
from .moduli import ntt_primes

__all__ = ["MAX_LOG_QP", "SECURITY_LEVELS", "max_log_qp", "ntt_primes"]

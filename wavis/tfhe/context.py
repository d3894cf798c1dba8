"""The TFHE context: a parameter set × a backend (:class:`wavis.ring.context.Context`).

It owns the backend's :class:`~wavis.backend.protocol.LweOps` for the parameter set and the
server keys resident on its device (:meth:`TfheContext.load_server_key`: expanded once into the
transform domain, keyed by the server key's id; ``evict_key`` frees them).
"""

from __future__ import annotations

from typing import Any

from ..ring.context import Context
from .params import TfheParameters, get_preset

__all__ = ["TfheContext"]


class TfheContext(Context):
    """TFHE parameters × backend.

    Args:
        params: a :class:`TfheParameters` or a preset name.
        backend: a :class:`wavis.backend.protocol.Backend` (``TfheContext.default(params)``: the CPU).

    Raises: ParameterError for an unknown preset.
    """

    def __init__(self, params: "TfheParameters | str", backend: Any) -> None:
        super().__init__(get_preset(params), backend)
        self.lwe = backend.lwe(self.params)

    @classmethod
    def default(cls, params: "TfheParameters | str", backend: Any = None) -> "TfheContext":
        return super().default(get_preset(params), backend)

    def load_server_key(self, server_key) -> Any:
        """Make ``server_key`` (:class:`wavis.tfhe.ServerKey`) resident on this context's device
        (once; later calls return the resident form) and return the resident handle."""
        def make():
            handle = self.lwe.load_server_key(server_key.mask_seed, server_key.bsk_bodies, server_key.ksk_bodies)
            return handle, int(handle.memory_bytes)

        return self.keys.get_or_put(server_key.key_id, make)

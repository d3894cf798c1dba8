"""The WAVIS REST service (aiohttp). ``create_app`` builds the app; ``server.run`` serves it.

See docs/service.md for the layout, the middleware chain and the storage model.
"""

from __future__ import annotations

from .app import create_app
from .settings import Settings

__all__ = ["create_app", "Settings"]

"""One module per endpoint group; each exposes ``routes`` (a ``web.RouteTableDef``)."""

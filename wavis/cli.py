"""Command line: ``wavis serve`` (the API server). Filled in by wavis.service."""

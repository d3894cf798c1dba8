"""The OpenAPI 3.1 document, generated from the app's route table and the pydantic models.

Each handler's ``@doc(...)`` names its request and response models; ``@access`` decides the
security requirement; path parameters come from the route template. A route without
``@doc`` is still listed (any JSON object in, the error schema as the default answer), so the
document never misses an endpoint. JSON schemas come from pydantic's own generator
(``models_json_schema``), so the document and the validation cannot drift.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

import wavis

from .access import Access, RouteDoc
from .schemas import ErrorResponse

_PARAM_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{model}"

_COMMON_ERRORS = {
    "PUBLIC": (400, 404, 413, 422, 429, 502, 503),
    "AUTH": (400, 401, 403, 404, 413, 422, 429, 402, 502, 503),
}


def _routes(app: web.Application):
    for resource in app.router.resources():
        canonical = resource.canonical
        for route in resource:
            if route.method in ("HEAD", "*"):
                continue
            yield canonical, route.method.lower(), route.handler


def build(app: web.Application) -> dict[str, Any]:
    entries = list(_routes(app))
    models: list[tuple[type, str]] = [(ErrorResponse, "serialization")]
    for _, _, handler in entries:
        d: RouteDoc | None = getattr(handler, "__wavis_doc__", None)
        if d is None:
            continue
        if d.request is not None:
            models.append((d.request, "validation"))
        for m in (d.responses or {}).values():
            if m is not None:
                models.append((m, "serialization"))
    seen: set[tuple[type, str]] = set()
    uniq = [m for m in models if not (m in seen or seen.add(m))]
    keyed, defs = models_json_schema(uniq, ref_template=_REF)
    components = defs.get("$defs", {})

    def ref(model: type, mode: str) -> dict[str, Any]:
        return keyed[(model, mode)]

    error_ref = ref(ErrorResponse, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for path, method, handler in entries:
        d = getattr(handler, "__wavis_doc__", None) or RouteDoc()
        level = getattr(handler, "__wavis_access__", None)
        public = level is Access.PUBLIC
        op: dict[str, Any] = {
            "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
            "summary": d.summary or handler.__name__.replace("_", " "),
            "tags": [path.split("/")[3] if path.startswith("/api/v1/") and len(path.split("/")) > 3 else "ops"],
            "responses": {},
        }
        if d.deprecated:
            op["deprecated"] = True
        if level is not None:
            op["x-wavis-access"] = level.name
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                  for n in _PARAM_RE.findall(path)]
        for name, schema in (d.query or {}).items():
            params.append({"name": name, "in": "query", "required": False, "schema": schema})
        if params:
            op["parameters"] = params
        if d.request is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": ref(d.request, "validation")}}}
        elif method in ("post", "patch") and d.responses is None:
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}
        for status, model in (d.responses or {200: None}).items():
            desc = {"description": "success" if status < 400 else "error"}
            if model is not None:
                desc["content"] = {"application/json": {"schema": ref(model, "serialization")}}
            elif status < 300 and path == "/metrics":
                desc["content"] = {"text/plain": {"schema": {"type": "string"}}}
            op["responses"][str(status)] = desc
        for status in _COMMON_ERRORS["PUBLIC" if public else "AUTH"]:
            op["responses"].setdefault(str(status), {"description": "error",
                                                     "content": {"application/json": {"schema": error_ref}}})
        op["responses"]["default"] = {"description": "error", "content": {"application/json": {"schema": error_ref}}}
        if not public:
            op["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "WAVIS API", "version": wavis.__version__,
                 "description": "FHE as a service: CKKS and TFHE over REST. Contract: API.md."},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "wvs_<env>_<32 hex> (the bare key works too)"}},
        },
    }

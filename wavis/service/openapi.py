"""The OpenAPI 3.1 document, generated from the app's route table and the pydantic models.

Each handler's ``@doc(...)`` names its request and response models; ``@access`` decides the
security requirement; path parameters come from the route template. A route without
``@doc`` is still listed (any JSON object in, the error schema as the default answer), so the
document never misses an endpoint. JSON schemas come from pydantic's own generator
(``models_json_schema``), so the document and the validation cannot drift.

[issue 18] ``POST /compute/{operation}`` is documented as one path per operation
(``/compute/add``, …) with the request model that operation validates against
(``routes.compute.REQUEST_MODELS``); HEAD routes are listed; every request and response header
of API.md §1 is documented (``components.headers`` / ``components.parameters``); ``servers`` is
``WAVIS_PUBLIC_URL``, else the origin the document was requested at (``with_servers``).
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


COMPUTE_TEMPLATE = "/api/v1/compute/{operation}"
# what each operation does (the summary of its own path)
COMPUTE_SUMMARIES = {
    "add": "a + b (operands at different levels are brought to the lower one)",
    "subtract": "a − b",
    "multiply": "a · b, relinearized and rescaled (one level)",
    "add-plain": "a + p for a plaintext vector p (plain_operand, zero-padded)",
    "multiply-plain": "a · p for a plaintext vector p (one level)",
    "negate": "−a",
    "rescale": "divide by the last prime (results are already rescaled: rarely needed)",
    "rotate": "rotate the slots left by `steps` (Galois key of that step, or composed from powers of two)",
    "conjugate": "complex conjugate of every slot (conjugation key)",
    "matmul": "M·x for a plaintext matrix M (rows × cols ≤ slots): baby-step/giant-step diagonal method "
              "(Halevi–Shoup 2014); needs the Galois keys GET /keys/{id}?matmul_shape=RxC lists",
    "poly-eval": "p(x) slot-wise, ≤ 65 coefficients, power or Chebyshev basis (depth ⌈log2(d+1)⌉)",
    "sum": "sum of all slots into every slot (power-of-two Galois keys)",
    "inner-product": "Σ a_i·b_i into every slot (one level)",
    "bootstrap": "refresh the levels (ModRaise, CoeffsToSlots, EvalMod, SlotsToCoeffs; keys made bootstrappable)",
}

_STR = {"type": "string"}
_INT = {"type": "integer"}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {"description": "the request id (req_ + 24 hex, or the caller's own X-Request-ID); every "
                                    "error body repeats it", "schema": _STR},
    "Retry-After": {"description": "seconds to wait before retrying (429, 503)", "schema": _INT},
    "RateLimit": {"description": "IETF RateLimit header of the tightest window", "schema": _STR},
    "RateLimit-Policy": {"description": "IETF RateLimit-Policy of the tightest window", "schema": _STR},
    "Idempotent-Replayed": {"description": "`true` when this is the stored answer of an earlier request with the "
                                           "same Idempotency-Key", "schema": _STR},
    "X-Noise-Budget-Remaining": {"description": "levels left / max levels × 100 (CKKS)", "schema": {"type": "number"}},
    "X-Noise-Budget-Warning": {"description": "`true` below 50 %", "schema": _STR},
    "X-Noise-Budget-Recovery": {"description": "a hint naming POST /api/v1/compute/bootstrap (keys with a "
                                               "bootstrapping preset)", "schema": _STR},
    "Deprecation": {"description": "`true` on deprecated endpoints (POST /keys/generate)", "schema": _STR},
    "X-Security-Warning": {"description": "insecure `testing` parameters were accepted (operator's insecure mode)",
                           "schema": _STR},
}
for _w in ("Daily", "Monthly", "Burst"):
    for _f, _d in (("Limit", "size of the window"), ("Remaining", "left in the window"),
                   ("Reset", "seconds until the window resets")):
        HEADERS[f"X-RateLimit-{_w}-{_f}"] = {"description": f"{_w.lower()} window: {_d}", "schema": _INT}
RATE_HEADERS = [h for h in HEADERS if h.startswith(("X-RateLimit-", "RateLimit"))]
PARAMETERS: dict[str, dict[str, Any]] = {
    "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                       "description": "1–255 printable characters; the same key and body within 24 h get the "
                                      "stored answer (Idempotent-Replayed: true); a different body 422 "
                                      "IDEMPOTENCY_KEY_REUSED; while the first still runs 409 "
                                      "IDEMPOTENCY_IN_PROGRESS",
                       "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"}},
    "RequestId": {"name": "X-Request-ID", "in": "header", "required": False,
                  "description": "your own request id, reused in the answer and the logs",
                  "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"}},
}


def _routes(app: web.Application):
    for resource in app.router.resources():
        canonical = resource.canonical
        for route in resource:
            if route.method == "*":
                continue
            yield canonical, route.method.lower(), route.handler


def _expand(app: web.Application):
    """The route table with ``/compute/{operation}`` as one entry per operation:
    (path, method, handler, request model or None for the handler's own)."""
    from .routes.compute import REQUEST_MODELS  # noqa: PLC0415

    for path, method, handler in _routes(app):
        if path == COMPUTE_TEMPLATE and method == "post":
            for op, model in REQUEST_MODELS.items():
                yield path.replace("{operation}", op), method, handler, _op_model(op, model)
        else:
            yield path, method, handler, None


_OP_MODELS: dict[str, type] = {}


def _op_model(op: str, base: type) -> type:
    """A named subclass per operation (``ComputeAddRequest``, …) so each path has a schema of its own."""
    if op not in _OP_MODELS:
        from pydantic import create_model  # noqa: PLC0415

        name = "Compute" + "".join(w.capitalize() for w in op.split("-")) + "Request"
        _OP_MODELS[op] = create_model(name, __base__=base, __doc__=f"`{op}`: {COMPUTE_SUMMARIES.get(op, op)}. "
                                      + (base.__doc__ or "").strip())
    return _OP_MODELS[op]


def with_servers(document: dict[str, Any], public_url: str | None, origin: str) -> dict[str, Any]:
    """The document with ``servers``: ``WAVIS_PUBLIC_URL`` when configured, else ``origin``."""
    url = public_url or origin
    return {**document, "servers": [{"url": url, "description": "this WAVIS server"
                                     if public_url is None else "WAVIS_PUBLIC_URL"}]}


def build(app: web.Application) -> dict[str, Any]:
    entries = list(_expand(app))
    models: list[tuple[type, str]] = [(ErrorResponse, "serialization")]
    for _, _, handler, op_model in entries:
        d: RouteDoc | None = getattr(handler, "__wavis_doc__", None)
        if d is None:
            continue
        if op_model is not None:
            models.append((op_model, "validation"))
        elif d.request is not None:
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
    for path, method, handler, op_model in entries:
        d = getattr(handler, "__wavis_doc__", None) or RouteDoc()
        level = getattr(handler, "__wavis_access__", None)
        public = level is Access.PUBLIC
        summary = d.summary or handler.__name__.replace("_", " ")
        if op_model is not None:
            summary = COMPUTE_SUMMARIES.get(path.rsplit("/", 1)[1], summary)
        op: dict[str, Any] = {
            "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
            "summary": summary,
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
        params.append({"$ref": "#/components/parameters/RequestId"})
        if method in ("post", "patch"):
            params.append({"$ref": "#/components/parameters/IdempotencyKey"})
        op["parameters"] = params
        request_model = op_model or d.request
        if method == "head":
            pass
        elif request_model is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": ref(request_model, "validation")}}}
        elif method in ("post", "patch") and d.responses is None:
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}
        responses = d.responses or {200: None}
        if op_model is not None:
            responses = {k: v for k, v in responses.items() if k != 501}  # every operation is built
        for status, model in responses.items():
            desc: dict[str, Any] = {"description": "success" if status < 400 else "error"}
            if model is not None and method != "head":
                desc["content"] = {"application/json": {"schema": ref(model, "serialization")}}
            elif status < 300 and path == "/metrics" and method != "head":
                desc["content"] = {"text/plain": {"schema": {"type": "string"}}}
            op["responses"][str(status)] = desc
        for status in _COMMON_ERRORS["PUBLIC" if public else "AUTH"]:
            op["responses"].setdefault(str(status), {"description": "error",
                                                     "content": {"application/json": {"schema": error_ref}}})
        op["responses"]["default"] = {"description": "error", "content": {"application/json": {"schema": error_ref}}}
        if method == "head":
            for status, r in op["responses"].items():
                r.pop("content", None)
        for status, r in op["responses"].items():
            hs = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
            code = int(status) if status.isdigit() else 0
            if not public and code not in (401, 403):
                hs.update({h: {"$ref": f"#/components/headers/{h}"} for h in RATE_HEADERS})
            if code in (429, 503):
                hs["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
            if method in ("post", "patch") and code != 0:
                hs["Idempotent-Replayed"] = {"$ref": "#/components/headers/Idempotent-Replayed"}
            if op_model is not None and code == 200:
                for h in ("X-Noise-Budget-Remaining", "X-Noise-Budget-Warning", "X-Noise-Budget-Recovery"):
                    hs[h] = {"$ref": f"#/components/headers/{h}"}
            if d.deprecated and code and code < 300:
                hs["Deprecation"] = {"$ref": "#/components/headers/Deprecation"}
            if path.startswith("/api/v1/keys/") and code and code < 300 and method == "post":
                hs["X-Security-Warning"] = {"$ref": "#/components/headers/X-Security-Warning"}
            r["headers"] = hs
        if not public:
            op["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "WAVIS API", "version": wavis.__version__,
                 "description": "FHE as a service: CKKS and TFHE over REST. Contract: API.md."},
        "servers": [{"url": "/"}],  # with_servers() sets the real one per request
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "headers": HEADERS,
            "parameters": PARAMETERS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "wvs_<env>_<32 hex> (the bare key works too)"}},
        },
    }


"""The API reference (docs/api-reference.md), generated from the OpenAPI document
(:mod:`wavis.service.openapi`): ``.venv/bin/python -m wavis.service.apidoc > docs/api-reference.md``."""

from __future__ import annotations

from typing import Any

def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " \\| ".join(_type_of(s) for s in schema[key])
    t = schema.get("type", "any")
    if t == "array":
        return f"[{_type_of(schema.get('items', {}))}]"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    return str(t)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(document: dict[str, Any]) -> str:
    """The API reference as Markdown: every path and method with its access level, parameters,
    request schema and responses, then every schema's fields and every documented header.
    ``python -m wavis.service.apidoc > docs/api-reference.md`` regenerates the file; a test
    checks the file is what this function makes of the live route table."""
    out = ["# API reference", "",
           "Generated from the server's OpenAPI document (`GET /api/v1/openapi.json`) by "
           "`.venv/bin/python -m wavis.service.apidoc > docs/api-reference.md`; do not edit by hand. "
           "The contract and its conventions (errors, pagination, idempotency, rate limits) are in API.md; "
           "what differs is in docs/service.md.", ""]
    schemas = document["components"]["schemas"]
    tags: dict[str, list[tuple[str, str, dict]]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            if method == "head" and "get" in methods:
                continue  # listed with its GET
            tags.setdefault(op["tags"][0], []).append((path, method, op))
    for tag in sorted(tags):
        out += [f"## {tag}", ""]
        for path, method, op in tags[tag]:
            verb = "GET, HEAD" if method == "get" and "head" in document["paths"][path] else method.upper()
            out += [f"### `{verb} {path}`", "", _cell(op.get("summary", "")), ""]
            access = op.get("x-wavis-access", "PUBLIC" if "security" not in op else "ANY")
            out.append(f"Access: **{access}**" + (" · deprecated" if op.get("deprecated") else ""))
            params = [p for p in op.get("parameters", []) if "$ref" not in p]
            refs = [p["$ref"].rsplit("/", 1)[1] for p in op.get("parameters", []) if "$ref" in p]
            if params:
                out += ["", "| parameter | in | type | required |", "|---|---|---|---|"]
                out += [f"| `{p['name']}` | {p['in']} | {_cell(_type_of(p['schema']))} | {p.get('required', False)} |"
                        for p in params]
            if refs:
                names = [document["components"]["parameters"][r]["name"] for r in refs]
                out += ["", "Headers: " + ", ".join(f"`{n}`" for n in names)]
            body = op.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                out += ["", f"Request body: {_type_of(schema)}"]
            codes = []
            for status, r in op["responses"].items():
                content = r.get("content", {})
                model = next((_type_of(c["schema"]) for c in content.values()), "")
                codes.append(f"`{status}`" + (f" {model}" if model else ""))
            out += ["", "Responses: " + ", ".join(codes), ""]
    out += ["## Schemas", ""]
    for name in sorted(schemas):
        s = schemas[name]
        out += [f"### {name}", ""]
        if s.get("description"):
            out += [_cell(s["description"]), ""]
        props = s.get("properties", {})
        if props:
            req = set(s.get("required", []))
            out += ["| field | type | required |", "|---|---|---|"]
            out += [f"| `{k}` | {_cell(_type_of(v))} | {'yes' if k in req else ''} |" for k, v in props.items()]
            out.append("")
        elif "anyOf" in s or "oneOf" in s:
            out += [f"One of: {_type_of(s)}", ""]
    out += ["## Headers", "", "| header | meaning |", "|---|---|"]
    for name, h in document["components"]["headers"].items():
        out.append(f"| `{name}` | {_cell(h['description'])} |")
    for p in document["components"]["parameters"].values():
        out.append(f"| `{p['name']}` (request) | {_cell(p['description'])} |")
    return "\n".join(out).rstrip() + "\n"


def offline_document() -> dict[str, Any]:
    """The document of a default app, built without connecting to anything."""
    from .app import create_app  # noqa: PLC0415
    from .openapi import build  # noqa: PLC0415
    from .settings import Settings  # noqa: PLC0415

    app = create_app(Settings(database_url="postgresql://offline/none", redis_url="redis://offline",
                              api_key_pepper=b"\0" * 32, master_key=b"\0" * 32))
    return build(app)


if __name__ == "__main__":
    import sys  # noqa: PLC0415

    sys.stdout.write(to_markdown(offline_document()))

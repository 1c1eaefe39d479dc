"""The OpenAPI document, made truthful in one place.

FastAPI documents each route's success answer and a 422 `HTTPValidationError` as
`application/json`. Every error the server actually sends is RFC 9457 problem+json
(`habitue.errors`), and the answers a route can give go beyond 422: this module rewrites the
generated document so each operation lists the error statuses it can answer, all as
`application/problem+json` with one `Problem` schema, and names the bearer-key security scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

PROBLEM = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem; `type` is stable, `errors` lists invalid fields.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "description": "`field` names the input, `rule` the rule that failed",
                "required": ["message"],
                "properties": {
                    "field": {"type": "string"},
                    "rule": {"type": "string"},
                    "message": {"type": "string"},
                    "code": {"type": ["string", "null"]},
                    "line": {"type": "integer"},
                    "column": {"type": "integer"},
                },
            },
        },
    },
}

# Why each status may be answered; the description shown for it in the document.
DESCRIPTIONS: dict[int, str] = {
    400: "The body cannot be read (not UTF-8)",
    401: "Missing, unknown or revoked API key",
    402: "Payment required (the club's payment provider refused)",
    403: "The key lacks the scope, or belongs to another program or partner",
    404: "The program or the addressed resource does not exist",
    409: "Conflict with the current state, or an Idempotency-Key request still in progress",
    413: "Request body over the configured limit",
    422: "Invalid request (problem+json; `errors` lists the fields)",
    429: "Too many requests; retry after the `Retry-After` header",
    503: "The database is unavailable; retry after the `Retry-After` header",
}

# Every operation can answer these: it is authenticated, addresses a program, may be limited, and
# depends on the database.
ALWAYS = (401, 403, 404, 422, 429, 503)
# Operations with a request body can also find it unreadable (not UTF-8), too large, or
# conflicting with the state.
WITH_BODY = (400, 409, 413)
# Mutations without a body (cancel, block, recompute, ...) still conflict with state or keys.
MUTATING = (409,)


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, "Error"),
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite `schema` in place: problem+json errors on every operation, bearer security."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin key or a program's API key: `Authorization: Bearer <key>`",
    }
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            statuses: set[int] = set(ALWAYS)
            if "requestBody" in op:
                statuses.update(WITH_BODY)
            if method != "get":
                statuses.update(MUTATING)
            if "/club/" in path and method != "get":
                statuses.add(402)
            responses: dict[str, Any] = op.setdefault("responses", {})
            for code in list(responses):
                if code.isdigit() and int(code) >= 400:
                    statuses.add(int(code))
            for status in sorted(statuses):
                described = responses.get(str(status), {}).get("description")
                responses[str(status)] = _problem_response(status)
                if described and described != "Validation Error":
                    responses[str(status)]["description"] = described
            op["responses"] = dict(sorted(responses.items()))
            if path.startswith("/v1/"):
                op["security"] = [{"bearer": []}]
    return schema


def install(app: FastAPI) -> None:
    """Serve the rewritten document at /openapi.json (built once, on first request)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

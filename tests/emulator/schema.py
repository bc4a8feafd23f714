"""Checks a recorded Cloudflare API exchange against the API's published shapes.

The operations come from ``cloudflare-openapi-subset.json`` (Cloudflare's
2024 OpenAPI, ``$ref``s inlined), read as JSON Schema with these fixes:

- OpenAPI 3.0 ``nullable: true`` becomes a ``"null"`` type;
- an ``allOf`` whose members disagree on a property (the generic envelope
  says ``success: true`` and ``result: array``, the operation then says
  ``success: false`` or ``result: object``) is merged with the last member
  winning per property, which is what the authors meant: as written the
  failure schemas of pull/ack and the ack success schema accept nothing;
- ``minLength`` on a schema that is not a string (the failure envelope's
  ``errors``) is read as ``minItems``, as meant;
- request bodies are strict (no properties beyond the schema's), so a
  misspelt field such as ``visibility_timeout`` is caught.

Where the 2024 schema has drifted (documented in the file itself):

- pull: ``result`` may be the newer object ``{message_backlog_count,
  messages}``; its ``messages`` items use the OpenAPI message schema;
- publish and batch publish are not in the 2024 schema; they are checked
  against :data:`SDK_SCHEMAS`, written from the SDK shapes the file records;
- KV PUT with a raw (not multipart) body is the SDK's form; only its
  response is checked.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.parse
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import attrs
from jsonschema import Draft7Validator

SPEC_PATH = Path(__file__).with_name("cloudflare-openapi-subset.json")
API_PREFIX = "/client/v4"

_RESPONSE_INFO = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "minimum": 1000},
        "message": {"type": "string"},
        "documentation_url": {"type": "string"},
        "source": {"type": "object", "properties": {"pointer": {"type": "string"}}},
    },
}
_PUBLISH_MESSAGE = {
    "oneOf": [
        {
            "type": "object",
            "required": ["body", "content_type"],
            "additionalProperties": False,
            "properties": {
                "body": {"type": "string"},
                "content_type": {"enum": ["text"]},
                "delay_seconds": {"type": "number", "minimum": 0, "maximum": 43200},
            },
        },
        {
            "type": "object",
            "required": ["body", "content_type"],
            "additionalProperties": False,
            "properties": {
                "body": {},
                "content_type": {"enum": ["json"]},
                "delay_seconds": {"type": "number", "minimum": 0, "maximum": 43200},
            },
        },
    ]
}
_PUBLISH_RESPONSE = {
    "type": "object",
    "required": ["success", "errors", "messages"],
    "properties": {
        "success": {"enum": [True]},
        "errors": {"type": "array", "items": _RESPONSE_INFO},
        "messages": {"type": "array", "items": {"type": "string"}},
    },
}
_FAILURE = {
    "type": "object",
    "required": ["success", "errors", "messages", "result"],
    "properties": {
        "success": {"enum": [False]},
        "errors": {"type": "array", "minItems": 1, "items": _RESPONSE_INFO},
        "messages": {"type": "array"},
        "result": {"type": "null"},
    },
}

#: Request and response shapes of the operations the 2024 schema lacks (SDK 2025-06).
SDK_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "queue-messages-push": {"request": _PUBLISH_MESSAGE, "200": _PUBLISH_RESPONSE, "4XX": _FAILURE},
    "queue-messages-bulk-push": {
        "request": {
            "type": "object",
            "required": ["messages"],
            "additionalProperties": False,
            "properties": {
                "delay_seconds": {"type": "number", "minimum": 0, "maximum": 43200},
                "messages": {"type": "array", "minItems": 1, "items": _PUBLISH_MESSAGE},
            },
        },
        "200": _PUBLISH_RESPONSE,
        "4XX": _FAILURE,
    },
}
_SDK_ROUTES = {
    ("POST", "/accounts/{account_id}/queues/{queue_id}/messages"): "queue-messages-push",
    ("POST", "/accounts/{account_id}/queues/{queue_id}/messages/batch"): "queue-messages-bulk-push",
}


@attrs.define
class Exchange:
    """One request and the response it got, as seen by the emulator."""

    method: str
    raw_path: str
    query: dict[str, str]
    request_headers: dict[str, str]
    request_body: bytes = attrs.field(repr=False)
    status: int = 0
    response_headers: dict[str, str] = attrs.field(factory=dict)
    response_body: bytes = attrs.field(default=b"", repr=False)
    reply_dropped: bool = False

    @property
    def path(self) -> str:
        """The decoded path without the ``/client/v4`` prefix."""
        path = self.raw_path
        if path.startswith(API_PREFIX):
            path = path[len(API_PREFIX) :]
        return path

    def request_json(self) -> Any:
        """The request body parsed as JSON."""
        return json.loads(self.request_body)

    def response_json(self) -> Any:
        """The response body parsed as JSON."""
        return json.loads(self.response_body)


# --- turning OpenAPI 3.0 into JSON Schema -----------------------------------------


def _nullable(schema: Any) -> Any:
    """Rewrite ``nullable: true`` (OpenAPI 3.0) as a JSON Schema null type, recursively."""
    if isinstance(schema, list):
        return [_nullable(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _nullable(v) for k, v in schema.items() if k != "nullable"}
    if "minLength" in out and out.get("type") != "string":
        # The failure envelope says ``errors`` has ``minLength: 1``: meant for the array.
        out["minItems"] = out.pop("minLength")
    if schema.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _members(schema: dict[str, Any]) -> list[dict[str, Any]]:
    if "allOf" not in schema:
        return [schema]
    out: list[dict[str, Any]] = []
    for member in schema["allOf"]:
        out.extend(_members(member))
    rest = {k: v for k, v in schema.items() if k != "allOf"}
    if rest:
        out.append(rest)
    return out


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    """Merge a (nested) ``allOf`` into one object schema, later members winning."""
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for member in _members(schema):
        for name, sub in member.get("properties", {}).items():
            merged["properties"][name] = sub
        for name in member.get("required", []):
            if name not in merged["required"]:
                merged["required"].append(name)
    return merged


def _strict(schema: Any) -> Any:
    """Forbid properties a request schema does not name, recursively."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return spec


@attrs.frozen
class Operation:
    """One operation: its id, path template regex, and its schemas."""

    op_id: str
    method: str
    template: str
    regex: re.Pattern[str]
    spec: Mapping[str, Any] = attrs.field(repr=False)


@cache
def operations() -> tuple[Operation, ...]:
    """Every operation the emulator serves, from the OpenAPI file and the SDK list."""
    out = []
    routes: dict[tuple[str, str], tuple[str, Mapping[str, Any]]] = {}
    for template, methods in _spec()["paths"].items():
        for method, op in methods.items():
            routes[(method.upper(), template)] = (op["operationId"], op)
    for key, op_id in _SDK_ROUTES.items():
        routes[key] = (op_id, {})
    for (method, template), (op_id, op) in routes.items():
        pattern = re.sub(r"\\\{([a-z_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        out.append(Operation(op_id, method, template, re.compile(f"^{pattern}$"), op))
    return tuple(out)


def find_operation(method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
    """Return the operation serving *method* *path* and its path parameters."""
    for op in operations():
        match = op.regex.match(path)
        if op.method == method and match:
            params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            return op, params
    return None


def _pull_object_schema(list_form: dict[str, Any]) -> dict[str, Any]:
    """The newer pull response: ``result`` an object holding the message list."""
    schema = copy.deepcopy(list_form)
    messages = schema["properties"]["result"]
    schema["properties"]["result"] = {
        "type": "object",
        "required": ["messages"],
        "properties": {"message_backlog_count": {"type": "number"}, "messages": messages},
    }
    return schema


def _errors(validator_schema: Mapping[str, Any], instance: Any, where: str) -> list[str]:
    validator = Draft7Validator(validator_schema)
    return [
        f"{where}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]


def _response_schema(op: Operation, status: int, body: Any) -> Mapping[str, Any] | None:
    key = "200" if 200 <= status < 300 else "4XX" if 400 <= status < 500 else None
    if key is None:
        return None
    if op.op_id in SDK_SCHEMAS:
        sdk: Mapping[str, Any] = SDK_SCHEMAS[op.op_id][key]
        return sdk
    content = op.spec["responses"][key]["content"]
    media = next(iter(content.values()))
    schema = _merge_all_of(_nullable(media["schema"]))
    if not schema["properties"]:
        return None
    object_form = isinstance(body, dict) and isinstance(body.get("result"), dict)
    if op.op_id == "queue-v2-messages-pull" and key == "200" and object_form:
        return _pull_object_schema(schema)
    return schema


def _response_media(op: Operation, status: int) -> str | None:
    if op.op_id in SDK_SCHEMAS:
        return "application/json"
    key = "200" if 200 <= status < 300 else "4XX"
    content = op.spec["responses"].get(key, {}).get("content", {})
    return next(iter(content), None)


def validate_exchange(exchange: Exchange) -> list[str]:
    """
    Check one exchange against its operation's schemas.

    Returns:
        Human-readable violations; empty when the exchange conforms.
    """
    found = find_operation(exchange.method, exchange.path)
    where = f"{exchange.method} {exchange.path} -> {exchange.status}"
    if found is None:
        return [] if exchange.status == 404 else [f"{where}: no such operation"]
    op, params = found
    problems: list[str] = []
    auth = exchange.request_headers.get("authorization", "")
    if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
        problems.append(f"{where}: no Bearer token")
    problems += _check_params(op, params, exchange.query, where)
    problems += _check_request(op, exchange, where)
    problems += _check_response(op, exchange, where)
    return problems


def _check_params(
    op: Operation, params: Mapping[str, str], query: Mapping[str, str], where: str
) -> list[str]:
    problems: list[str] = []
    for param in op.spec.get("parameters", []):
        source = params if param["in"] == "path" else query
        if param["name"] not in source:
            if param.get("required"):
                problems.append(f"{where}: missing parameter {param['name']}")
            continue
        value: Any = source[param["name"]]
        if param["schema"].get("type") == "number":
            try:
                value = float(value)
            except ValueError:
                problems.append(f"{where}: parameter {param['name']} is not a number")
                continue
        problems += _errors(param["schema"], value, f"{where} param {param['name']}")
    return problems


def _check_request(op: Operation, exchange: Exchange, where: str) -> list[str]:
    content_type = exchange.request_headers.get("content-type", "").split(";")[0].strip()
    if op.op_id in SDK_SCHEMAS:
        return _json_request(SDK_SCHEMAS[op.op_id]["request"], exchange, content_type, where)
    body_spec = op.spec.get("requestBody")
    if body_spec is None:
        return [f"{where}: unexpected request body"] if exchange.request_body else []
    if content_type == "multipart/form-data":
        schema = body_spec["content"].get(content_type)
        if schema is None:
            return [f"{where}: multipart body not accepted"]
        return _errors(_strict(schema["schema"]), _form_fields(exchange), f"{where} request")
    if "application/json" in body_spec["content"]:
        schema = _strict(_nullable(body_spec["content"]["application/json"]["schema"]))
        return _json_request(schema, exchange, content_type, where)
    # The raw-value KV PUT postdates the 2024 schema (SDK form): nothing to check.
    return []


def _json_request(
    schema: Mapping[str, Any], exchange: Exchange, content_type: str, where: str
) -> list[str]:
    if content_type != "application/json":
        return [f"{where}: request content type {content_type!r}, expected application/json"]
    try:
        body = exchange.request_json()
    except ValueError:
        return [f"{where}: request body is not JSON"]
    return _errors(schema, body, f"{where} request")


def _form_fields(exchange: Exchange) -> dict[str, str]:
    """Parse a multipart body into its field names and (text) values."""
    from werkzeug.formparser import parse_form_data
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(
        method="PUT",
        data=exchange.request_body,
        content_type=exchange.request_headers.get("content-type"),
    )
    _, form, files = parse_form_data(builder.get_environ())
    fields = {k: str(v) for k, v in form.items()}
    fields.update(dict.fromkeys(files, "<file>"))
    return fields


def _check_response(op: Operation, exchange: Exchange, where: str) -> list[str]:
    if exchange.status >= 500 or exchange.status < 200:
        return []
    media = _response_media(op, exchange.status)
    got = exchange.response_headers.get("content-type", "").split(";")[0].strip()
    if media is not None and got != media:
        return [f"{where}: response content type {got!r}, expected {media!r}"]
    if got != "application/json":
        return []
    try:
        body = exchange.response_json()
    except ValueError:
        return [f"{where}: response is not JSON"]
    schema = _response_schema(op, exchange.status, body)
    return [] if schema is None else _errors(schema, body, f"{where} response")

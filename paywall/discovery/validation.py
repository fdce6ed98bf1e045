"""Check an untrusted ``bazaar`` declaration before anything is cataloged from it.

The declaration arrives in a payment a stranger built (the buyer echoes the
seller's 402), so its JSON Schema is hostile input. :func:`check_declaration`
answers a :class:`Checked` declaration or a :class:`Refused` reason, never
raises, and bounds everything before jsonschema runs:

- size (:data:`DECLARATION_BYTES_MAX` serialized) and nesting
  (:data:`DECLARATION_DEPTH_MAX`), measured on the parsed value, so the
  validator's recursion stays far below the interpreter's limit;
- references: every ``$ref`` and ``$id`` must be a same-document fragment
  (``#…``), at most :data:`REFS_MAX` of them; the validator is given a
  registry that refuses to retrieve anything, so no reference, whatever its
  spelling, can make this process open a URL or a file;
- keywords that run a stranger's regular expression (``pattern``,
  ``patternProperties``) or jump dynamically (``$dynamicRef``,
  ``$recursiveRef``) are refused: Python's ``re`` has no time limit;
- ``$schema``, when present, must be draft 2020-12 (the spec's);
- then ``info`` must satisfy ``schema``, and the spec's own rules: an
  ``http`` input with one of the six methods (``bodyType`` only with a body
  method), or an ``mcp`` input with a ``toolName`` (what MCP allows a
  tool's name to be) and an ``inputSchema``;
- ``routeTemplate``, when present, is kept only if it passes the spec's rule
  (a ``/``-path of safe characters, no ``..`` and no ``://`` at any
  percent-encoding depth); otherwise it is dropped, not the declaration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import jsonschema
import referencing
import referencing.exceptions
from jsonschema.exceptions import SchemaError

__all__ = [
    "DECLARATION_BYTES_MAX",
    "DECLARATION_DEPTH_MAX",
    "REFS_MAX",
    "Checked",
    "Refused",
    "check_declaration",
    "clean_route_template",
]

DECLARATION_BYTES_MAX: Final = 16 * 1024
DECLARATION_DEPTH_MAX: Final = 12
REFS_MAX: Final = 8
TOOL_NAME_CHARS_MAX: Final = 128
# What MCP allows a tool's name to be: no escapes, spaces, bidi or look-alikes
# for a catalog reader to be shown, or to call.
_TOOL_NAME: Final = re.compile(rf"[A-Za-z0-9_.\-]{{1,{TOOL_NAME_CHARS_MAX}}}")
_DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
_METHODS: Final = frozenset({"GET", "HEAD", "DELETE", "POST", "PUT", "PATCH"})
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_BODY_TYPES: Final = frozenset({"json", "form-data", "text"})
_TRANSPORTS: Final = frozenset({"streamable-http", "sse"})
_FORBIDDEN: Final = frozenset({"pattern", "patternProperties", "$dynamicRef", "$recursiveRef"})
_REFERENCES: Final = frozenset({"$ref", "$id"})
# Keywords whose object's keys are names (of properties, definitions), not keywords.
_NAME_MAPS: Final = frozenset({"properties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose values are data, never a schema.
_DATA: Final = frozenset({"const", "enum", "default", "example", "examples"})
_ROUTE_TEMPLATE: Final = re.compile(r"/[a-zA-Z0-9_/:.\-~%]+")
_DECODE_PASSES_MAX: Final = 5


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a declaration is not cataloged (a snake_case reason and a line for people)."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Checked:
    """A declaration that passed: its ``info`` and ``schema`` as sent, and what it names."""

    info: dict[str, Any]
    schema: dict[str, Any]
    kind: str  # "http" or "mcp"
    method: str | None
    tool_name: str | None
    route_template: str | None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"info": self.info, "schema": self.schema}
        if self.route_template is not None:
            out["routeTemplate"] = self.route_template
        return out


def _refuse(*_args: Any) -> Any:
    raise referencing.exceptions.NoSuchResource("(retrieval is off)")


_NO_RETRIEVAL: Final = referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]


def _depth(value: Any, depth_max: int) -> int:
    """The nesting depth of a parsed JSON value, giving up past ``depth_max``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        node, level = stack.pop()
        if level > depth_max:
            return level
        deepest = max(deepest, level)
        if isinstance(node, Mapping):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


def _keywords(schema: Any) -> Iterator[tuple[str, Any]]:
    """Every (keyword, value) of a schema, skipping property names and data values."""
    stack: list[tuple[Any, bool]] = [(schema, False)]
    while stack:
        node, names = stack.pop()
        if isinstance(node, list):
            stack.extend((child, False) for child in node)
            continue
        if not isinstance(node, Mapping):
            continue
        for key, value in node.items():
            if names:
                stack.append((value, False))
                continue
            yield str(key), value
            if key in _DATA:
                continue
            stack.append((value, key in _NAME_MAPS))


def _schema_problem(schema: dict[str, Any]) -> Refused | None:
    declared = schema.get("$schema")
    if declared is not None and declared not in (_DRAFT, _DRAFT + "#"):
        return Refused("unsupported_schema_dialect", "schema must be JSON Schema draft 2020-12")
    refs = 0
    for keyword, value in _keywords(schema):
        if keyword in _FORBIDDEN:
            return Refused(
                "schema_keyword_refused", f"{keyword} is not accepted from a declaration"
            )
        if keyword in _REFERENCES:
            refs += 1
            if not isinstance(value, str) or not value.startswith("#"):
                return Refused(
                    "external_schema_reference", f"{keyword} must be a same-document fragment"
                )
    if refs > REFS_MAX:
        return Refused("too_many_references", f"at most {REFS_MAX} $ref/$id in a schema")
    return None


def _spec_problem(info: dict[str, Any]) -> Refused | None:
    given = info.get("input")
    if not isinstance(given, Mapping):
        return Refused("invalid_info", "info.input must be an object")
    kind = given.get("type")
    if kind == "http":
        method = given.get("method")
        if method not in _METHODS:
            return Refused("invalid_info", "info.input.method must be an HTTP method it can name")
        body_type = given.get("bodyType")
        if body_type is not None and (body_type not in _BODY_TYPES or method not in _BODY_METHODS):
            return Refused("invalid_info", "info.input.bodyType goes with POST, PUT or PATCH")
        return None
    if kind == "mcp":
        name = given.get("toolName")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            return Refused(
                "invalid_info",
                f"info.input.toolName must be 1 to {TOOL_NAME_CHARS_MAX} ASCII letters, digits, _ - .",
            )
        if not isinstance(given.get("inputSchema"), Mapping):
            return Refused("invalid_info", "info.input.inputSchema must be an object")
        transport = given.get("transport")
        if transport is not None and transport not in _TRANSPORTS:
            return Refused("invalid_info", "info.input.transport is not streamable-http or sse")
        return None
    return Refused("invalid_info", 'info.input.type must be "http" or "mcp"')


def clean_route_template(value: object) -> str | None:
    """``value`` if it is a safe ``routeTemplate``, else None (the concrete path is used)."""
    if not isinstance(value, str) or len(value) > 512 or not _ROUTE_TEMPLATE.fullmatch(value):
        return None
    decoded = value
    for _ in range(_DECODE_PASSES_MAX):
        again = unquote(decoded)
        if again == decoded:
            break
        decoded = again
    else:
        return None
    return None if ".." in decoded or "://" in decoded else value


def _validate(info: dict[str, Any], schema: dict[str, Any]) -> Refused | None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema, registry=_NO_RETRIEVAL)
        error = jsonschema.exceptions.best_match(validator.iter_errors(info))
    except SchemaError as exc:
        return Refused("invalid_schema", exc.message[:200])
    except RecursionError:
        return Refused("invalid_schema", "the schema refers to itself without end")
    except (referencing.exceptions.Unresolvable, jsonschema.exceptions.ValidationError) as exc:
        return Refused("invalid_schema", str(exc).splitlines()[0][:200])
    except Exception as exc:  # noqa: BLE001 - a stranger's schema must never stop a payment
        return Refused("invalid_schema", type(exc).__name__)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Refused("info_does_not_match_schema", f"{where}: {error.message[:160]}")
    return None


def check_declaration(declared: object) -> Checked | Refused:
    """Check one ``extensions.bazaar`` value; never raises, never fetches."""
    if not isinstance(declared, Mapping):
        return Refused("invalid_declaration", "the bazaar extension must be an object")
    if _depth(declared, DECLARATION_DEPTH_MAX) > DECLARATION_DEPTH_MAX:
        return Refused("declaration_too_deep", f"at most {DECLARATION_DEPTH_MAX} levels")
    try:
        size = len(json.dumps(declared, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError):
        return Refused("invalid_declaration", "the declaration is not plain JSON")
    if size > DECLARATION_BYTES_MAX:
        return Refused("declaration_too_large", f"at most {DECLARATION_BYTES_MAX} bytes")
    info, schema = declared.get("info"), declared.get("schema")
    if not isinstance(info, dict) or not isinstance(schema, dict):
        return Refused("invalid_declaration", "the declaration needs an info and a schema object")
    problem = _schema_problem(schema) or _spec_problem(info) or _validate(info, schema)
    if problem is not None:
        return problem
    given = info["input"]
    kind = given["type"]
    return Checked(
        info=info,
        schema=schema,
        kind=kind,
        method=given.get("method") if kind == "http" else None,
        tool_name=given.get("toolName") if kind == "mcp" else None,
        route_template=clean_route_template(declared.get("routeTemplate")),
    )

"""A hostile declaration is dropped and its payment still settles; nothing it names is fetched.

Real payments settle on the memory chain through the facilitator's HTTP app
with its SQLite catalog. Schemas with external ``$ref``s point at a real HTTP
server on 127.0.0.1 that counts every request it gets: it must get none. The
spec's soft-drop rules for ``serviceName``, ``tags`` and ``iconUrl`` are
checked field by field, and oversized or deep declarations are refused
without a 500.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farthing.paywall.discovery import Catalog, check_declaration, clean_service_metadata
from farthing.paywall.discovery.validation import Checked, Refused, clean_route_template
from tests.paywall.discovery.conftest import Market, call, facilitator_for


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Counting.hits.append(self.path)
        body = b'{"type": "object"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that records every request; yields its URL."""
    _Counting.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _declared(schema: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"info": info or {"input": {"type": "http", "method": "GET"}}, "schema": schema}


def _settle_and_list(
    market: Market, catalog: Catalog, **body: Any
) -> tuple[dict[str, Any], list[Any]]:
    app = facilitator_for(market, catalog)
    response = call(app, "POST", "/settle", json=market.body(**body))
    assert response.status_code == 200
    listed = call(app, "GET", "/discovery/resources").json()["items"]
    return response.json(), listed


@pytest.mark.parametrize(
    "where",
    [
        lambda url: {"$ref": f"{url}/schema.json"},
        lambda url: {"properties": {"input": {"$ref": f"{url}/input.json"}}},
        lambda url: {"$id": f"{url}/root", "$ref": "#"},
        lambda url: {"allOf": [{"$ref": "other.json"}]},
        lambda url: {"$defs": {"a": {"$ref": f"{url}/a"}}, "$ref": "#/$defs/a"},
    ],
)
def test_an_external_reference_is_never_fetched_and_the_payment_settles(
    market: Market, catalog: Catalog, recorder: str, where: Any
) -> None:
    answer, listed = _settle_and_list(market, catalog, declaration=_declared(where(recorder)))
    assert answer["success"] is True
    assert listed == []
    assert _Counting.hits == []


def test_a_reference_the_scan_cannot_see_still_fetches_nothing(recorder: str) -> None:
    # A $ref hidden where a schema keyword would read it: the registry retrieves nothing.
    schema = {"properties": {"input": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"$ref": "#/nope"}}}
    refused = check_declaration(_declared(schema))
    assert isinstance(refused, Refused)
    assert _Counting.hits == []


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"$ref": "#"}, "invalid_schema"),  # refers to itself without end
        ({"type": "object", "required": ["nothere"]}, "info_does_not_match_schema"),
        ({"type": 12}, "invalid_schema"),
        ({"properties": {"input": {"pattern": "(a+)+$"}}}, "schema_keyword_refused"),
        ({"$dynamicRef": "#x"}, "schema_keyword_refused"),
        ({"$schema": "http://json-schema.org/draft-04/schema#"}, "unsupported_schema_dialect"),
        ({"allOf": [{"$ref": "#/a"}] * 9, "a": {}}, "too_many_references"),
    ],
)
def test_a_bad_schema_is_dropped_with_a_reason(schema: dict[str, Any], reason: str) -> None:
    refused = check_declaration(_declared(schema))
    assert isinstance(refused, Refused) and refused.reason == reason


def test_property_names_and_examples_are_not_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {"pattern": {"type": "object"}, "$ref": {"type": "object"}},
        "examples": [{"$ref": "https://evil.example/"}],
    }
    assert not isinstance(check_declaration(_declared(schema)), Refused)


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        ({"input": {"type": "ftp"}}, "invalid_info"),
        ({"input": {"type": "http", "method": "TRACE"}}, "invalid_info"),
        ({"input": {"type": "http", "method": "GET", "bodyType": "json"}}, "invalid_info"),
        ({"input": {"type": "mcp", "inputSchema": {}}}, "invalid_info"),
        (
            {"input": {"type": "mcp", "toolName": "t", "inputSchema": {}, "transport": "ws"}},
            "invalid_info",
        ),
    ],
)
def test_the_spec_rules_on_info(info: dict[str, Any], reason: str) -> None:
    refused = check_declaration(_declared({"type": "object"}, info))
    assert isinstance(refused, Refused) and refused.reason == reason


def test_an_oversized_or_deep_declaration_is_refused_and_the_payment_settles(
    market: Market, catalog: Catalog
) -> None:
    big = _declared({"type": "object", "description": "x" * 20_000})
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(5):
        deep = {"properties": {"a": deep}}
    deep = {"not": deep}  # the declaration is 13 deep: within the API's bound, past the catalog's
    assert check_declaration(big) == Refused("declaration_too_large", "at most 16384 bytes")
    assert check_declaration(_declared(deep)).reason == "declaration_too_deep"  # type: ignore[union-attr]
    for declaration in (big, _declared(deep), "not an object", {"info": [], "schema": {}}):
        answer, listed = _settle_and_list(market, catalog, declaration=declaration)
        assert answer["success"] is True
        assert listed == []


def test_a_body_past_the_api_bounds_is_a_4xx_not_a_500(market: Market, catalog: Catalog) -> None:
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(8):
        deep = {"properties": {"a": deep}}
    app = facilitator_for(market, catalog)
    large = market.body(declaration=_declared({"description": "x" * 70_000}))
    assert call(app, "POST", "/settle", json=large).status_code == 413
    deeper = market.body(declaration=_declared(deep))
    assert call(app, "POST", "/settle", json=deeper).status_code == 400
    assert call(app, "GET", "/discovery/resources").json()["items"] == []


@pytest.mark.parametrize(
    ("resource", "kept"),
    [
        ({"serviceName": "Weather Co"}, {"serviceName": "Weather Co"}),
        ({"serviceName": ""}, {}),
        ({"serviceName": "x" * 33}, {}),
        ({"serviceName": "Caf\u00e9"}, {}),
        ({"serviceName": "bell\x07"}, {}),
        ({"serviceName": 7}, {}),
        (
            {"tags": ["a", "A", "", "b\n", "c", 3, "d", "e", "f", "g"]},
            {"tags": ["a", "c", "d", "e", "f"]},
        ),
        ({"tags": "weather"}, {}),
        ({"iconUrl": "https://cdn.example/icon.png"}, {"iconUrl": "https://cdn.example/icon.png"}),
        ({"iconUrl": "http://127.0.0.1/icon.png"}, {}),
        ({"iconUrl": "http://[::1]/icon.png"}, {}),
        ({"iconUrl": "http://localhost/icon.png"}, {}),
        ({"iconUrl": "http://%6cocalhost/icon.png"}, {}),
        ({"iconUrl": "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/i.png"}, {}),
        ({"iconUrl": "http://2130706433/icon.png"}, {}),
        ({"iconUrl": "http://0x7f000001/icon.png"}, {}),
        ({"iconUrl": "http://user@cdn.example/icon.png"}, {}),
        ({"iconUrl": "file:///etc/passwd"}, {}),
        ({"iconUrl": "data:image/png;base64,AAAA"}, {}),
        ({"iconUrl": "https://cdn.example/" + "a" * 2048}, {}),
        ({"iconUrl": "https://cdn.example/\x00"}, {}),
    ],
)
def test_service_metadata_is_soft_dropped_field_by_field(
    resource: dict[str, Any], kept: dict[str, Any]
) -> None:
    assert clean_service_metadata({"url": "https://x.example/", **resource}) == kept


def test_a_bad_field_is_dropped_and_the_rest_of_the_entry_kept(
    market: Market, catalog: Catalog
) -> None:
    resource = {"serviceName": "\x1b[31mRED", "tags": ["ok"], "iconUrl": "http://169.254.169.254/"}
    answer, listed = _settle_and_list(market, catalog, resource=resource)
    assert answer["success"] is True
    (item,) = listed
    assert "serviceName" not in item and "iconUrl" not in item
    assert item["tags"] == ["ok"]


@pytest.mark.parametrize(
    ("template", "kept"),
    [
        ("/users/:id", "/users/:id"),
        ("/users/../admin", None),
        ("/users/%2e%2e/admin", None),
        ("/users/%252e%252e/admin", None),
        ("/x/http:%2F%2Fevil.example", None),
        ("users/:id", None),
        ("/a b", None),
    ],
)
def test_route_templates(template: str, kept: str | None) -> None:
    assert clean_route_template(template) == kept


@pytest.mark.parametrize(
    "url",
    ["ftp://x.example/a", "https://user:pw@x.example/a", "/relative", "https://x.example/\x00", ""],
)
def test_a_bad_resource_url_is_not_cataloged(market: Market, catalog: Catalog, url: str) -> None:
    answer, listed = _settle_and_list(market, catalog, url=url)
    assert answer["success"] is True
    assert listed == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=30,
)
_KEYWORDS = st.sampled_from(
    ["type", "properties", "required", "$ref", "$id", "allOf", "anyOf", "not", "items",
     "additionalProperties", "const", "enum", "$defs", "minimum", "pattern", "if", "then"]
)  # fmt: skip
_SCHEMA = st.recursive(
    st.booleans() | st.dictionaries(_KEYWORDS, _JSON, max_size=3),
    lambda inner: st.dictionaries(_KEYWORDS, inner | st.lists(inner, max_size=3), max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    info=st.dictionaries(st.sampled_from(["input", "output"]), _JSON, max_size=2) | _JSON,
    schema=_SCHEMA | _JSON,
    template=st.none() | st.text(max_size=30),
)
def test_any_declaration_is_checked_without_raising(info: Any, schema: Any, template: Any) -> None:
    declared = {"info": info, "schema": schema, "routeTemplate": template}
    result = check_declaration(declared)
    assert isinstance(result, (Checked, Refused))

"""``/.well-known/x402`` lists exactly the site's paid routes, as pointers from its configured URL.

The site's configuration is a real TOML file read by ``load_config``; the
manifest is served by what ``farthing paywall serve`` builds around its app
(``well_known``) behind ``HostGuard``, driven through ``httpx.ASGITransport``.
Forged ``Host`` and ``X-Forwarded-Host`` headers never change a URL in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from farthing.paywall.discovery import SiteDiscovery
from farthing.paywall.site.config import ServeConfig, load_config
from farthing.paywall.site.serve import well_known
from farthing.web import HostGuard, allowed_hosts
from tests.paywall.discovery.conftest import call

CONFIG = """
upstream = "http://127.0.0.1:9"
public_url = "https://blog.example/"
[discovery]
name = "The Farthing Blog"
[[routes]]
path = "/api/weather"
methods = ["GET", "POST"]
price = "0.01 USDC"
description = "Weather for a city"
[[routes]]
path = "/posts/*"
price = "0.01 USDC"
description = "A post"
[routes.discovery]
listed_path = "/posts/first"
[[routes]]
path = "/api/**"
price = "0.01 USDC"
"""
LOCAL = {"Host": "localhost"}


async def _upstream(request: Request) -> PlainTextResponse:
    return PlainTextResponse("the upstream")


def _site(settings: ServeConfig) -> Any:
    upstream = Starlette(routes=[Route("/{path:path}", _upstream)])
    discovery = settings.discovery or SiteDiscovery()
    hosts = allowed_hosts("127.0.0.1", [settings.public_url])
    return HostGuard(well_known(upstream, settings, discovery), hosts=hosts)


@pytest.fixture
def settings(tmp_path: Path) -> ServeConfig:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG)
    return load_config(path)


def test_the_manifest_lists_exactly_the_paid_routes(settings: ServeConfig) -> None:
    response = call(_site(settings), "GET", "/.well-known/x402", headers={"Host": "blog.example"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == {
        "x402Version": 2,
        "kind": "resource-server",
        "name": "The Farthing Blog",
        "resources": [
            {"url": "https://blog.example/api/weather", "method": "GET", "description": "Weather for a city"},
            {"url": "https://blog.example/api/weather", "method": "POST", "description": "Weather for a city"},
            {"url": "https://blog.example/posts/first", "method": "GET", "description": "A post"},
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "localhost"},
        {"Host": "127.0.0.1", "X-Forwarded-Host": "evil.example"},
        {"Host": "blog.example", "Forwarded": "host=evil.example"},
    ],
)
def test_forged_host_headers_do_not_change_a_url(
    settings: ServeConfig, headers: dict[str, str]
) -> None:
    response = call(_site(settings), "GET", "/.well-known/x402", headers=headers)
    assert response.status_code == 200
    urls = {entry["url"] for entry in response.json()["resources"]}
    assert all(url.startswith("https://blog.example/") for url in urls)
    assert "evil" not in response.text


def test_a_host_that_is_not_ours_is_refused(settings: ServeConfig) -> None:
    response = call(_site(settings), "GET", "/.well-known/x402", headers={"Host": "evil.example"})
    assert response.status_code == 421
    assert "blog.example" not in response.text


def test_other_methods_and_paths(settings: ServeConfig) -> None:
    site = _site(settings)
    posted = call(site, "POST", "/.well-known/x402", headers={"Host": "blog.example"})
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
    head = call(site, "HEAD", "/.well-known/x402", headers={"Host": "blog.example"})
    assert head.status_code == 200 and head.content == b""
    other = call(site, "GET", "/.well-known/x402/extra", headers={"Host": "blog.example"})
    assert other.text == "the upstream"


def test_without_a_public_url_there_is_no_manifest(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.replace('public_url = "https://blog.example/"', ""))
    response = call(_site(load_config(path)), "GET", "/.well-known/x402", headers=LOCAL)
    assert response.status_code == 404
    assert response.json()["error"] == "no_manifest"


def test_the_manifest_can_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.replace("[discovery]\n", "[discovery]\nmanifest = false\n"))
    response = call(_site(load_config(path)), "GET", "/.well-known/x402", headers=LOCAL)
    assert response.text == "the upstream"

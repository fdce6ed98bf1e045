"""``farthing facilitator serve`` catalogs what it settles in its database, and the catalog outlives it.

The real CLI runs as a process on this module's anvil (``chain_env``) and is
talked to over HTTP on 127.0.0.1: a payment carrying a declaration settles,
the process is stopped, a new one on the same SQLite file lists the entry;
with no ``--database-url`` the catalog is a file in the data directory, and
``--no-catalog`` serves no discovery endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from farthing.paywall.discovery import RouteDiscovery, declare_http
from farthing.paywall.wire import PaymentRequirements, unb64_json
from tests.paywall.conftest import ChainEnv, sign_for
from tests.paywall.facilitator_process import private_file, running_facilitator

pytestmark = pytest.mark.anvil


def _body(env: ChainEnv, url: str) -> dict[str, Any]:
    requirements = PaymentRequirements(
        network=env.chain.network,
        asset=env.asset.address,
        amount=1_000,
        pay_to=env.merchant,
        max_timeout_seconds=300,
        token_name=env.asset.name,
        token_version=env.asset.version,
    )
    payload: dict[str, Any] = unb64_json(sign_for(requirements.to_wire(), env.new_payer()))
    payload["resource"] = {"url": url, "description": "Weather", "serviceName": "Weather Co"}
    payload["extensions"] = {"bazaar": declare_http("GET", RouteDiscovery())}
    return {
        "x402Version": 2,
        "paymentPayload": payload,
        "paymentRequirements": requirements.to_wire(),
    }


def test_the_catalog_survives_a_restart_of_the_process(chain_env: ChainEnv, tmp_path: Path) -> None:
    env = chain_env
    key = private_file(tmp_path / "relayer.key", env.relayer.private_key.get_secret_value())
    rpc = env.chain.rpc_url or ""
    scope = ("--asset", env.asset.address, "--database-url", f"sqlite:///{tmp_path / 'f.sqlite'}")
    with (
        running_facilitator(rpc, key, tmp_path / "data", *scope) as first,
        httpx.Client(base_url=first.url, timeout=60) as http,
    ):
        assert first.info["catalog"].endswith("f.sqlite")
        assert "bazaar" in http.get("/supported").json()["extensions"]
        settled = http.post("/settle", json=_body(env, "https://weather.example/now"))
        assert settled.json()["success"] is True, settled.text
    with (
        running_facilitator(rpc, key, tmp_path / "data", *scope) as again,
        httpx.Client(base_url=again.url, timeout=60) as http,
    ):
        items = http.get("/discovery/search", params={"query": "weather"}).json()["resources"]
        assert [(i["resource"], i["serviceName"]) for i in items] == [
            ("https://weather.example/now", "Weather Co")
        ]
        assert http.get("/discovery/resources", params={"limit": "1000"}).status_code == 400
    with running_facilitator(rpc, key, tmp_path / "data", "--asset", env.asset.address) as default:
        assert default.info["catalog"] == f"sqlite:///{tmp_path / 'data' / 'facilitator.sqlite'}"
    with (
        running_facilitator(
            rpc, key, tmp_path / "data", "--asset", env.asset.address, "--no-catalog"
        ) as off,
        httpx.Client(base_url=off.url, timeout=60) as http,
    ):
        assert off.info["catalog"] is None
        assert http.get("/discovery/resources").status_code == 404
        assert "bazaar" not in http.get("/supported").json()["extensions"]

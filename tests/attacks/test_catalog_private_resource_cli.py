"""``farthing facilitator serve`` reachable beyond this machine (here: another ``--allowed-host``) never catalogs a resource at a loopback or private host, so no catalog reader is steered into its own network; on loopback alone it lists local sites, as a dev setup needs.

The real CLI as a process on this module's anvil, talked to over HTTP on
127.0.0.1; payments carrying a declaration settle either way, only the
listing differs. (The finding and the agent's side:
tests/attacks/test_catalog_private_address.py.)
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.paywall.conftest import ChainEnv, chain_env
from tests.paywall.discovery.test_facilitator_cli import _body
from tests.paywall.facilitator_process import private_file, running_facilitator

__all__ = ["chain_env"]

pytestmark = pytest.mark.anvil


@pytest.mark.parametrize("reachable", [True, False], ids=["beyond-this-machine", "loopback-only"])
def test_only_a_local_facilitator_lists_local_resources(
    chain_env: ChainEnv, tmp_path: Path, reachable: bool
) -> None:
    env = chain_env
    key = private_file(tmp_path / "relayer.key", env.relayer.private_key.get_secret_value())
    args = ["--asset", env.asset.address, "--payee", env.merchant]
    if reachable:
        args += ["--allowed-host", "facilitator.example"]
    with (
        running_facilitator(env.chain.rpc_url or "", key, tmp_path / "data", *args) as served,
        httpx.Client(base_url=served.url, timeout=60) as http,
    ):
        for url in ("http://169.254.169.254/latest", "http://127.0.0.1:8080/admin"):
            assert http.post("/settle", json=_body(env, url)).json()["success"] is True
        assert http.post("/settle", json=_body(env, "https://weather.example/now")).json()[
            "success"
        ]
        public = {"https://weather.example/now"}
        local = {"http://169.254.169.254/latest", "http://127.0.0.1:8080/admin"}
        expected = public if reachable else public | local
        # A settlement is cataloged just after its answer is sent: wait for the last one.
        deadline = time.monotonic() + 30
        while True:
            listed = {i["resource"] for i in http.get("/discovery/resources").json()["items"]}
            if listed >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert listed == expected

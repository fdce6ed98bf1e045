"""``farthing paywall serve`` answers only its own host names, names only its configured origin in sign-ins, and sends one Server and one Date header.

Real processes on anvil: an upstream site under uvicorn on 127.0.0.1, then
``farthing paywall serve --config`` in front of it (one without a public URL,
one with), paid with Farthing's own signer. The Host header is forged the way
a hostile page's would arrive after DNS rebinding or through a shared proxy:
it is refused with 421 before anything is priced, so no sign-in challenge is
ever issued for another site, and without a public URL none is offered at all.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from farthing.paywall.edge.receipts import write_receipt_secret
from farthing.paywall.edge.sign_in import siwe_message
from farthing.wallet.signer import LocalSigner
from tests import zygote
from tests.conftest import cli_env, free_port, run_farthing
from tests.paywall.conftest import ChainEnv, challenge_of, inner_app, serve_in_thread, sign_for

pytestmark = pytest.mark.anvil

ARTICLE = "/articles/farthing"


@dataclass
class Served:
    url: str
    ready: dict[str, Any]
    process: subprocess.Popen[str]
    stderr: str = ""

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        _, err = self.process.communicate(timeout=15)
        return err


def write_config(env: ChainEnv, folder: Path, upstream: str, *, public_url: str | None) -> Path:
    """A serve config with an article route, a shared database and a shared receipt secret."""
    key = folder / "relayer.key"
    if not key.exists():
        key.write_text(env.chain.dev_accounts()[6].private_key.get_secret_value() + "\n")
        os.chmod(key, 0o600)
        write_receipt_secret(folder / "receipt.secret")
    lines = [
        f'upstream = "{upstream}"',
        f'pay_to = "{env.merchant}"',
        f'token = "{env.asset.address}"',
        f'rpc_url = "{env.chain.rpc_url}"',
        'key_file = "relayer.key"',
        f'database_url = "sqlite:///{folder / "payments.sqlite"}"',
        'receipt_secret_file = "receipt.secret"',
        *([f'public_url = "{public_url}"'] if public_url else []),
        "[[routes]]",
        'path = "/articles/*"',
        'price = "0.01 USDC"',
        'preview_fraction = "0.4"',
        'mime_type = "text/html"',
    ]
    config = folder / f"serve-{public_url is not None}.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def start_serve(config: Path, folder: Path, port: int, *extra: str) -> Served:
    process = zygote.spawn(
        [
            sys.executable, "-m", "farthing", "paywall", "serve", "--json",
            "--config", str(config), "--port", str(port), *extra,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(folder / "data"),
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"paywall serve did not start: {process.communicate(timeout=10)[1]}")
    ready = json.loads(line)
    return Served(ready["url"], ready, process)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_in_thread(inner_app()) as url:
        yield url


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-origin")


@pytest.fixture(scope="module")
def no_origin(chain_env: ChainEnv, upstream: str, folder: Path) -> Iterator[Served]:
    """``serve`` with no public URL: loopback names only, sign-in off."""
    config = write_config(chain_env, folder, upstream, public_url=None)
    served = start_serve(config, folder, free_port())
    try:
        yield served
    finally:
        served.stderr = served.stop()


@pytest.fixture(scope="module")
def with_origin(chain_env: ChainEnv, upstream: str, folder: Path) -> Iterator[Served]:
    """``serve`` with ``public_url`` and one extra allowed host name."""
    port = free_port()
    config = write_config(chain_env, folder, upstream, public_url=f"http://127.0.0.1:{port}")
    served = start_serve(config, folder, port, "--allowed-host", "shop.example")
    try:
        yield served
    finally:
        served.stop()


def signed_sign_in(info: dict[str, Any], signer: LocalSigner, network: str) -> str:
    payload = {**info, "address": signer.address, "chainId": network, "type": "eip191"}
    key = signer.private_key.get_secret_value()
    signature = Account.sign_message(encode_defunct(text=siwe_message(payload)), key).signature
    payload["signature"] = "0x" + signature.hex()
    return base64.b64encode(json.dumps(payload).encode()).decode()


def pay(client: httpx.Client, url: str, payer: LocalSigner) -> httpx.Response:
    unpaid = client.get(url)
    assert unpaid.status_code == 402
    header = sign_for(challenge_of(unpaid)["accepts"][0], payer)
    paid = client.get(url, headers={"PAYMENT-SIGNATURE": header})
    assert paid.status_code == 200, paid.text
    return paid


def test_a_forged_host_gets_no_challenge_and_cannot_replay_a_sign_in(
    chain_env: ChainEnv, no_origin: Served
) -> None:
    """Finding 3: a challenge fetched under ``Host: evil.example`` must never exist."""
    victim = chain_env.new_payer()
    url = no_origin.url + ARTICLE
    with httpx.Client(timeout=30.0) as client:
        pay(client, url, victim)
    with httpx.Client(timeout=30.0) as attacker:
        forged = attacker.get(url, headers={"Host": "evil.example"})
        assert forged.status_code == 421, forged.text
        assert forged.json()["error"] == "misdirected_request"
        assert "payment-required" not in forged.headers and "PAID-PART" not in forged.text
        # Even if the attacker had a victim's signature over its own site's challenge,
        # the replay under the forged Host is refused at the same door.
        declared = {
            "domain": "evil.example", "uri": "http://evil.example" + ARTICLE,
            "version": "1", "nonce": "0" * 32, "issuedAt": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        header = signed_sign_in(declared, victim, chain_env.chain.network)
        replay = attacker.get(url, headers={"Host": "evil.example", "SIGN-IN-WITH-X": header})
        assert replay.status_code == 421 and "PAID-PART" not in replay.text


def test_without_a_public_url_sign_in_is_not_offered_and_the_ready_line_says_so(
    chain_env: ChainEnv, no_origin: Served
) -> None:
    url = no_origin.url + ARTICLE
    with httpx.Client(timeout=30.0) as client:
        unpaid = client.get(url)
        localhost = client.get(url.replace("127.0.0.1", "localhost"))
    assert unpaid.status_code == 402 and localhost.status_code == 402
    # Only the bazaar declaration (discovery) is there: no sign-in is offered.
    assert set(challenge_of(unpaid).get("extensions", {})) == {"bazaar"}
    assert set(unpaid.json().get("extensions", {})) == {"bazaar"}
    assert no_origin.ready["signIn"] is False
    assert {"127.0.0.1", "localhost", "::1"} == set(no_origin.ready["hosts"])


def test_with_a_public_url_sign_in_names_it_whatever_the_host(
    chain_env: ChainEnv, with_origin: Served
) -> None:
    payer = chain_env.new_payer()
    url = with_origin.url + ARTICLE
    with httpx.Client(timeout=30.0) as client:
        pay(client, url, payer)
    with httpx.Client(timeout=30.0) as client:
        assert client.get(url, headers={"Host": "evil.example"}).status_code == 421
        # An operator's extra name is answered, but the challenge still names the origin.
        other = client.get(url, headers={"Host": "shop.example"})
        assert other.status_code == 402
        info = challenge_of(other)["extensions"]["sign-in-with-x"]["info"]
        assert info["domain"] == with_origin.url.removeprefix("http://")
        assert info["uri"] == url
        header = signed_sign_in(info, payer, chain_env.chain.network)
        signed_in = client.get(url, headers={"SIGN-IN-WITH-X": header})
    assert signed_in.status_code == 200 and signed_in.text.count("PAID-PART") == 2
    assert with_origin.ready["signIn"] is True
    assert "shop.example" in with_origin.ready["hosts"]


def test_the_proxy_sends_one_server_and_one_date_header(no_origin: Served) -> None:
    with httpx.Client(timeout=30.0) as client:
        free = client.get(no_origin.url + "/free")
        unpaid = client.get(no_origin.url + ARTICLE)
    for answer in (free, unpaid):
        assert len(answer.headers.get_list("server")) == 1, answer.headers
        assert len(answer.headers.get_list("date")) == 1, answer.headers
    assert free.text == "free"


def test_a_public_bind_without_a_public_url_is_one_line(tmp_path: Path) -> None:
    result = run_farthing(
        [
            "paywall", "serve", "--upstream", "http://127.0.0.1:9", "--host", "0.0.0.0",
            "--route", "GET /x 0.01 USDC", "--pay-to", "0x" + "ab" * 20,
        ],
        env=cli_env(tmp_path / "data"),
    )  # fmt: skip
    assert result.code != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--public-url" in lines[0], result.stderr


def test_init_writes_the_public_url_or_says_sign_in_waits_for_it(tmp_path: Path) -> None:
    from farthing.paywall.site.config import load_config

    base = [
        "paywall", "init", "--upstream", "http://127.0.0.1:4000", "--pay-to", "0x" + "ab" * 20,
        "--rpc-url", "http://127.0.0.1:8545", "--token", "0x" + "cd" * 20,
    ]  # fmt: skip
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_url = run_farthing(
        [*base, "--output", str(tmp_path / "a" / "f.toml"), "--public-url", "https://blog.example"],
        env=cli_env(tmp_path / "data"),
    )
    assert with_url.code == 0, with_url.stderr
    assert load_config(tmp_path / "a" / "f.toml").public_url == "https://blog.example"
    without = run_farthing(
        [*base, "--output", str(tmp_path / "b" / "f.toml")], env=cli_env(tmp_path / "data")
    )
    assert without.code == 0, without.stderr
    assert load_config(tmp_path / "b" / "f.toml").public_url is None
    assert "public_url" in without.stdout and "sign in" in without.stdout

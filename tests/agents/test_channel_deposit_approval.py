"""A channel deposit is approved like a payment and bounded by the policy's withdraw delay, through real processes.

A module anvil with our escrow, ``farthing paywall serve --config`` selling
``/api/**`` through ``batch-settlement`` only at 0.001 USDC, and the agent as
``farthing agent fetch`` processes under the default policy (a person approves
anything above 0.10 USDC). A person answers with ``farthing agent approvals
approve|deny``. A seller asking for an 8 USDC deposit waits for that person:
denied, nothing moves; approved, exactly 8 USDC (the smallest deposit the
seller accepts) moves. A 0.10 USDC deposit needs nobody. A seller whose
withdraw delay is longer than ``channel_withdraw_delay_max_s`` (1 day unless
``agent policy set`` says otherwise) is refused before anything is reserved.
The deposit planner's choice is checked directly too.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farthing.agents.channels.deposits import plan_deposit
from farthing.agents.policy import SpendPolicy
from farthing.agents.settings import AgentSettings
from farthing.paywall.schemes.batch_settlement.extras import BatchExtra
from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.wallet.signer import LocalSigner
from tests import zygote
from tests.conftest import cli_env, run_farthing
from tests.paywall.conftest import ChainEnv, chain_env, inner_app, serve_in_thread
from tests.paywall.test_serve_channels import _config, _private, _serving

__all__ = ["chain_env"]

FUNDS = 25_000_000
DAY_S = 24 * 3600


def _site(min_deposit: str, withdraw_delay_s: int) -> str:
    return f"""
[[routes]]
path = "/api/**"
price = "0.001 USDC"
schemes = ["batch-settlement"]

[channels]
receiver_authorizer_key_file = "authorizer.key"
withdraw_delay_s = {withdraw_delay_s}
min_deposit = "{min_deposit}"
"""


@pytest.fixture(scope="module")
def channel_env(chain_env: ChainEnv) -> ChainEnv:
    place_channel_contracts(chain_env.chain)
    return chain_env


@contextlib.contextmanager
def _site_serving(env: ChainEnv, tmp_path: Path, site: str) -> Iterator[tuple[str, Path, str]]:
    """The hostile site as a process, and a funded agent wallet: (site url, agent dir, address)."""
    _private(tmp_path / "authorizer.key", LocalSigner.generate().private_key.get_secret_value())
    _private(tmp_path / "relayer.key", env.chain.dev_accounts()[8].private_key.get_secret_value())
    config = _config(
        tmp_path, rpc_url=env.chain.rpc_url or "", token=env.asset.address, pay_to=env.merchant,
        extra=site,
    )  # fmt: skip
    agent_dir = tmp_path / "agent"
    wallet = run_farthing(["wallet", "new", "--json"], env=cli_env(agent_dir))
    assert wallet.code == 0, wallet.stderr
    address = str(wallet.json()["address"])
    assert env.token.mint(address, FUNDS, sender=env.owner).ok
    with (
        serve_in_thread(inner_app()) as upstream,
        _serving(config, upstream, tmp_path / "data") as (ready, _),
    ):
        yield str(ready["url"]), agent_dir, address


def _chain_args(env: ChainEnv) -> list[str]:
    return ["--rpc-url", env.chain.rpc_url or "", "--token", env.asset.address]


def _fetch(url: str, env: ChainEnv, agent_dir: Path, answer: str | None) -> tuple[Any, str]:
    """``agent fetch --json``; when it waits for a person, ``agent approvals ANSWER ID``."""
    args = [
        sys.executable, "-m", "farthing", "agent", "fetch", url, "--json", *_chain_args(env),
        "--max-price", "10", "--budget", "20",
    ]  # fmt: skip
    process = zygote.spawn(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(agent_dir)
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            asked = re.match(r"approval (\d+): .* waits for a person", line)
            if asked is None:
                continue
            if answer is None:
                process.kill()
                continue
            decided = run_farthing(
                ["agent", "approvals", answer, asked.group(1)], env=cli_env(agent_dir)
            )
            lines.append(f"[{answer}: {decided.code} {decided.stderr.strip()}]\n")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    reader.join(timeout=10)
    assert process.stdout is not None and process.stderr is not None
    out = process.stdout.read()
    process.stdout.close()
    process.stderr.close()
    err = "".join(lines)
    try:
        return json.loads(out), err
    except json.JSONDecodeError:
        return {"raw": out}, err


@pytest.mark.anvil
def test_a_large_deposit_waits_for_a_person_denied_moves_nothing_approved_moves_the_minimum(
    channel_env: ChainEnv, tmp_path: Path
) -> None:
    env = channel_env
    with _site_serving(env, tmp_path, _site("8 USDC", 3600)) as (url, agent_dir, address):
        denied, err = _fetch(f"{url}/api/data?n=1", env, agent_dir, "deny")
        assert "waits for a person" in err, err
        assert (denied.get("outcome"), denied.get("reason")) == ("not_paid", "approval_denied"), (
            denied,
            err,
        )
        assert env.token.balance_of(address) == FUNDS

        approved, err = _fetch(f"{url}/api/data?n=2", env, agent_dir, "approve")
        assert "waits for a person" in err, err
        assert approved.get("outcome") == "paid", (approved, err)
        # The smallest deposit the seller accepts that covers the buy: 8 USDC, not more.
        assert env.token.balance_of(address) == FUNDS - 8_000_000

        # The channel now holds the money: the next buy is a voucher, nobody is asked.
        again, err = _fetch(f"{url}/api/data?n=3", env, agent_dir, None)
        assert "waits for a person" not in err, err
        assert again.get("outcome") == "paid", (again, err)
        assert env.token.balance_of(address) == FUNDS - 8_000_000

        listed = run_farthing(
            ["agent", "approvals", "list", "--status", "all", "--json"], env=cli_env(agent_dir)
        )
        assert listed.code == 0, listed.stderr
        assert "8000000" in listed.stdout.replace("_", ""), listed.stdout


@pytest.mark.anvil
def test_a_long_withdraw_delay_is_refused_and_a_deposit_at_the_threshold_needs_nobody(
    channel_env: ChainEnv, tmp_path: Path
) -> None:
    env = channel_env
    with _site_serving(env, tmp_path, _site("0.1 USDC", 30 * DAY_S)) as (url, agent_dir, address):
        refused, err = _fetch(f"{url}/api/data?n=1", env, agent_dir, None)
        assert "waits for a person" not in err, err
        assert refused.get("reason") == "channel_withdraw_delay_too_long", (refused, err)
        assert env.token.balance_of(address) == FUNDS

        shown = run_farthing(["agent", "policy", "show", *_chain_args(env)], env=cli_env(agent_dir))
        assert shown.code == 0, shown.stderr
        assert "channel withdraw delay at most" in shown.stdout and "86400 s" in shown.stdout
        bad = run_farthing(
            ["agent", "policy", "set", "--channel-withdraw-delay-max-s", "-1", *_chain_args(env)],
            env=cli_env(agent_dir),
        )
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert bad.code != 0 and "Traceback" not in bad.stderr, bad.stderr
        assert len(lines) == 1 and "channel_withdraw_delay_max_s" in lines[0], bad.stderr
        changed = run_farthing(
            ["agent", "policy", "set", "--channel-withdraw-delay-max-s", str(30 * DAY_S),
             "--json", *_chain_args(env)],
            env=cli_env(agent_dir),
        )  # fmt: skip
        assert changed.code == 0, changed.stderr
        assert changed.json()["channel_withdraw_delay_max_s"] == 30 * DAY_S

        paid, err = _fetch(f"{url}/api/data?n=2", env, agent_dir, None)
        assert "waits for a person" not in err, err
        assert paid.get("outcome") == "paid", (paid, err)
        # 0.10 USDC, at the threshold, not above it: no person was needed.
        assert env.token.balance_of(address) == FUNDS - 100_000


def _extra(withdraw_delay_s: int = 3600, min_deposit: int | None = None) -> BatchExtra:
    return BatchExtra(
        receiver_authorizer="0x" + "11" * 20,
        withdraw_delay_s=withdraw_delay_s,
        name="USD Coin",
        version="2",
        min_deposit=min_deposit,
    )


def _plan(policy: SpendPolicy, *, price: int, extra: BatchExtra | None = None) -> int | str:
    settings = AgentSettings(channel_deposit_multiple=20, channel_deposit_max=10_000_000)
    return plan_deposit(policy, settings, extra or _extra(), price=price, missing=price)


def test_the_deposit_multiple_never_passes_the_approval_threshold_on_its_own() -> None:
    asking = SpendPolicy(approval_above=100_000)
    assert _plan(asking, price=1_000) == 20_000  # 20 x price, below the threshold
    assert _plan(asking, price=10_000) == 100_000  # 20 x price, cut to the threshold
    assert _plan(SpendPolicy(), price=10_000) == 200_000  # nobody is asked anyway
    assert _plan(asking, price=200_000) == 200_000  # the purchase itself: a person decides
    # The seller's floor: the smallest deposit it accepts, a person decides.
    assert _plan(asking, price=1_000, extra=_extra(min_deposit=8_000_000)) == 8_000_000
    too_long = _extra(withdraw_delay_s=24 * 3600 + 1)
    assert _plan(asking, price=1_000, extra=too_long) == "channel_withdraw_delay_too_long"
    bound = SpendPolicy(approval_above=100_000, channel_withdraw_delay_max_s=30 * 24 * 3600)
    assert _plan(bound, price=1_000, extra=too_long) == 20_000

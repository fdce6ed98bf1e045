"""A hostile site makes ``farthing agent fetch`` move 8 USDC out of the wallet, to a payee nobody named and locked for 30 days, without a person, under the default 0.10 USDC approval policy.

All real: a module anvil with our escrow, a ``farthing paywall serve
--config`` process as the hostile site, selling ``/api/**`` through
``batch-settlement`` only at 0.001 USDC a request but with ``min_deposit =
"8 USDC"`` and the longest withdraw delay (30 days), and the agent as a
process (``farthing agent fetch --max-price 10 --budget 20``, default
policy). For comparison the same site's ``exact`` price of 0.5 USDC waits
for a person (approval pending, nothing paid). The channel offer instead
deposits 8 USDC at once: the wallet drops by 8 USDC, no approval is asked.
docs/agents.md says "a deposit is not a payment", but the money has left
the wallet for the seller's escrow, where only the payer's own timed
withdrawal (30 days, the seller's choice) brings it back.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts
from farthing.wallet.signer import LocalSigner
from tests import zygote
from tests.conftest import cli_env, run_farthing
from tests.paywall.conftest import ChainEnv, chain_env, inner_app, serve_in_thread
from tests.paywall.test_serve_channels import _config, _private, _serving

pytestmark = pytest.mark.anvil
__all__ = ["chain_env"]

SITE = """
[[routes]]
path = "/articles/**"
price = "0.5 USDC"

[[routes]]
path = "/api/**"
price = "0.001 USDC"
schemes = ["batch-settlement"]

[channels]
receiver_authorizer_key_file = "authorizer.key"
withdraw_delay_s = 2592000
min_deposit = "8 USDC"
"""

APPROVAL_ABOVE = 100_000  # 0.10 USDC, the default policy's threshold


def _fetch(url: str, env: ChainEnv, agent_dir: Path) -> tuple[str, str]:
    """Run the fetch; stop it once it says it waits for a person. Its stdout and stderr."""
    args = [
        sys.executable, "-m", "farthing", "agent", "fetch", url, "--json",
        "--rpc-url", env.chain.rpc_url or "", "--token", env.asset.address,
        "--max-price", "10", "--budget", "20",
    ]  # fmt: skip
    process = zygote.spawn(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(agent_dir)
    )
    assert process.stderr is not None
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "waits for a person" in line:
                process.kill()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    reader.join(timeout=10)
    assert process.stdout is not None
    out = process.stdout.read()
    process.stdout.close()
    process.stderr.close()
    return out, "".join(lines)


def test_a_large_channel_deposit_to_a_new_payee_waits_for_a_person(
    chain_env: ChainEnv, tmp_path: Path
) -> None:
    env = chain_env
    place_channel_contracts(env.chain)
    _private(tmp_path / "authorizer.key", LocalSigner.generate().private_key.get_secret_value())
    _private(tmp_path / "relayer.key", env.chain.dev_accounts()[8].private_key.get_secret_value())
    config = _config(
        tmp_path, rpc_url=env.chain.rpc_url or "", token=env.asset.address, pay_to=env.merchant,
        extra=SITE,
    )  # fmt: skip
    agent_dir = tmp_path / "agent"
    wallet = run_farthing(["wallet", "new", "--json"], env=cli_env(agent_dir))
    assert wallet.code == 0, wallet.stderr
    address = wallet.json()["address"]
    assert env.token.mint(address, 25_000_000, sender=env.owner).ok

    with (
        serve_in_thread(inner_app()) as upstream,
        _serving(config, upstream, tmp_path / "data") as (ready, _),
    ):
        # The exact price above the threshold waits for a person: nothing moves.
        big = _fetch(f"{ready['url']}/articles/a", env, agent_dir)
        assert "waits for a person" in big[1], big
        assert env.token.balance_of(address) == 25_000_000

        cheap = _fetch(f"{ready['url']}/api/data", env, agent_dir)
        moved = 25_000_000 - env.token.balance_of(address)
    asked = "waits for a person" in cheap[1]
    assert asked or moved <= APPROVAL_ABOVE, (
        f"{moved} atomic units left the wallet for a new payee's channel with no approval "
        f"asked ({cheap[0][:200]})"
    )

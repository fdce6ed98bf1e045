"""``farthing demo``: the end-to-end run on embedded defaults.

The full demo (an agent buying articles from a paywalled blog) arrives with the
agents issue. Until then it shows what exists, on the in-process chain with no
other process: it deploys the stablecoin and the batch settler, funds an agent
wallet, has the agent sign EIP-3009 payment authorizations to a merchant,
checks them with the fast verify path, settles them in one batch (one of them
a deliberate replay, which the token refuses) and prints the balances.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from farthing.console import emit_json, out_console

__all__ = ["app"]

app = typer.Typer(add_completion=False)

_PAYMENTS = ("0.10", "0.25", "0.05")


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line for scripts.")] = False,
) -> None:
    """Run the end-to-end demo on embedded defaults (in-process chain)."""
    # Imported here so `farthing --help` does not pay for web3's import.
    from farthing.wallet import (
        BatchSettler,
        LocalSigner,
        MemoryChain,
        Stablecoin,
        Wallet,
        deploy_batch_settler,
        deploy_stablecoin,
        verify_authorization_signature,
    )

    started = time.perf_counter()

    def step(message: str) -> None:
        if not as_json:
            out_console.print(f"[dim]{time.perf_counter() - started:5.2f}s[/dim] {message}")

    step("starting the in-process chain (py-evm)")
    chain = MemoryChain()
    operator = chain.dev_accounts()[0].signer()
    asset = deploy_stablecoin(chain, sender=operator)
    token = Stablecoin(chain, asset)
    token.configure_minter(operator.address, sender=operator)
    settler = BatchSettler(chain, deploy_batch_settler(chain, sender=operator))
    step(f"deployed {asset.symbol} at {asset.address} and a batch settler on {chain.network}")

    agent = Wallet(LocalSigner.generate(), chain, asset)
    merchant = LocalSigner.generate().address
    budget = asset.parse("1")
    token.mint(agent.address, budget, sender=operator)
    step(f"funded agent {agent.address} with {asset.format(budget)}")

    signed = [agent.authorize(merchant, asset.parse(price)) for price in _PAYMENTS]
    for authorization in signed:
        verified = verify_authorization_signature(authorization, agent.address)
        if not verified.valid:  # a fresh signature that fails is a bug, not a result
            raise RuntimeError(f"fresh authorization failed verification: {verified.reason}")
    step(f"agent signed {len(signed)} authorizations; all verified (fast path)")

    # The last item replays the first: the token settles it once, never twice.
    batch = settler.settle(asset, [*signed, signed[0]], sender=operator)
    step(f"settled {batch.settled_count} of {len(batch.items)} in one transaction {batch.tx.tx_hash}")

    spent = budget - agent.balance().atomic
    received = token.balance_of(merchant)
    refused = [item.reason for item in batch.items if not item.ok]
    if as_json:
        emit_json(
            {
                "chain": "memory",
                "network": chain.network,
                "payments": batch.settled_count,
                "refused": refused,
                "spent_atomic": spent,
                "merchant_received_atomic": received,
                "budget_atomic": budget,
            }
        )
        return
    table = Table("payment", "amount", "outcome")
    for item, price in zip(batch.items, [*_PAYMENTS, _PAYMENTS[0]], strict=True):
        outcome = "settled" if item.ok else f"refused: {item.reason}"
        table.add_row(f"#{item.index + 1}", f"{price} {asset.symbol}", outcome)
    out_console.print(table)
    out_console.print(
        f"agent spent {asset.format(spent)} of {asset.format(budget)}; "
        f"merchant received {asset.format(received)}"
    )
    out_console.print(
        "The paywall, the ledger and the paying agent arrive with later issues; "
        "see README.md."
    )

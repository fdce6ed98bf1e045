"""The ``farthing demo`` command: its options, its progress lines and what it prints at the end."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from farthing.console import emit_json, fail, out_console
from farthing.demo.run import DEMO_BUDGET, DEMO_SCHEMES, run_demo

__all__ = ["app", "demo"]

app = typer.Typer(add_completion=False)


@app.command()
def demo(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line for scripts.")
    ] = False,
    chain_url: Annotated[
        str | None,
        typer.Option(
            "--chain-url", help="Run on this JSON-RPC chain (anvil) instead of in-process."
        ),
    ] = None,
    budget: Annotated[
        str, typer.Option("--budget", help="The agent's budget for the task, in USDC.")
    ] = DEMO_BUDGET,
    llm_url: Annotated[
        str | None,
        typer.Option(
            "--llm-url", help="An OpenAI-compatible (vLLM) base URL for the agent's brain."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="The model name the server serves.")
    ] = None,
    scheme: Annotated[
        str,
        typer.Option(
            "--scheme",
            help="How articles are paid: exact (a transfer each) or batch-settlement "
            "(one deposit, a voucher each).",
        ),
    ] = "exact",
    mcp: Annotated[
        bool,
        typer.Option(
            "--mcp",
            help="Over MCP: the agent finds the blog in a facilitator's catalog and pays "
            "its fetch tool.",
        ),
    ] = False,
) -> None:
    """Run the end-to-end demo: an agent pays a paywalled blog, then the books are reconciled."""
    if (llm_url is None) != (model is None):
        fail("pass --llm-url and --model together")
    if scheme not in DEMO_SCHEMES:
        fail(f"--scheme must be one of {', '.join(DEMO_SCHEMES)}")
    if mcp and scheme != "exact":
        fail("--mcp sells by exact only: leave --scheme out")
    started = time.perf_counter()

    def step(message: str) -> None:
        if not as_json:
            out_console.print(f"[dim]{time.perf_counter() - started:5.2f}s[/dim] {message}")

    if mcp:
        from farthing.demo.mcp import run_mcp_demo

        run = run_mcp_demo
    else:
        run = run_demo
    result = run(
        step,
        chain_url=chain_url,
        budget=budget,
        llm_url=llm_url,
        model=model,
        started=started,
        scheme=scheme,
    )
    if as_json:
        summary: dict[str, Any] = {
            "payments": len(result["report"].bought),
            "skipped": len(result["report"].skipped),
            "spent_atomic": result["report"].spent,
            "budget_atomic": result["report"].budget,
            "ledger_balanced": result["balanced"],
            "reconciliation_breaks": result["breaks"],
            "chain": result["chain"],
            "scheme": scheme,
            "onchain_tx": result["onchain_tx"],
        }
        if mcp:
            summary.update(result["mcp"])
        emit_json(summary)
        return
    from farthing.agents.render import render_report

    render_report(out_console, result["report"], result["asset"])
    asset = result["asset"]
    if mcp:
        out_console.print(
            f"Found through the facilitator's catalog: the {result['mcp']['tool']} tool at "
            f"{result['mcp']['server']}; the agent's wallet paid "
            f"{asset.format(result['mcp']['agent_paid_onchain_atomic'])} on chain.",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    if scheme == "exact":
        out_console.print(
            f"Merchant revenue in its own books: {asset.format(result['revenue'])} "
            f"from {result['revenue_count']} payment(s)"
            + (", the first reader's among them." if mcp else ".")
        )
    else:
        out_console.print(
            f"Merchant earned {asset.format(result['revenue'])} through the channel "
            f"({result['revenue_count']} voucher(s)); claimed and settled on chain: "
            f"{asset.format(result['settled'])}. The unspent deposit stays in escrow, "
            "the agent's to refund or withdraw."
        )
    out_console.print(
        f"On-chain transactions for the purchases and their settlement: {result['onchain_tx']}."
    )
    verdict = "balanced, audit log verified" if result["balanced"] else "[red]NOT balanced[/red]"
    out_console.print(
        f"Reconciliation with the chain: {result['breaks']} break(s) across "
        f"{result['payments_checked']} booked transfer(s) in blocks {result['blocks']}; "
        f"the agent's ledger is {verdict}."
    )
    if result["last_paid_s"] is not None:
        out_console.print(
            f"Last paid article {result['last_paid_s']:.2f}s after the command started."
        )
    _dashboard_hint(Path(result["books_dir"]))


def _dashboard_hint(books: Path) -> None:
    """The command that opens the run's books: the agent's and the merchant's are separate."""

    def url(name: str) -> str:
        return shlex.quote(f"sqlite:///{books / name}")

    out_console.print(
        "See it in the dashboard: farthing dashboard "
        f"--database-url {url('agent.sqlite')} "
        f"--merchant-database-url {url('merchant.sqlite')} "
        f"--paywall-database-url {url('paywall.sqlite')}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )

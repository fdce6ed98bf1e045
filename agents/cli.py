"""``farthing agent``: run a paying agent, fetch or price one URL, and look after its books.

::

    farthing agent run --task TEXT --budget AMOUNT [--url URL]... [--llm-url URL --model NAME]
    farthing agent run --task TEXT --budget AMOUNT --mcp MCP_URL...   # an MCP server's tools
    farthing agent fetch URL [--max-price AMOUNT] [--task-id ID --budget AMOUNT]
    farthing agent call MCP_URL TOOL [--args JSON] [--max-price AMOUNT]  # farthing.agents.mcp.cli
    farthing agent price URL
    farthing agent discover QUERY [--facilitator URL] [--max-price AMOUNT]   # the catalog
    farthing agent status [--task-id ID]
    farthing agent resolve                      # possible spend, then reconcile with the chain
    farthing agent approvals list|approve ID|deny ID
    farthing agent policy show|set ...

Where the wallet, chain and books come from is described in
``farthing.agents.workspace`` (the local dev chain, ``~/.farthing``). Every
refusal is one line on stderr with a non-zero exit code; ``--json`` prints one
line on stdout. The key and its passphrase are never printed.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

# The options both command modules take are defined once, in admin_cli.
from farthing.agents.admin_cli import (
    BudgetOpt,
    DatabaseOpt,
    JsonOpt,
    MaxPriceOpt,
    NetworkOpt,
    PassFileOpt,
    PayerAgentOpt,
    PayerDataDirOpt,
    RpcOpt,
    TaskIdOpt,
    TokenOpt,
    WalletOpt,
    approvals_app,
    open_from_options,
    policy_app,
)
from farthing.agents.channels.cli import channels_app
from farthing.agents.discovery import discover_command
from farthing.agents.mcp.cli import call as mcp_call
from farthing.agents.workspace import Workspace
from farthing.console import emit_json, err_console, fail, out_console
from farthing.ledger.ids import format_transfer_id

if TYPE_CHECKING:
    from farthing.agents.approvals import Approval

__all__ = ["app"]

app = typer.Typer(
    help="Run paying agents under a durable spend policy, and look after their books.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(approvals_app, name="approvals")
app.add_typer(policy_app, name="policy")
app.add_typer(channels_app, name="channels")
app.command("call")(mcp_call)
app.command("discover")(discover_command)


_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')]+")


def tell_approval(approval: Approval, timeout_s: int) -> None:
    """Say on stderr, where a person watching reads it, that a payment waits for them."""
    err_console.print(
        f"approval {approval.id}: {approval.price()} to {approval.pay_to} for "
        f"{approval.resource} waits for a person, at most {timeout_s} s. Run "
        f"`farthing agent approvals approve {approval.id}` (or `deny {approval.id}`).",
        markup=False,
        highlight=False,
    )


@app.command()
def run(
    task: Annotated[str, typer.Option("--task", help="What the agent should find out.")],
    budget: Annotated[
        str, typer.Option("--budget", help="The most this task may spend, e.g. 0.05 (USDC).")
    ],
    url: Annotated[
        list[str] | None,
        typer.Option("--url", help="Where to start (repeatable); URLs in the task count too."),
    ] = None,
    llm_url: Annotated[
        str | None,
        typer.Option(
            "--llm-url", help="vLLM (OpenAI-compatible) base URL, e.g. http://127.0.0.1:8000/v1."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="The model name the server serves.")
    ] = None,
    task_id: Annotated[
        str | None, typer.Option("--task-id", help="Reuse a task id (its budget must match).")
    ] = None,
    mcp: Annotated[
        list[str] | None,
        typer.Option("--mcp", help="Use this MCP server's tools instead of pages (repeatable)."),
    ] = None,
    discover_query: Annotated[
        str | None,
        typer.Option(
            "--discover",
            help="Start from what the facilitator's catalog sells for this query, the cheaper "
            "of two sellers of the same thing.",
        ),
    ] = None,
    facilitator: Annotated[
        str,
        typer.Option(
            "--facilitator", envvar="FARTHING_FACILITATOR_URL", help="The catalog for --discover."
        ),
    ] = "http://127.0.0.1:8402",
    data_dir: PayerDataDirOpt = None,
    agent_id: PayerAgentOpt = None,
    wallet: WalletOpt = None,
    passphrase_file: PassFileOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the agent on a task: it prices pages (or an MCP server's tools), buys what is worth it within budget, and answers."""
    from farthing.agents.brain import Brain, LlmBrain, RuleBrain
    from farthing.agents.render import render_report, report_json
    from farthing.agents.runner import AgentRun, RunReport
    from farthing.agents.tools import AgentToolkit, Task

    if (llm_url is None) != (model is None):
        fail("pass --llm-url and --model together (or neither, for the rule brain)")
    starts = list(dict.fromkeys([*(url or []), *_URL_IN_TEXT.findall(task)]))
    if mcp and url:
        fail("give the agent pages (--url) or MCP servers (--mcp), not both", exit_code=2)
    if mcp and discover_query is not None:
        fail("--discover starts from pages; with --mcp, name the servers alone", exit_code=2)
    if mcp:
        from farthing.agents.mcp.session import check_mcp_url

        for server in mcp:
            problem = check_mcp_url(server)
            if problem is not None:
                fail(f"--mcp {server}: {problem}", exit_code=2)
    if not starts and not mcp and discover_query is None:
        fail("give the agent somewhere to start: --url URL, --discover QUERY, or a URL in the task")
    started = time.perf_counter()

    def progress(message: str) -> None:
        if not as_json:
            out_console.print(f"[dim]{time.perf_counter() - started:5.2f}s[/dim] {message}")

    workspace = open_from_options(
        data_dir, agent_id, wallet, network, rpc_url, token, database_url, passphrase_file
    )
    try:
        asset = workspace.target.asset
        budget_atomic = asset.parse(budget)
        the_task = Task(task_id or f"task-{uuid.uuid4().hex[:8]}", task[:2000], budget_atomic)
        workspace.books.start_task(the_task.task_id, the_task.budget, the_task.text)
        brain: Brain
        if llm_url is not None and model is not None:
            from farthing.inference import InferenceSettings, chat_model

            brain = LlmBrain(
                chat_model(llm_url, model=model, settings=InferenceSettings()), model_name=model
            )
        else:
            brain = RuleBrain(relevance_min=workspace.settings.relevance_min)
        progress(
            f"paying from {workspace.payer.address} (agent id {workspace.settings.agent_id!r})"
        )
        workspace.payer.on_approval = tell_approval
        passed_over: list[Any] = []
        listed: dict[str, int] = {}
        if discover_query is not None:
            from farthing.agents.discovery import discovered_starts

            chosen = asyncio.run(
                discovered_starts(facilitator, discover_query, asset, progress=progress)
            )
            if chosen.error is not None and not starts:
                fail(chosen.error)
            starts = list(dict.fromkeys([*starts, *chosen.urls]))
            passed_over, listed = chosen.passed_over, chosen.listed

        async def go() -> RunReport:
            try:
                if mcp:
                    from farthing.agents.mcp.runner import McpRun

                    servers = McpRun(
                        workspace.payer, the_task, brain, servers=mcp, progress=progress
                    )
                    return await servers.run()
                async with AgentToolkit(workspace.payer, the_task) as toolkit:
                    return await AgentRun(
                        toolkit,
                        brain,
                        start_urls=starts,
                        progress=progress,
                        passed_over=passed_over,
                        listed=listed,
                    ).run()
            finally:
                await brain.aclose()

        report = asyncio.run(go())
    finally:
        workspace.close()
    if as_json:
        emit_json(report_json(report))
        return
    render_report(out_console, report, asset)


@app.command()
def fetch(
    url: Annotated[str, typer.Argument(help="The URL to fetch, paying if it asks.")],
    max_price: MaxPriceOpt = "0",
    purpose: Annotated[
        str, typer.Option("--purpose", help="Why, recorded with the payment.")
    ] = "fetched from the command line",
    task_id: TaskIdOpt = None,
    budget: BudgetOpt = None,
    data_dir: PayerDataDirOpt = None,
    agent_id: PayerAgentOpt = None,
    wallet: WalletOpt = None,
    passphrase_file: PassFileOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch one URL, paying within the policy and --max-price; print its text."""
    from farthing.agents.tools import AgentToolkit, FetchResult, Task

    workspace = open_from_options(
        data_dir, agent_id, wallet, network, rpc_url, token, database_url, passphrase_file
    )
    try:
        asset = workspace.target.asset
        cap = asset.parse(max_price)
        # Without --task-id the fetch is a task of its own, whose budget is --max-price.
        the_task = Task(task_id or f"fetch-{uuid.uuid4().hex[:8]}", purpose, cap)
        if task_id is None or budget is not None:
            task_budget = cap if budget is None else asset.parse(budget)
            workspace.books.start_task(the_task.task_id, task_budget, purpose)
        workspace.payer.on_approval = tell_approval

        async def go() -> FetchResult:
            async with AgentToolkit(workspace.payer, the_task) as toolkit:
                return await toolkit.fetch(url, max_price=max_price, purpose=purpose)

        result = asyncio.run(go())
    finally:
        workspace.close()
    outcome = result.outcome
    if as_json:
        emit_json(
            {
                "url": url,
                "status_code": result.status_code,
                "outcome": outcome.status if outcome else None,
                "reason": (outcome.reason if outcome else None) or result.error,
                "amount_atomic": outcome.amount if outcome else None,
                "transaction": outcome.tx_hash if outcome else None,
                "payment_id": format_transfer_id(outcome.payment_id)
                if outcome and outcome.payment_id
                else None,
                "text": result.page.text if result.page else None,
            }
        )
        if not result.delivered:
            raise typer.Exit(1)
        return
    if not result.delivered or result.page is None:
        if outcome is not None and outcome.status != "free":
            fail(outcome.describe())
        fail(f"could not fetch {url}: {result.error or f'HTTP {result.status_code}'}")
    if outcome is not None and outcome.status == "paid":
        out_console.print(f"[dim]{outcome.describe()}[/dim]")
    out_console.print(result.page.text, markup=False, highlight=False)


@app.command()
def price(
    url: Annotated[str, typer.Argument(help="The URL to price; nothing is paid.")],
    data_dir: PayerDataDirOpt = None,
    agent_id: PayerAgentOpt = None,
    wallet: WalletOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say what a URL costs, and what the spend policy would say, without paying.

    Needs no passphrase: only the wallet's address (from its keystore) is read.
    """
    from farthing.agents.tools import AgentToolkit, PriceCheck, Task

    workspace = open_from_options(
        data_dir, agent_id, wallet, network, rpc_url, token, database_url, with_wallet=False
    )
    try:
        payer = _pricing_payer(workspace)

        async def go() -> tuple[PriceCheck, str]:
            async with AgentToolkit(payer, Task("", "", 0)) as toolkit:
                check = await toolkit.check_price(url)
                return check, toolkit.describe_check(check)

        check, text = asyncio.run(go())
    finally:
        workspace.close()
    if as_json:
        emit_json(
            {
                "url": url,
                "status": check.status,
                "amount_atomic": check.amount,
                "pay_to": check.pay_to,
                "reason": check.reason,
                "policy": check.policy_note,
                "title": check.title,
            }
        )
        return
    if check.status in ("error", "unpayable"):
        fail(text.replace("\n", " "))
    out_console.print(text, markup=False, highlight=False)


def _pricing_payer(workspace: Workspace) -> Any:
    """A payer that can price but never sign: pricing needs the asset and policy, not the key."""
    from farthing.agents.payer import Payer

    class _PricingOnly:
        address = workspace.address or "0x0000000000000000000000000000000000000001"

        def sign_typed_data(self, *args: object) -> bytes:
            raise RuntimeError("farthing agent price never signs")

    return Payer(
        signer=_PricingOnly(),
        chain=workspace.target.chain,
        asset=workspace.target.asset,
        books=workspace.books,
        settings=workspace.settings,
    )


@app.command()
def status(
    task_id: Annotated[
        str | None, typer.Option("--task-id", help="Also show this task's budget.")
    ] = None,
    data_dir: PayerDataDirOpt = None,
    agent_id: PayerAgentOpt = None,
    wallet: WalletOpt = None,
    passphrase_file: PassFileOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The wallet's balance, the agent's budget and limits, and any possible spend.

    Needs no passphrase: only the wallet's address (from its keystore) is read.
    """
    from farthing.agents.reservations import open_payments
    from farthing.wallet.token import Stablecoin

    workspace = open_from_options(
        data_dir, agent_id, wallet, network, rpc_url, token, database_url, passphrase_file,
        with_wallet=False,
    )  # fmt: skip
    try:
        if workspace.address is None:
            fail(f"no wallet {workspace.settings.wallet!r}: make one with farthing wallet new")
        state = workspace.books.status(task_id)
        balance = Stablecoin(workspace.target.chain, workspace.target.asset).balance_of(
            workspace.address
        )
        pending = open_payments(workspace.books)
        f = workspace.target.asset.format
    finally:
        workspace.close()
    if as_json:
        emit_json(
            {
                "agent_id": workspace.settings.agent_id,
                "balance_atomic": balance,
                "funded_atomic": state.funded,
                "spent_atomic": state.spent,
                "reserved_atomic": state.reserved,
                "available_atomic": state.available,
                "task_id": task_id,
                "task_budget_atomic": state.task_budget,
                "task_spent_atomic": state.task_spent,
                "possible_spend": len(pending),
            }
        )
        return
    out_console.print(f"wallet balance {f(balance)}")
    out_console.print(
        f"funded {f(state.funded)}, spent {f(state.spent)}, reserved {f(state.reserved)}, available {f(state.available)}"
    )
    if task_id is not None:
        out_console.print(
            f"task {task_id}: budget {f(state.task_budget or 0)}, spent or reserved {f(state.task_spent)}"
        )
    for payment in pending:
        out_console.print(
            f"possible spend: payment {format_transfer_id(payment.payment_id)} of "
            f"{f(payment.amount)} for {payment.resource}"
        )


@app.command()
def resolve(
    data_dir: PayerDataDirOpt = None,
    agent_id: PayerAgentOpt = None,
    wallet: WalletOpt = None,
    passphrase_file: PassFileOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resolve possible spend from the chain, then reconcile the books with the wallet's transfers.

    Exits 1 on a break, on books that do not balance, or when the books hold
    payments it did not check (another network or token).
    """
    from farthing.agents.integrity import ledger_balanced, reconcile_books
    from farthing.agents.resolve import resolve_possible_spend

    workspace = open_from_options(
        data_dir, agent_id, wallet, network, rpc_url, token, database_url, passphrase_file
    )
    try:
        address = workspace.payer.address
        chain = workspace.target.chain
        resolutions = resolve_possible_spend(workspace.books, chain, payer=address)
        report = reconcile_books(workspace.books, chain)
        balanced = ledger_balanced(workspace.database)
    finally:
        workspace.close()
    breaks = report.unresolved_breaks
    if as_json:
        emit_json(
            {
                "resolutions": [
                    {
                        "payment_id": format_transfer_id(r.payment_id),
                        "action": r.action,
                        "result": r.result,
                        "transaction": r.tx_hash,
                    }
                    for r in resolutions
                ],
                "reconciliation_breaks": len(breaks),
                "breaks": [{"kind": str(b.kind), "detail": b.detail} for b in breaks],
                "payments_checked": report.payments_checked,
                "unchecked": report.unchecked_count,
                "unchecked_items": [
                    {"reason": u.reason, "count": u.count, "detail": u.detail}
                    for u in report.unchecked
                ],
                "ledger_balanced": balanced,
            }
        )
        if breaks or report.unchecked or not balanced:
            raise typer.Exit(1)
        return
    if not resolutions:
        out_console.print("no possible spend to resolve")
    for r in resolutions:
        out_console.print(f"payment {format_transfer_id(r.payment_id)}: {r.action} ({r.result})")
    for item in breaks:
        out_console.print(f"[red]break[/red] {item.kind}: {item.detail}")
    # Payments of another network or token in the same books were not checked.
    for u in report.unchecked:
        out_console.print(f"not checked: {u.detail}", markup=False, highlight=False)
    out_console.print(
        f"{len(breaks)} reconciliation break(s) across {report.payments_checked} booked transfer(s); "
        f"the ledger is {'balanced' if balanced else 'NOT balanced'}"
    )
    if breaks or report.unchecked or not balanced:
        raise typer.Exit(1)

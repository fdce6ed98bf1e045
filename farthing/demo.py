"""``farthing demo``: an agent buys articles from a paywalled blog, on embedded defaults.

Everything runs in this process, with no node and no server: the in-process
chain (py-evm), SQLite files in a fresh folder under FARTHING_DATA_DIR/demo
(kept, so `farthing dashboard` can open them: the command it prints
opens the agent's books, the merchant's and the paywall's payments), and the blog served
through ``httpx.ASGITransport``. The demo

1. deploys the stablecoin and funds a fresh agent wallet by minting, booking
   the mint as the agent's funding (with its transaction hash);
2. serves ``farthing.agents.blog`` behind ``PaywallMiddleware``: six articles,
   the first third of each free, the whole at 0.1 CNY (0.01385 USDC at the
   stated 0.1385 USDC per CNY), revenue booked in the merchant's own ledger;
3. runs the agent with a task and a budget that covers only some articles,
   showing its progress;
4. prints the purchases, what was skipped and why, and the reconciliation of
   the agent's books with the chain.

``--scheme batch-settlement`` has the blog offer x402 ``batch-settlement``
beside ``exact``; the agent, expecting several buys from the one blog, takes
the channel: one deposit, a voucher per article (no transaction), then one
claim and one settle by the merchant's own claimer at the end. Both sides'
channel books are also reconciled with the escrow's events (the agent's
deposits and charges, the merchant's claims and settles), and the breaks
reported are the sum. ``exact`` (one transfer per article)
stays the default.

``--chain-url URL`` runs the same against anvil (or any dev chain whose
first two accounts are anvil's funded dev accounts). ``--json`` prints one
line; its ``onchain_tx`` counts the transactions the purchases and their
settlement took (the setup's deploy and mint are not counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from farthing.console import emit_json, fail, out_console

if TYPE_CHECKING:
    from farthing.agents.brain import Brain
    from farthing.agents.runner import RunReport
    from farthing.agents.settings import AgentSettings
    from farthing.ledger import LedgerDatabase
    from farthing.paywall import PaywallMiddleware
    from farthing.paywall.schemes.batch_settlement.claims import ClaimReport
    from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
    from farthing.wallet.chain import Chain

__all__ = ["DEMO_BUDGET", "DEMO_SCHEMES", "DEMO_TASK", "app", "run_demo"]

DEMO_TASK = (
    "How was the English farthing coin minted, in silver or copper, and why was it withdrawn?"
)
DEMO_BUDGET = "0.03"  # two articles at 0.01385 USDC; the blog has three on the subject
_BLOG_URL = "http://blog.farthing.test"
DEMO_SCHEMES = ("exact", "batch-settlement")

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
) -> None:
    """Run the end-to-end demo: an agent pays a paywalled blog, then the books are reconciled."""
    if (llm_url is None) != (model is None):
        fail("pass --llm-url and --model together")
    if scheme not in DEMO_SCHEMES:
        fail(f"--scheme must be one of {', '.join(DEMO_SCHEMES)}")
    started = time.perf_counter()

    def step(message: str) -> None:
        if not as_json:
            out_console.print(f"[dim]{time.perf_counter() - started:5.2f}s[/dim] {message}")

    result = run_demo(
        step,
        chain_url=chain_url,
        budget=budget,
        llm_url=llm_url,
        model=model,
        started=started,
        scheme=scheme,
    )
    if as_json:
        emit_json(
            {
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
        )
        return
    from farthing.agents.render import render_report

    render_report(out_console, result["report"], result["asset"])
    asset = result["asset"]
    if scheme == "exact":
        out_console.print(
            f"Merchant revenue in its own books: {asset.format(result['revenue'])} "
            f"from {result['revenue_count']} payment(s)."
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
    books = Path(result["books_dir"])

    # The agent's and the merchant's books are separate ledgers; the dashboard shows both.
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


def run_demo(
    step: Any,
    *,
    chain_url: str | None = None,
    budget: str = DEMO_BUDGET,
    llm_url: str | None = None,
    model: str | None = None,
    started: float | None = None,
    scheme: str = "exact",
) -> dict[str, Any]:
    """Set everything up, run the agent, check the books; return what the command prints.

    ``started`` is the ``time.perf_counter()`` the command began at, so the
    time to the last paid article includes the imports of a cold start.
    """
    # Imported here so that `farthing --help` does not pay for web3's import.
    import httpx

    from farthing.agents.blog import ARTICLES, CNY_RATE, PRICE, paywalled_blog
    from farthing.agents.books import AgentBooks
    from farthing.agents.integrity import check_books
    from farthing.agents.payer import Payer
    from farthing.agents.runner import AgentRun
    from farthing.agents.settings import AgentSettings
    from farthing.agents.tools import AgentToolkit, Task
    from farthing.ledger.report import revenue_report
    from farthing.paywall import LedgerRevenueBook, LocalFacilitator, PaymentStore
    from farthing.wallet.chain import MemoryChain, open_chain
    from farthing.wallet.errors import AmountError
    from farthing.wallet.signer import LocalSigner
    from farthing.wallet.token import Stablecoin, deploy_stablecoin

    started = time.perf_counter() if started is None else started
    chain: Chain
    if chain_url is None:
        step("starting the in-process chain (py-evm)")
        chain, kind = MemoryChain(), "memory"
    else:
        step(f"connecting to {chain_url}")
        chain = open_chain(chain_url)
        kind = "anvil" if chain.chain_id == 31337 else "rpc"
    if kind != "rpc":
        # The x402 batch-settlement contracts at their canonical addresses (docs/channels.md).
        from farthing.paywall.schemes.batch_settlement.vouchers import place_channel_contracts

        place_channel_contracts(chain)
    # Kept after the run, so `farthing dashboard` can open the demo's own books.
    with contextlib.nullcontext(str(_demo_dir())) as tmp:
        try:
            operator, relayer = (account.signer() for account in chain.dev_accounts()[:2])
            start_block = chain.block_number() + 1
            asset = deploy_stablecoin(chain, sender=operator)
            try:
                budget_atomic = asset.parse(budget)
            except AmountError as exc:
                fail(f"--budget: {exc}")
            token = Stablecoin(chain, asset)
            token.configure_minter(operator.address, sender=operator)
            step(f"deployed {asset.symbol} at {asset.address} on {chain.network}")

            agent_db = _database(Path(tmp) / "agent.sqlite")
            merchant_db = _database(Path(tmp) / "merchant.sqlite")
            agent = LocalSigner.generate()
            books = AgentBooks(agent_db, agent_id="demo-agent", asset=asset).ensure()
            funds = asset.parse("1")
            minted = token.mint(agent.address, funds, sender=operator)
            if not minted.ok or minted.tx_hash is None or minted.block_number is None:
                fail(f"minting the agent's funds failed: {minted.reason}")
            books.book_funding(
                amount=funds,
                to_address=agent.address,
                tx_hash=minted.tx_hash,
                block_number=minted.block_number,
            )
            step(f"funded agent {agent.address} with {asset.format(funds)} (booked as funding)")

            merchant = LocalSigner.generate().address
            store = PaymentStore.sqlite(Path(tmp) / "paywall.sqlite")
            facilitator = LocalFacilitator(chain, relayer)
            merchant_books = LedgerRevenueBook(merchant_db)
            channels = (
                _channel_options(chain, Path(tmp) / "paywall.sqlite")
                if scheme == "batch-settlement"
                else None
            )
            blog = paywalled_blog(
                facilitator=facilitator,
                store=store,
                pay_to=merchant,
                asset=asset,
                books=merchant_books,
                channels=channels,
            )
            step(
                f"serving {len(ARTICLES)} articles at {_BLOG_URL}: the first third free, "
                f"the rest {PRICE} at {CNY_RATE} {asset.symbol}/CNY, paid by {scheme}"
            )
            # Purchases and their settlement start here; the setup above is not counted.
            payments_block = chain.block_number() + 1

            task = Task(f"demo-{uuid.uuid4().hex[:8]}", DEMO_TASK, budget_atomic)
            books.start_task(task.task_id, task.budget, task.text)
            step(f"task {task.task_id}: {task.text} (budget {asset.format(budget_atomic)})")
            settings = AgentSettings(agent_id="demo-agent")
            payer = Payer(signer=agent, chain=chain, asset=asset, books=books, settings=settings)
            brain = _brain(settings, llm_url, model)
            paid_at: list[float] = []

            def progress(message: str) -> None:
                if message.startswith("bought"):
                    paid_at.append(time.perf_counter() - started)
                step(message)

            async def go() -> RunReport:
                # PaywallMiddleware types its ASGI callables loosely; it is an ASGI app.
                transport = httpx.ASGITransport(app=cast(Any, blog))
                try:
                    # The agent expects to read several articles of the one blog,
                    # so a channel is preferred wherever the blog offers one.
                    async with AgentToolkit(
                        payer, task, transport=transport, expected_buys=len(ARTICLES)
                    ) as toolkit:
                        run = AgentRun(
                            toolkit, brain, start_urls=[f"{_BLOG_URL}/"], progress=progress
                        )
                        return await run.run()
                finally:
                    await brain.aclose()

            report = asyncio.run(go())
            settled = 0
            channel_breaks = 0
            if channels is not None:
                claimed = asyncio.run(_claim_and_settle(blog))
                if claimed.failures:
                    fail(f"claiming the channel failed: {claimed.failures[0]}")
                settled = claimed.settled
                step(
                    f"the merchant claimed and settled {asset.format(settled)} in "
                    f"{len(claimed.transactions)} transaction(s)"
                )
            step("reconciling the agent's books with the chain")
            checked = check_books(books, chain, from_block=start_block)
            if channels is not None:
                from farthing.agents.channels.reconcile import reconcile_channels
                from farthing.paywall.schemes.batch_settlement.reconcile import (
                    reconcile_channel_books,
                )

                channel_breaks = len(reconcile_channels(payer, from_block=start_block))
                # The merchant's side: the escrow's Claimed and Settled events
                # against the channel revenue booked in its own ledger.
                merchant_recon = reconcile_channel_books(
                    channels.store, merchant_books, from_block=start_block
                )
                channel_breaks += len(merchant_recon.breaks)
                records = channels.store.records()
                revenue_total = sum(r.charged for r in records)
                revenue_count = sum(1 for _ in report.bought)
                channels.store.dispose()
            else:
                with merchant_db.read() as session:
                    revenue = revenue_report(session=session, payee_address=merchant)
                revenue_total = sum(row.posted for row in revenue)
                revenue_count = sum(row.payment_count for row in revenue)
            onchain_tx = _transactions_since(chain, payments_block)
            store.dispose()
            agent_db.dispose()
            merchant_db.dispose()
        finally:
            chain.close()
    recon = checked.reconciliation
    return {
        "report": report,
        "asset": asset,
        "chain": kind,
        "balanced": checked.balanced,
        "breaks": checked.breaks + channel_breaks,
        "payments_checked": recon.payments_checked,
        "blocks": f"{recon.from_block}..{recon.to_block}",
        "revenue": revenue_total,
        "revenue_count": revenue_count,
        "settled": settled,
        "onchain_tx": onchain_tx,
        "last_paid_s": paid_at[-1] if paid_at else None,
        "books_dir": tmp,
    }


def _channel_options(chain: Chain, database: Path) -> ChannelOptions:
    """The merchant's batch-settlement side: channel rows beside its payments, a fresh authorizer.

    Claims are made once at the end of the demo (not in the background), so
    the run shows exactly one claim and one settle.
    """
    from farthing.paywall.schemes.batch_settlement.contract import ChannelEscrow
    from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
    from farthing.paywall.schemes.batch_settlement.state import ChannelStore
    from farthing.paywall.schemes.batch_settlement.vouchers import ChannelDomain
    from farthing.wallet.signer import LocalSigner

    store = ChannelStore(
        f"sqlite:///{database}",
        domain=ChannelDomain(chain.chain_id),
        network=chain.network,
        escrow=ChannelEscrow(chain),
    )
    return ChannelOptions(store, LocalSigner.generate(), claim_in_background=False)


async def _claim_and_settle(blog: PaywallMiddleware) -> ClaimReport:
    """The merchant's claimer (the one the app runs), once: claim, settle, book both."""
    from farthing.errors import InvariantError

    if blog.channels is None:
        raise InvariantError("the blog sells through channels")
    return await blog.channels.claimer.tick(force=True)


def _transactions_since(chain: Chain, from_block: int) -> int:
    """On-chain transactions in the blocks ``from_block`` to the latest."""
    eth = chain.w3.eth
    return sum(
        int(eth.get_block_transaction_count(n)) for n in range(from_block, chain.block_number() + 1)
    )


def _demo_dir() -> Path:
    """A fresh folder for this run under FARTHING_DATA_DIR/demo; runs older than a day go."""
    root = Path(os.environ.get("FARTHING_DATA_DIR", "~/.farthing")).expanduser() / "demo"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("run-*"):
        if old.is_dir() and time.time() - old.stat().st_mtime > 86_400:
            shutil.rmtree(old, ignore_errors=True)
    path = root / f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path


def _database(path: Path) -> LedgerDatabase:
    from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database

    # A throwaway file: NORMAL loses nothing on a process crash, only on power loss.
    database = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    )
    upgrade_database(database)
    return database


def _brain(settings: AgentSettings, llm_url: str | None, model: str | None) -> Brain:
    from farthing.agents.brain import LlmBrain, RuleBrain

    if llm_url is None or model is None:
        return RuleBrain(relevance_min=settings.relevance_min)
    from farthing.inference import InferenceSettings, chat_model

    return LlmBrain(
        chat_model(llm_url, model=model, settings=InferenceSettings()), model_name=model
    )

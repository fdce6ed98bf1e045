"""What every demo run shares, and the run over HTTP (``run_demo``); see ``farthing.demo``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from farthing.console import fail

if TYPE_CHECKING:
    from farthing.agents.books import AgentBooks
    from farthing.agents.brain import Brain
    from farthing.agents.runner import RunReport
    from farthing.agents.settings import AgentSettings
    from farthing.ledger import LedgerDatabase
    from farthing.paywall import PaywallMiddleware
    from farthing.paywall.schemes.batch_settlement.claims import ClaimReport
    from farthing.paywall.schemes.batch_settlement.server import ChannelOptions
    from farthing.wallet.chain import Chain
    from farthing.wallet.money import Asset
    from farthing.wallet.signer import LocalSigner
    from farthing.wallet.token import Stablecoin

__all__ = [
    "BLOG_URL",
    "DEMO_BUDGET",
    "DEMO_SCHEMES",
    "DEMO_TASK",
    "Stage",
    "brain_for",
    "database",
    "demo_dir",
    "fund_agent",
    "open_demo_chain",
    "run_demo",
    "set_stage",
    "transactions_since",
]

DEMO_TASK = (
    "How was the English farthing coin minted, in silver or copper, and why was it withdrawn?"
)
DEMO_BUDGET = "0.03"  # two articles at 0.01385 USDC; the blog has three on the subject
BLOG_URL = "http://blog.farthing.test"
DEMO_SCHEMES = ("exact", "batch-settlement")


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
    from farthing.agents.integrity import check_books
    from farthing.agents.payer import Payer
    from farthing.agents.runner import AgentRun
    from farthing.agents.settings import AgentSettings
    from farthing.agents.tools import AgentToolkit, Task
    from farthing.ledger.report import revenue_report
    from farthing.paywall import LedgerRevenueBook, LocalFacilitator, PaymentStore
    from farthing.wallet.signer import LocalSigner

    started = time.perf_counter() if started is None else started
    chain, kind = open_demo_chain(step, chain_url)
    # Kept after the run, so `farthing dashboard` can open the demo's own books.
    with contextlib.nullcontext(str(demo_dir())) as tmp:
        try:
            staged = set_stage(step, chain, budget, Path(tmp))
            relayer, asset, budget_atomic = staged.relayer, staged.asset, staged.budget
            agent_db, merchant_db = staged.agent_db, staged.merchant_db
            agent, books, start_block = staged.agent, staged.books, staged.start_block

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
                f"serving {len(ARTICLES)} articles at {BLOG_URL}: the first third free, "
                f"the rest {PRICE} at {CNY_RATE} {asset.symbol}/CNY, paid by {scheme}"
            )
            # Purchases and their settlement start here; the setup above is not counted.
            payments_block = chain.block_number() + 1

            task = Task(f"demo-{uuid.uuid4().hex[:8]}", DEMO_TASK, budget_atomic)
            books.start_task(task.task_id, task.budget, task.text)
            step(f"task {task.task_id}: {task.text} (budget {asset.format(budget_atomic)})")
            settings = AgentSettings(agent_id="demo-agent")
            payer = Payer(signer=agent, chain=chain, asset=asset, books=books, settings=settings)
            brain = brain_for(settings, llm_url, model)
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
                            toolkit, brain, start_urls=[f"{BLOG_URL}/"], progress=progress
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
            onchain_tx = transactions_since(chain, payments_block)
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


@dataclass(frozen=True)
class Stage:
    """What every demo run starts from: the token deployed, a funded agent, its books."""

    relayer: LocalSigner  # the facilitator's: it sends the settlements
    asset: Asset
    budget: int  # the task's, in atomic units
    agent: LocalSigner
    books: AgentBooks
    agent_db: LedgerDatabase
    merchant_db: LedgerDatabase
    start_block: int  # the first block the reconciliation reads
    token: Stablecoin
    operator: LocalSigner  # deploys the token and mints


def open_demo_chain(step: Any, chain_url: str | None) -> tuple[Chain, str]:
    """The in-process chain, or the one at ``chain_url``; and its kind for the report."""
    from farthing.wallet.chain import MemoryChain, open_chain

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
        from farthing.paywall.schemes.upto.contract import place_upto_contracts

        place_channel_contracts(chain)
        place_upto_contracts(chain)  # Permit2 and the x402 upto proxy (docs/paywall.md)
    return chain, kind


def set_stage(step: Any, chain: Chain, budget: str, folder: Path) -> Stage:
    """Deploy the token, fund a fresh agent by minting and book the mint as its funding."""
    from farthing.agents.books import AgentBooks
    from farthing.wallet.errors import AmountError
    from farthing.wallet.signer import LocalSigner
    from farthing.wallet.token import Stablecoin, deploy_stablecoin

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

    agent_db = database(folder / "agent.sqlite")
    merchant_db = database(folder / "merchant.sqlite")
    agent = LocalSigner.generate()
    books = AgentBooks(agent_db, agent_id="demo-agent", asset=asset).ensure()
    funds = asset.parse("1")
    fund_agent(token, operator, books, agent.address, funds)
    step(f"funded agent {agent.address} with {asset.format(funds)} (booked as funding)")
    return Stage(
        relayer, asset, budget_atomic, agent, books, agent_db, merchant_db, start_block,
        token, operator,
    )  # fmt: skip


def fund_agent(
    token: Stablecoin, operator: LocalSigner, books: AgentBooks, address: str, amount: int
) -> None:
    """Mint ``amount`` to ``address`` and book the mint as the agent's funding."""
    minted = token.mint(address, amount, sender=operator)
    if not minted.ok or minted.tx_hash is None or minted.block_number is None:
        fail(f"minting the agent's funds failed: {minted.reason}")
    books.book_funding(
        amount=amount, to_address=address, tx_hash=minted.tx_hash, block_number=minted.block_number
    )


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


def transactions_since(chain: Chain, from_block: int) -> int:
    """On-chain transactions in the blocks ``from_block`` to the latest."""
    eth = chain.w3.eth
    return sum(
        int(eth.get_block_transaction_count(n)) for n in range(from_block, chain.block_number() + 1)
    )


def demo_dir() -> Path:
    """A fresh folder for this run under FARTHING_DATA_DIR/demo; runs older than a day go."""
    root = Path(os.environ.get("FARTHING_DATA_DIR", "~/.farthing")).expanduser() / "demo"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("run-*"):
        if old.is_dir() and time.time() - old.stat().st_mtime > 86_400:
            shutil.rmtree(old, ignore_errors=True)
    path = root / f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path


def database(path: Path) -> LedgerDatabase:
    from farthing.ledger import LedgerDatabase, LedgerSettings, upgrade_database

    # A throwaway file: NORMAL loses nothing on a process crash, only on power loss.
    opened = LedgerDatabase(
        LedgerSettings(database_url=f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    )
    upgrade_database(opened)
    return opened


def brain_for(settings: AgentSettings, llm_url: str | None, model: str | None) -> Brain:
    from farthing.agents.brain import LlmBrain, RuleBrain

    if llm_url is None or model is None:
        return RuleBrain(relevance_min=settings.relevance_min)
    from farthing.inference import InferenceSettings, chat_model

    return LlmBrain(
        chat_model(llm_url, model=model, settings=InferenceSettings()), model_name=model
    )

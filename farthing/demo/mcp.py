"""``farthing demo --mcp``: the agent finds the blog in a facilitator's catalog and pays its MCP tool.

Everything runs in this process, each server an ASGI app reached through
``httpx.ASGITransport`` (no socket): the chain and the agent's funding as
``farthing demo`` has them (``farthing.demo.run``), and

1. a facilitator (``farthing facilitator serve``'s app over a
   ``LocalFacilitator``) with its discovery catalog in its own SQLite
   database;
2. the blog behind ``PaywallMiddleware`` with ``mcp = true``'s ``/mcp``
   beside it (``site_mount``) and ``HostGuard`` in front, settling through
   that facilitator (a ``RemoteFacilitator``) and declaring itself
   (``SiteDiscovery``): over MCP a paid page's 402 declares the ``fetch``
   tool (``bazaar``, ``input.type`` ``mcp``);
3. a first reader, another agent, buys one article over MCP: the facilitator
   settles it and catalogs the blog's ``fetch`` tool from the seller's own
   declaration (a catalog lists only what it has seen sold);
4. the demo agent searches the catalog (``farthing.agents.discovery``, the
   code ``farthing agent discover`` runs) and opens the MCP server it names,
   reads the free index through ``fetch``, prices each article with an
   unpaid call (its 402 and free preview), lets the brain decide, and buys
   through ``PayingSession`` under its policy and two-phase books;
5. the agent's books are reconciled with the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

from farthing.console import fail
from farthing.demo.run import (
    BLOG_URL,
    DEMO_TASK,
    brain_for,
    database,
    demo_dir,
    fund_agent,
    open_demo_chain,
    set_stage,
    transactions_since,
)

if TYPE_CHECKING:
    import httpx

    from farthing.agents.brain import Brain, Candidate, Reading
    from farthing.agents.discovery import Listing
    from farthing.agents.mcp.session import PayingSession
    from farthing.agents.runner import RunReport, Skip
    from farthing.agents.tools import Task
    from farthing.demo.run import Stage
    from farthing.paywall import Facilitator
    from farthing.paywall.discovery import SiteDiscovery
    from farthing.wallet.chain import Chain

__all__ = ["DEMO_QUERY", "FACILITATOR_URL", "run_mcp_demo"]

DEMO_QUERY: Final = "farthing blog"  # what the agent asks the catalog for
FACILITATOR_URL: Final = "http://facilitator.farthing.test"
FIRST_READ: Final = "/posts/sourdough"  # the first reader bakes
_PREVIEW_CHARS: Final = 600


@dataclass
class _Run:
    """What the run found and did, filled in as it goes, for the report."""

    payments_block: int = 0  # the first block of the agent's purchases
    server: str | None = None  # the MCP server the catalog named
    tool: str | None = None
    listings: int = 0  # what the catalog offered for the query
    paid_at: list[float] = field(default_factory=list)  # perf_counter() of each purchase
    readings: list[Reading] = field(default_factory=list)


def _blog_discovery() -> SiteDiscovery:
    from farthing.paywall.discovery import ServiceMetadata, SiteDiscovery

    return SiteDiscovery(
        service=ServiceMetadata("The Farthing Blog", ("farthing", "coins", "history")),
        name="The Farthing Blog",
        description="Short articles on the farthing coin, and a few on other things.",
    )


def run_mcp_demo(
    step: Callable[[str], None],
    *,
    chain_url: str | None = None,
    budget: str = "0.03",
    llm_url: str | None = None,
    model: str | None = None,
    started: float | None = None,
    scheme: str = "exact",
) -> dict[str, Any]:
    """Set everything up, seed the catalog, run the agent over MCP, check the books.

    Returns what ``farthing demo`` prints, plus ``mcp``: what the agent found
    and what its wallet paid on chain.
    """
    import httpx

    from farthing.agents.integrity import check_books
    from farthing.ledger.report import revenue_report
    from farthing.paywall import LedgerRevenueBook, LocalFacilitator, PaymentStore
    from farthing.paywall.discovery import Catalog
    from farthing.paywall.facilitator.api import facilitator_app
    from farthing.paywall.facilitator.remote import RemoteFacilitator
    from farthing.wallet.signer import LocalSigner

    if scheme != "exact":
        fail("--mcp sells by exact only")
    started = time.perf_counter() if started is None else started
    chain, kind = open_demo_chain(step, chain_url)
    with contextlib.nullcontext(demo_dir()) as folder:
        try:
            staged = set_stage(step, chain, budget, folder)
            asset = staged.asset
            catalog = Catalog.sqlite(folder / "facilitator.sqlite")
            to_facilitator = httpx.ASGITransport(
                app=facilitator_app(LocalFacilitator(chain, staged.relayer), catalog=catalog)
            )
            facilitator = RemoteFacilitator(FACILITATOR_URL, transport=to_facilitator)
            step(f"facilitator at {FACILITATOR_URL}, its discovery catalog in facilitator.sqlite")
            merchant = LocalSigner.generate().address
            store = PaymentStore.sqlite(folder / "paywall.sqlite")
            merchant_books = LedgerRevenueBook(staged.merchant_db)
            site = _site(facilitator, store, merchant, merchant_books, staged)
            to_site = httpx.ASGITransport(app=site)
            step(
                f"serving the blog at {BLOG_URL} with MCP at {BLOG_URL}/mcp: its fetch tool "
                "sells each article, the first third free, declared as an MCP tool (bazaar)"
            )
            balance_before = staged.token.balance_of(staged.agent.address)
            run = _Run()

            async def go() -> RunReport:
                try:
                    await _first_reader(step, chain, staged, folder, to_site)
                    run.payments_block = chain.block_number() + 1
                    return await _agent(
                        step, chain, staged, (to_facilitator, to_site), run, (llm_url, model)
                    )
                finally:
                    await facilitator.aclose()

            report = asyncio.run(go())
            step("reconciling the agent's books with the chain")
            checked = check_books(staged.books, chain, from_block=staged.start_block)
            paid_onchain = balance_before - staged.token.balance_of(staged.agent.address)
            with staged.merchant_db.read() as session:
                revenue = revenue_report(session=session, payee_address=merchant)
            onchain_tx = transactions_since(chain, run.payments_block)
            store.dispose()
            catalog.dispose()
            staged.agent_db.dispose()
            staged.merchant_db.dispose()
        finally:
            chain.close()
    recon = checked.reconciliation
    return {
        "report": report,
        "asset": asset,
        "chain": kind,
        "balanced": checked.balanced,
        "breaks": checked.breaks,
        "payments_checked": recon.payments_checked,
        "blocks": f"{recon.from_block}..{recon.to_block}",
        "revenue": sum(row.posted for row in revenue),
        "revenue_count": sum(row.payment_count for row in revenue),
        "settled": 0,
        "onchain_tx": onchain_tx,
        "last_paid_s": (run.paid_at[-1] - started) if run.paid_at else None,
        "books_dir": str(folder),
        "mcp": {
            "transport": "mcp",
            "query": DEMO_QUERY,
            "server": run.server,
            "tool": run.tool,
            "listings": run.listings,
            "agent_paid_onchain_atomic": paid_onchain,
        },
    }


def _site(facilitator: Facilitator, store: Any, merchant: str, books: Any, staged: Stage) -> Any:
    """The blog, declaring itself, with ``/mcp`` beside it and ``HostGuard`` in front."""
    from farthing.agents.blog import paywalled_blog
    from farthing.paywall import PaywallMiddleware
    from farthing.paywall.mcp.mount import site_mount
    from farthing.web import HostGuard

    blog = paywalled_blog(
        facilitator=facilitator, store=store, pay_to=merchant, asset=staged.asset, books=books
    )
    declaring = PaywallMiddleware(
        blog.app, options=replace(blog.options, discovery=_blog_discovery(), public_url=BLOG_URL)
    )
    host = urlsplit(BLOG_URL).hostname or ""
    # McpMount types its ASGI callables loosely; it is an ASGI app.
    return HostGuard(cast(Any, site_mount(declaring, declaring)), hosts=[host])


async def _first_reader(
    step: Callable[[str], None],
    chain: Chain,
    staged: Stage,
    folder: Path,
    to_site: httpx.AsyncBaseTransport,
) -> None:
    """Another agent buys one article over MCP, so the facilitator has seen the tool sold."""
    import anyio.to_thread

    from farthing.agents.books import AgentBooks
    from farthing.agents.mcp.session import PayingSession, open_mcp
    from farthing.agents.payer import Payer
    from farthing.agents.settings import AgentSettings
    from farthing.wallet.signer import LocalSigner

    def setup() -> Payer:
        reader = LocalSigner.generate()
        books = AgentBooks(
            database(folder / "reader.sqlite"), agent_id="first-reader", asset=staged.asset
        ).ensure()
        fund_agent(staged.token, staged.operator, books, reader.address, staged.asset.parse("1"))
        settings = AgentSettings(agent_id="first-reader")
        return Payer(signer=reader, chain=chain, asset=staged.asset, books=books, settings=settings)

    payer = await anyio.to_thread.run_sync(setup)
    url = f"{BLOG_URL}/mcp"
    try:
        async with open_mcp(url, payer.settings, transport=to_site) as session:
            call = await PayingSession(session, payer, url).call_tool(
                "fetch", {"path": FIRST_READ}, max_price=staged.asset.parse("0.02")
            )
    finally:
        payer.books.database.dispose()
    if call.outcome is None or call.outcome.status != "paid":
        why = call.outcome.describe() if call.outcome is not None else call.error
        fail(f"the first reader's purchase over MCP failed: {why}")
    step(f"a first reader bought {FIRST_READ} over MCP; the facilitator settled and cataloged it")


async def _agent(
    step: Callable[[str], None],
    chain: Chain,
    staged: Stage,
    transports: tuple[httpx.AsyncBaseTransport, httpx.AsyncBaseTransport],
    run: _Run,
    llm: tuple[str | None, str | None],
) -> RunReport:
    """Discover, open the server found, price, decide, buy, answer.

    ``transports`` reach the facilitator and the site; ``llm`` is ``--llm-url`` and ``--model``.
    """
    to_facilitator, to_site = transports
    from farthing.agents.discovery import cheapest_sellers, discover
    from farthing.agents.mcp.session import PayingSession, open_mcp
    from farthing.agents.payer import Payer
    from farthing.agents.runner import RunReport
    from farthing.agents.settings import AgentSettings
    from farthing.agents.tools import Task

    asset = staged.asset
    task = Task(f"demo-{uuid.uuid4().hex[:8]}", DEMO_TASK, staged.budget)
    staged.books.start_task(task.task_id, task.budget, task.text)
    step(f"task {task.task_id}: {task.text} (budget {asset.format(staged.budget)})")
    found = await discover(
        FACILITATOR_URL,
        DEMO_QUERY,
        asset=asset.address,
        network=asset.network,
        transport=to_facilitator,
    )
    if found.error is not None:
        fail(f"the catalog could not be read: {found.error}")
    tools = [x for x in found.listings if x.kind == "mcp" and x.tool_name == "fetch"]
    kept, _ = cheapest_sellers(tools, asset=asset.address, network=asset.network)
    if not kept:
        fail(f"the catalog lists no MCP fetch tool for {DEMO_QUERY!r}")
    listing = kept[0]
    run.server, run.tool, run.listings = listing.url, listing.tool_name, len(found.listings)
    step(
        f"the catalog lists {len(found.listings)} offer(s) for {DEMO_QUERY!r}: "
        f"{_described(listing, asset)}"
    )
    settings = AgentSettings(agent_id="demo-agent")
    payer = Payer(
        signer=staged.agent, chain=chain, asset=asset, books=staged.books, settings=settings
    )
    brain = brain_for(settings, *llm)
    report = RunReport(task.task_id, task.text, task.budget, brain.description)
    step(brain.description)
    try:
        async with open_mcp(listing.url, settings, transport=to_site) as session:
            paying = PayingSession(session, payer, listing.url)
            await _shop(step, paying, brain, task, report, run)
        step("writing the answer")
        report.answer = await brain.answer(task, run.readings)
    finally:
        await brain.aclose()
    report.status = staged.books.status(task.task_id)
    return report


def _described(listing: Listing, asset: Any) -> str:
    return (
        f"the {listing.tool_name} tool at {listing.url} ({listing.service_name or 'no name'}), "
        f"{asset.format(listing.amount)} a call when last sold"
    )


async def _shop(
    step: Callable[[str], None],
    paying: PayingSession,
    brain: Brain,
    task: Task,
    report: RunReport,
    run: _Run,
) -> None:
    """The free index through ``fetch``, an unpaid call per article, the brain, the purchases."""
    from farthing.agents.brain import Reading
    from farthing.agents.pages import read_page
    from farthing.agents.runner import Purchase, Skip

    asset = paying.payer.asset
    index = await paying.call_tool("fetch", {"path": "/"}, task_id=task.task_id, max_price=0)
    if not index.delivered:
        fail(f"the blog's index could not be read over MCP: {index.error or 'not free'}")
    page = read_page(index.text(200_000), url=BLOG_URL + "/")
    paths = [
        (urlsplit(link.url).path, link.text)
        for link in page.links
        if urlsplit(link.url).netloc == urlsplit(BLOG_URL).netloc
    ][: paying.payer.settings.candidates_max]
    step(f"read the index through fetch (free): {len(paths)} article(s)")
    decided = []
    for path, title in paths:
        candidate = await _priced(paying, task, path, title)
        if isinstance(candidate, Skip):
            report.skipped.append(candidate)
            continue
        left = _left(paying, task)
        decision = await brain.decide(task, candidate, left, asset)
        step(f"{decision.decision:4} {title} ({asset.format(candidate.price)}): {decision.reason}")
        decided.append((path, candidate, decision))
    for path, candidate, decision in sorted(
        decided, key=lambda item: (-item[2].relevance, item[1].price)
    ):
        if decision.decision != "buy":
            report.skipped.append(
                Skip(candidate.url, candidate.title, decision.reason, candidate.price)
            )
            continue
        left = _left(paying, task)
        if candidate.price > left:
            reason = (
                f"costs {asset.format(candidate.price)}, more than the "
                f"{asset.format(left)} left of the budget"
            )
            report.skipped.append(Skip(candidate.url, candidate.title, reason, candidate.price))
            step(f"skip {candidate.title}: {reason}")
            continue
        purpose = f"relevant to the task ({decision.relevance}/10)"
        call = await paying.call_tool(
            "fetch", {"path": path}, task_id=task.task_id, purpose=purpose,
            max_price=candidate.price,
        )  # fmt: skip
        paid = call.outcome
        if call.delivered and paid is not None and paid.status == "paid":
            text = read_page(call.text(paying.payer.settings.content_chars_max), url=candidate.url)
            report.bought.append(
                Purchase(candidate.url, candidate.title, paid, decision.relevance,
                         decision.reason, len(text.text))
            )  # fmt: skip
            run.readings.append(Reading(candidate.url, candidate.title, text.text))
            run.paid_at.append(time.perf_counter())
            step(f"bought {candidate.title}: {paid.describe()}")
            continue
        if paid is not None and paid.status == "possible_spend":
            report.possible_spend.append(paid)
        why = paid.describe() if paid is not None else (call.error or "no answer")
        report.skipped.append(Skip(candidate.url, candidate.title, why, candidate.price))
        step(f"not bought {candidate.title}: {why}")


def _left(paying: PayingSession, task: Task) -> int:
    """What is left of the task's budget, read from the books."""
    return paying.payer.books.status(task.task_id).remaining()


async def _priced(paying: PayingSession, task: Task, path: str, title: str) -> Candidate | Skip:
    """An unpaid call of ``fetch``: the article's price, payee and free preview, or a Skip."""
    import anyio.to_thread

    from farthing.agents.brain import Candidate
    from farthing.agents.challenge import Challenge
    from farthing.agents.mcp.binding import tool_challenge
    from farthing.agents.pages import read_page
    from farthing.agents.runner import Skip
    from farthing.agents.selection import choose_offer
    from farthing.agents.tools import PriceCheck, policy_note

    url = BLOG_URL + path
    probe = await paying.probe("fetch", {"path": path})
    if probe.result is None:
        return Skip(url, title, probe.error or "no answer")
    challenge = tool_challenge(probe.result)
    if challenge is None:
        return Skip(url, title, "free: nothing to buy")
    chosen = (
        choose_offer(challenge, paying.payer.asset)
        if isinstance(challenge, Challenge)
        else challenge.reason
    )
    if isinstance(chosen, str):
        return Skip(url, title, f"unpayable: {chosen}")
    # The 402 result's second text is the free preview (the first is the terms).
    texts = [getattr(block, "text", "") for block in probe.result.content[1:2]]
    preview = read_page(texts[0], url=url).text[:_PREVIEW_CHARS] if texts else ""
    payee = chosen.requirements.pay_to
    note = await anyio.to_thread.run_sync(
        policy_note, paying.payer.books, task.task_id, url, chosen.amount, payee
    )
    check = PriceCheck(
        url, "priced", amount=chosen.amount, pay_to=payee, title=title, preview=preview,
        policy_note=note,
    )  # fmt: skip
    return Candidate(url, title, check)

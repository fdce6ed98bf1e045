"""The autonomous run: find candidates, price them, let the brain decide, buy, answer, report.

:class:`AgentRun` drives the tools for either brain, in four steps:

1. read the start pages (free ones are fetched with ``max_price`` 0) and
   collect the links they make on the same site, plus any start page that is
   itself for sale;
2. ``check_price`` every candidate (nothing is paid), and ask the brain to
   buy or skip each one;
3. buy in order of relevance, cheapest first among equals, re-reading the
   budget left before each purchase and skipping what no longer fits; each
   purchase is a ``fetch_paid`` tool call made by the brain and executed
   through the LangChain tool, so policy refusals come back as tool results;
4. ask the brain for the answer from what was read.

The :class:`RunReport` says what was bought, read for free, and skipped (with
the reason), what was spent against the budget, any possible spend still
awaiting the chain, and the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import ToolMessage

from farthing.agents.books import BudgetStatus
from farthing.agents.brain import Brain, Candidate, Reading
from farthing.agents.outcome import PaymentOutcome
from farthing.agents.pages import same_site
from farthing.agents.tools import AgentToolkit, FetchResult, PriceCheck, tool_call

__all__ = ["AgentRun", "Purchase", "RunReport", "Skip"]


@dataclass(frozen=True, slots=True)
class Purchase:
    """A page read: bought (``outcome.status == "paid"``) or free."""

    url: str
    title: str
    outcome: PaymentOutcome
    relevance: int
    reason: str
    chars: int

    @property
    def amount(self) -> int:
        return (self.outcome.amount or 0) if self.outcome.status == "paid" else 0


@dataclass(frozen=True, slots=True)
class Skip:
    """A candidate not bought, and why (the brain's reason, the budget, or the tool's refusal)."""

    url: str
    title: str
    reason: str
    price: int | None = None


@dataclass
class RunReport:
    """Everything a run did, for people (tables) and scripts (``--json``)."""

    task_id: str
    task: str
    budget: int
    brain: str
    bought: list[Purchase] = field(default_factory=list)
    read_free: list[Purchase] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    possible_spend: list[PaymentOutcome] = field(default_factory=list)
    answer: str = ""
    status: BudgetStatus | None = None

    @property
    def spent(self) -> int:
        return sum(p.amount for p in self.bought)


class AgentRun:
    """One task, one budget, one brain, the tools."""

    def __init__(
        self,
        toolkit: AgentToolkit,
        brain: Brain,
        *,
        start_urls: Sequence[str],
        progress: Callable[[str], None] | None = None,
        passed_over: Sequence[Skip] = (),
        listed: Mapping[str, int] | None = None,
    ) -> None:
        self.toolkit = toolkit
        # Listings a catalog offered that the run will not start from (a cheaper
        # seller of the same thing was chosen): reported as skipped, never fetched.
        self.passed_over = list(passed_over)
        # A catalog's price for each URL it chose (the cheapest seller): a 402
        # asking more is bait, never bought, whoever it names as payee (a seller
        # could list its page under a second payee); docs/discovery.md.
        self.listed = dict(listed or {})
        self.brain = brain
        self.start_urls = list(dict.fromkeys(start_urls))
        self.progress = progress or (lambda message: None)
        self.tools = {tool.name: tool for tool in toolkit.tools()}
        self._calls = 0

    async def _call(self, name: str, args: dict[str, Any]) -> ToolMessage:
        self._calls += 1
        return await self._invoke(tool_call(name, args, f"run-{self._calls}"))

    async def _invoke(self, call: dict[str, Any]) -> ToolMessage:
        tool = self.tools.get(call.get("name", ""))
        if tool is None:
            return ToolMessage(
                f"there is no tool named {call.get('name')!r}", tool_call_id=str(call.get("id"))
            )
        message = await tool.ainvoke(call)
        if not isinstance(message, ToolMessage):  # pragma: no cover - tool calls return messages
            return ToolMessage(str(message), tool_call_id=str(call.get("id")))
        return message

    async def run(self) -> RunReport:
        task = self.toolkit.task
        asset = self.toolkit.payer.asset
        report = RunReport(task.task_id, task.text, task.budget, self.brain.description)
        report.skipped.extend(self.passed_over)
        self.progress(self.brain.description)
        await self._call("wallet_status", {})

        candidates = await self._discover(report)
        self.progress(f"found {len(candidates)} candidate page(s); asking the brain about each")
        decisions = []
        for candidate in candidates:
            amount = self.listed.get(candidate.url)
            if amount is not None and candidate.price > amount:
                reason = (
                    f"its 402 asks {asset.format(candidate.price)}, more than the"
                    f" {asset.format(amount)} its catalog listing offered"
                )
                report.skipped.append(Skip(candidate.url, candidate.title, reason, candidate.price))
                self.progress(f"skip {candidate.title or candidate.url}: {reason}")
                continue
            left = (await self.toolkit.status()).remaining()
            decision = await self.brain.decide(task, candidate, left, asset)
            decisions.append((candidate, decision))
            price = "free" if candidate.price == 0 else asset.format(candidate.price)
            self.progress(
                f"{decision.decision:4} {candidate.title or candidate.url} ({price}): {decision.reason}"
            )

        readings: list[Reading] = []
        ordered = sorted(decisions, key=lambda item: (-item[1].relevance, item[0].price))
        for candidate, decision in ordered:
            if decision.decision != "buy":
                report.skipped.append(
                    Skip(candidate.url, candidate.title, decision.reason, candidate.price)
                )
                continue
            left = (await self.toolkit.status()).remaining()
            if candidate.price > left:
                reason = f"costs {asset.format(candidate.price)}, more than the {asset.format(left)} left of the budget"
                report.skipped.append(Skip(candidate.url, candidate.title, reason, candidate.price))
                self.progress(f"skip {candidate.title}: {reason}")
                continue
            call = await self.brain.buy(task, candidate, decision, asset, self.tools["fetch_paid"])
            if isinstance(call, str):
                report.skipped.append(Skip(candidate.url, candidate.title, call, candidate.price))
                continue
            message = await self._invoke(call)
            result = message.artifact
            if not isinstance(result, FetchResult):
                report.skipped.append(
                    Skip(
                        candidate.url, candidate.title, str(message.content)[:300], candidate.price
                    )
                )
                continue
            self._record(report, readings, candidate, decision.relevance, decision.reason, result)

        self.progress("writing the answer")
        report.answer = await self.brain.answer(task, readings)
        report.status = await self.toolkit.status()
        return report

    def _record(
        self,
        report: RunReport,
        readings: list[Reading],
        candidate: Candidate,
        relevance: int,
        reason: str,
        result: FetchResult,
    ) -> None:
        outcome = result.outcome
        title = (result.page.title if result.page else "") or candidate.title
        if outcome is not None and outcome.status == "possible_spend":
            report.possible_spend.append(outcome)
        if (
            result.delivered
            and result.page is not None
            and outcome is not None
            and outcome.status in ("paid", "free")
        ):
            purchase = Purchase(
                result.url, title, outcome, relevance, reason, len(result.page.text)
            )
            (report.bought if outcome.status == "paid" else report.read_free).append(purchase)
            readings.append(Reading(result.url, title, result.page.text))
            self.progress(
                f"{'bought' if outcome.status == 'paid' else 'read'} {title}: {outcome.describe()}"
            )
            return
        why = (
            outcome.describe()
            if outcome is not None
            else (result.error or f"HTTP {result.status_code}")
        )
        report.skipped.append(Skip(result.url, title, why, candidate.price))
        self.progress(f"not bought {title}: {why}")

    async def _discover(self, report: RunReport) -> list[Candidate]:
        limit = self.toolkit.settings.candidates_max
        found: dict[str, Candidate] = {}
        titles: dict[str, str] = {}
        for start in self.start_urls:
            check = await self._check(start)
            if check is None:
                continue
            if check.status == "free":
                message = await self._call(
                    "fetch_paid", {"url": start, "max_price": "0", "purpose": "read the start page"}
                )
                result = message.artifact
                if isinstance(result, FetchResult) and result.page is not None:
                    self.progress(f"read {start}: {len(result.page.links)} link(s)")
                    for link in result.page.links:
                        if same_site(link.url, start) and link.url not in self.start_urls:
                            titles.setdefault(link.url, link.text)
            elif check.status == "priced":
                found[start] = Candidate(start, check.title, check)
            else:
                report.skipped.append(
                    Skip(start, check.title, f"{check.reason}: {check.preview}".strip(": "))
                )
        for url, title in list(titles.items())[: max(0, limit - len(found))]:
            check = await self._check(url)
            if check is None:
                continue
            if check.status in ("free", "priced"):
                found[url] = Candidate(url, title or check.title, check)
            else:
                report.skipped.append(
                    Skip(url, title or check.title, f"{check.reason}: {check.preview}".strip(": "))
                )
        return list(found.values())[:limit]

    async def _check(self, url: str) -> PriceCheck | None:
        message = await self._call("check_price", {"url": url})
        check = message.artifact
        return check if isinstance(check, PriceCheck) else None

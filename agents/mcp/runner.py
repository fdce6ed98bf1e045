"""``farthing agent run --mcp``: the agent uses an MCP server's tools, judging each paid one like a page.

:class:`McpRun` follows :class:`~farthing.agents.runner.AgentRun` step for
step, with a server's tools where the web run has pages, and the same brains
and report:

1. list the server's tools through ``langchain-mcp-adapters``
   (:func:`~farthing.agents.mcp.tools.paying_tools`); for each, the arguments:
   the model's (:func:`~farthing.agents.mcp.tools.model_arguments`) with a
   model, else :func:`~farthing.agents.mcp.tools.rule_arguments`;
2. call each tool once **unpaid** (MCP has no way to ask a price without
   calling): a free tool answers (and so runs), a paid one answers with its
   402, whose terms become the candidate's price, payee and policy note; the
   tool's description is its untrusted preview;
3. the brain decides buy or skip for each, exactly as for pages; purchases go
   in order of relevance, cheapest first, the budget re-read before each;
   each is a call of the adapters' LangChain tool, allowed to pay at most the
   price the brain saw (:meth:`PayingInterceptor.allow`), through the payer's
   policy, approvals and books;
4. the brain answers from what was read.

A tool's text (description, result, the 402's ``error``) never reaches the
policy: only the 402's offers do, and only as a candidate to judge.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from farthing.agents.brain import Brain, Candidate, LlmBrain, Reading
from farthing.agents.challenge import Challenge
from farthing.agents.mcp.binding import tool_challenge, tool_resource
from farthing.agents.mcp.session import PayingSession, ToolCall, open_mcp
from farthing.agents.mcp.tools import (
    ARGUMENTS_BYTES_MAX,
    PayingInterceptor,
    model_arguments,
    paying_tools,
    rule_arguments,
)
from farthing.agents.payer import Payer
from farthing.agents.runner import Purchase, RunReport, Skip
from farthing.agents.selection import choose_offer
from farthing.agents.tools import PriceCheck, Task, policy_note, tool_call
from farthing.inference.chat import BuyDecision

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = ["McpRun"]

_PREVIEW_CHARS = 600


@dataclass(frozen=True, slots=True)
class _Priced:
    """A tool, the arguments it will be called with, and what its unpaid call said."""

    candidate: Candidate
    tool: BaseTool
    arguments: dict[str, Any]
    probe: ToolCall


class McpRun:
    """One task, one budget, one brain, the tools of some MCP servers."""

    def __init__(
        self,
        payer: Payer,
        task: Task,
        brain: Brain,
        *,
        servers: Sequence[str],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.payer = payer
        self.task = task
        self.brain = brain
        self.servers = list(dict.fromkeys(servers))
        self.progress = progress or (lambda message: None)
        self.settings = payer.settings

    async def run(self) -> RunReport:
        task = self.task
        report = RunReport(task.task_id, task.text, task.budget, self.brain.description)
        self.progress(self.brain.description)
        readings: list[Reading] = []
        for url in self.servers:
            try:
                async with open_mcp(url, self.settings) as session:
                    paying = PayingSession(session, self.payer, url)
                    interceptor = PayingInterceptor(
                        paying, task, chars_max=self.settings.content_chars_max
                    )
                    tools = await paying_tools(session, interceptor)
                    self.progress(f"{url}: {len(tools)} tool(s)")
                    await self._server(paying, interceptor, tools, report, readings)
            except Exception as exc:  # noqa: BLE001 - a server that fails is skipped and told
                report.skipped.append(Skip(url, url, f"the MCP server failed: {_one_line(exc)}"))
                self.progress(f"skip {url}: {_one_line(exc)}")
        self.progress("writing the answer")
        report.answer = await self.brain.answer(task, readings)
        report.status = await anyio.to_thread.run_sync(
            self.payer.books.status, task.task_id or None
        )
        return report

    async def _server(
        self,
        paying: PayingSession,
        interceptor: PayingInterceptor,
        tools: dict[str, BaseTool],
        report: RunReport,
        readings: list[Reading],
    ) -> None:
        asset = self.payer.asset
        priced: list[tuple[_Priced, BuyDecision]] = []
        for tool in list(tools.values())[: self.settings.candidates_max]:
            found = await self._price(paying, tool, report)
            if found is None:
                continue
            left = await self._left()
            decision = await self.brain.decide(self.task, found.candidate, left, asset)
            price = found.candidate.price
            what = "free" if price == 0 else asset.format(price)
            self.progress(f"{decision.decision:4} {tool.name} ({what}): {decision.reason}")
            priced.append((found, decision))
        ordered = sorted(priced, key=lambda item: (-item[1].relevance, item[0].candidate.price))
        for found, decision in ordered:
            candidate = found.candidate
            if decision.decision != "buy":
                report.skipped.append(
                    Skip(candidate.url, candidate.title, decision.reason, candidate.price)
                )
                continue
            if candidate.price == 0:
                # The unpaid call already brought the free tool's result.
                self._record(report, readings, found.probe, decision)
                continue
            left = await self._left()
            if candidate.price > left:
                reason = (
                    f"costs {asset.format(candidate.price)}, more than the "
                    f"{asset.format(left)} left of the budget"
                )
                report.skipped.append(Skip(candidate.url, candidate.title, reason, candidate.price))
                continue
            purpose = f"relevant to the task ({decision.relevance}/10)"
            interceptor.allow(found.tool.name, candidate.price, purpose)
            before = len(interceptor.calls)
            await found.tool.ainvoke(tool_call(found.tool.name, found.arguments, f"mcp-{before}"))
            if len(interceptor.calls) == before:  # the adapters refused the arguments
                why = "the tool's arguments did not fit its schema"
                report.skipped.append(Skip(candidate.url, candidate.title, why, candidate.price))
                continue
            self._record(report, readings, interceptor.calls[-1], decision)

    async def _price(
        self, paying: PayingSession, tool: BaseTool, report: RunReport
    ) -> _Priced | None:
        resource = tool_resource(paying.server_url, tool.name)
        schema = tool.args_schema if isinstance(tool.args_schema, dict) else None
        if isinstance(self.brain, LlmBrain):
            arguments = await model_arguments(self.brain.chat, tool, self.task)
        else:
            arguments = rule_arguments(schema, self.task)
        if isinstance(arguments, str):
            report.skipped.append(Skip(resource, tool.name, arguments))
            return None
        if len(json.dumps(arguments, default=str)) > ARGUMENTS_BYTES_MAX:
            report.skipped.append(Skip(resource, tool.name, "its arguments are too large"))
            return None
        probe = await paying.probe(tool.name, arguments)
        preview = (tool.description or "")[:_PREVIEW_CHARS]
        if probe.result is None:
            report.skipped.append(Skip(resource, tool.name, probe.error or "no answer"))
            return None
        if probe.outcome is not None:  # free: its result is the preview
            text = probe.text(_PREVIEW_CHARS)
            check = PriceCheck(probe.resource, "free", title=tool.name, preview=text or preview)
            return _Priced(Candidate(probe.resource, tool.name, check), tool, arguments, probe)
        challenge = tool_challenge(probe.result)
        chosen = (
            choose_offer(challenge, self.payer.asset)
            if isinstance(challenge, Challenge)
            else (challenge.reason if challenge is not None else "malformed_payment_required")
        )
        if isinstance(chosen, str):
            report.skipped.append(Skip(probe.resource, tool.name, f"unpayable: {chosen}"))
            return None
        note = await anyio.to_thread.run_sync(
            policy_note,
            self.payer.books,
            self.task.task_id,
            probe.resource,
            chosen.amount,
            chosen.requirements.pay_to,
        )
        check = PriceCheck(
            probe.resource,
            "priced",
            amount=chosen.amount,
            pay_to=chosen.requirements.pay_to,
            title=tool.name,
            preview=preview,
            policy_note=note,
        )
        return _Priced(Candidate(probe.resource, tool.name, check), tool, arguments, probe)

    async def _left(self) -> int:
        status = await anyio.to_thread.run_sync(self.payer.books.status, self.task.task_id or None)
        return status.remaining()

    def _record(
        self, report: RunReport, readings: list[Reading], call: ToolCall, decision: BuyDecision
    ) -> None:
        outcome = call.outcome
        if outcome is not None and outcome.status == "possible_spend":
            report.possible_spend.append(outcome)
        if call.delivered and outcome is not None:
            text = call.text(self.settings.content_chars_max)
            purchase = Purchase(
                call.resource, call.tool, outcome, decision.relevance, decision.reason, len(text)
            )
            (report.bought if outcome.status == "paid" else report.read_free).append(purchase)
            readings.append(Reading(call.resource, call.tool, text))
            self.progress(
                f"{'bought' if outcome.status == 'paid' else 'read'} {call.tool}: {outcome.describe()}"
            )
            return
        why = outcome.describe() if outcome is not None else (call.error or "no answer")
        price = outcome.amount if outcome is not None else None
        report.skipped.append(Skip(call.resource, call.tool, why, price))
        self.progress(f"not bought {call.tool}: {why}")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__

"""LangChain tools for a paying agent: check a price, fetch (paying within limits), wallet status.

Each tool has a typed, bounded argument schema (``extra="forbid"``: a model
cannot invent a ``pay_to`` or a ``budget`` argument) and never raises into
the agent: a bad URL, a seller that cannot be reached, an unusable 402, a
price above ``max_price``, a policy refusal, an empty wallet, each comes back
as a readable tool result. The tools answer with ``content_and_artifact``:
the text is for the model, the artifact (:class:`PriceCheck`,
:class:`FetchResult`, :class:`~farthing.agents.books.BudgetStatus`) for the
code that runs the agent.

There is deliberately no tool that pays an address: money goes only to the
``payTo`` of a 402 answering a URL the agent fetched itself, under the
task's budget and the durable spend policy, with ``max_price`` as a cap the
model can only lower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, Self
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from farthing.agents.books import AgentBooks, BudgetStatus
from farthing.agents.challenge import Challenge, FiatTerms, read_challenge
from farthing.agents.client import asettle_after_error
from farthing.agents.outcome import PaymentOutcome, outcome_of
from farthing.agents.pages import Page, fence, read_page
from farthing.agents.payer import Payer
from farthing.agents.policy import check_terms, needs_approval
from farthing.agents.reservations import open_payments
from farthing.agents.selection import choose_offer
from farthing.ledger.ids import format_transfer_id
from farthing.wallet.errors import AmountError

__all__ = [
    "BODY_BYTES_MAX",
    "AgentToolkit",
    "CheckPriceArgs",
    "FetchArgs",
    "FetchResult",
    "PriceCheck",
    "StatusArgs",
    "Task",
    "policy_note",
    "tool_call",
]

BODY_BYTES_MAX: Final = 2 * 1024 * 1024
_URL_MAX: Final = 300  # long enough for real pages; the LLM brain narrows it per call
_PREVIEW_CHARS: Final = 600
# Digits only, at most 18 decimals: a price is text, never a float.
_PRICE_PATTERN: Final = r"^[0-9]{1,12}(\.[0-9]{1,18})?$"


class CheckPriceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=_URL_MAX, description="The http(s) URL to price, without paying.")


class FetchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=_URL_MAX, description="The http(s) URL to fetch.")
    max_price: str = Field(
        max_length=24,
        pattern=_PRICE_PATTERN,
        description="The most to pay for it, in the wallet's token, e.g. 0.02; 0 fetches only free pages.",
    )
    purpose: str = Field(
        default="", max_length=120, description="Why this purchase helps the task, a few words."
    )


class StatusArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class Task:
    """What the agent is doing: recorded with every payment it makes."""

    task_id: str
    text: str
    budget: int  # atomic units of the wallet's asset


@dataclass(frozen=True, slots=True)
class PriceCheck:
    """What ``check_price`` found out."""

    url: str
    status: Literal["free", "priced", "unpayable", "error"]
    amount: int | None = None
    pay_to: str | None = None
    reason: str | None = None  # why it cannot be paid, or what went wrong
    title: str = ""
    preview: str = ""
    fiat: FiatTerms | None = None
    policy_note: str | None = None  # what the spend policy would say, if not a plain yes


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What ``fetch_paid`` brought back."""

    url: str
    status_code: int | None
    outcome: PaymentOutcome | None
    page: Page | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.page is not None and self.status_code is not None and self.status_code < 300


class AgentToolkit:
    """The three tools, bound to one payer and one task, sharing one HTTP client."""

    def __init__(
        self,
        payer: Payer,
        task: Task,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        expected_buys: int | None = None,
    ) -> None:
        self.payer = payer
        self.task = task
        # The caller's estimate of buys from one seller for this task: enough
        # of them prefers a batch-settlement channel (Payer.prefers_channel).
        self.expected_buys = expected_buys
        self.settings = payer.settings
        self.http = httpx.AsyncClient(
            timeout=self.settings.http_timeout(),
            limits=self.settings.http_limits(),
            follow_redirects=False,  # a redirect is reported, never followed with money
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def tools(self) -> list[BaseTool]:
        return [
            StructuredTool.from_function(
                coroutine=self._check_price_tool,
                name="check_price",
                description=(
                    "Look up what a URL costs without paying: free, or its price, payee and a "
                    "free preview."
                ),
                args_schema=CheckPriceArgs,
                response_format="content_and_artifact",
                handle_validation_error=_invalid_arguments,
            ),
            StructuredTool.from_function(
                coroutine=self._fetch_tool,
                name="fetch_paid",
                description=(
                    "Fetch a URL, paying its seller if it asks, but never more than max_price and "
                    "never beyond the task's budget or the spend policy. Returns the content, "
                    "the cost and a receipt."
                ),
                args_schema=FetchArgs,
                response_format="content_and_artifact",
                handle_validation_error=_invalid_arguments,
            ),
            StructuredTool.from_function(
                coroutine=self._status_tool,
                name="wallet_status",
                description="The wallet's balance and what is left of the task's budget and limits.",
                args_schema=StatusArgs,
                response_format="content_and_artifact",
                handle_validation_error=_invalid_arguments,
            ),
        ]

    # ------------------------------------------------------------ check_price

    async def _check_price_tool(self, url: str) -> tuple[str, PriceCheck]:
        check = await self.check_price(url)
        return self.describe_check(check), check

    async def check_price(self, url: str) -> PriceCheck:
        problem = _bad_url(url)
        if problem is not None:
            return PriceCheck(url, "error", reason="invalid_url", title="", preview=problem)
        try:
            async with self.http.stream("GET", url) as streamed:
                body = await _read_bounded(streamed)
        except httpx.HTTPError as exc:
            return PriceCheck(url, "error", reason="host_unreachable", preview=_one_line(exc))
        # A whole response again, from the bounded body, for the readers below.
        response = httpx.Response(streamed.status_code, headers=streamed.headers, content=body)
        if response.status_code != 402:
            page = _page_of(response, url)
            if response.is_success:
                return PriceCheck(url, "free", title=page.title, preview=page.text[:_PREVIEW_CHARS])
            return PriceCheck(url, "error", reason=f"http_{response.status_code}", title=page.title)
        challenge = read_challenge(response)
        if not isinstance(challenge, Challenge):
            return PriceCheck(url, "unpayable", reason=challenge.reason, preview=challenge.message)
        preview_page = read_page(challenge.preview or "", url=url)
        title = preview_page.title or challenge.description
        chosen = choose_offer(challenge, self.payer.asset)
        if isinstance(chosen, str):
            return PriceCheck(
                url,
                "unpayable",
                reason=chosen,
                title=title,
                preview=preview_page.text[:_PREVIEW_CHARS],
            )
        amount, pay_to = chosen.amount, chosen.requirements.pay_to
        note = await anyio.to_thread.run_sync(self._policy_note, url, amount, pay_to)
        return PriceCheck(
            url,
            "priced",
            amount=amount,
            pay_to=pay_to,
            title=title,
            preview=preview_page.text[:_PREVIEW_CHARS],
            fiat=challenge.fiat,
            policy_note=note,
        )

    def _policy_note(self, url: str, amount: int, pay_to: str) -> str | None:
        return policy_note(self.payer.books, self.task.task_id, url, amount, pay_to)

    def describe_check(self, check: PriceCheck) -> str:
        asset = self.payer.asset
        title = f' "{check.title}"' if check.title else ""
        if check.status == "error":
            return (
                f"Could not price {check.url}{title}: {check.reason}. {check.preview or ''}".strip()
            )
        if check.status == "free":
            return f"{check.url}{title} is free.\n" + fence(
                check.preview, source=check.url, chars_max=_PREVIEW_CHARS
            )
        if check.status == "unpayable":
            return f"{check.url}{title} asks for a payment this wallet cannot make: {check.reason}."
        price = asset.format(check.amount or 0)
        if check.fiat is not None:
            price += f" ({check.fiat.amount} {check.fiat.currency} at {check.fiat.rate} {asset.symbol}/{check.fiat.currency})"
        verdict = (
            "within the spend policy"
            if check.policy_note is None
            else f"policy: {check.policy_note}"
        )
        lines = [f"{check.url}{title} costs {price}, paid to {check.pay_to}; {verdict}."]
        if check.preview:
            lines.append(
                fence(
                    check.preview,
                    source=f"the free preview of {check.url}",
                    chars_max=_PREVIEW_CHARS,
                )
            )
        return "\n".join(lines)

    # ------------------------------------------------------------ fetch_paid

    async def _fetch_tool(
        self, url: str, max_price: str, purpose: str = ""
    ) -> tuple[str, FetchResult]:
        result = await self.fetch(url, max_price=max_price, purpose=purpose)
        return self.describe_fetch(result), result

    async def fetch(self, url: str, *, max_price: str, purpose: str = "") -> FetchResult:
        problem = _bad_url(url)
        if problem is not None:
            return FetchResult(url, None, None, error=f"invalid_url: {problem}")
        try:
            cap = self.payer.asset.parse(max_price)
        except AmountError as exc:
            return FetchResult(url, None, None, error=f"invalid_max_price: {exc}")
        auth = self.payer.auth(
            task_id=self.task.task_id or None,
            purpose=(purpose.strip() or self.task.text)[:200],
            max_price=cap,
            expected_buys=self.expected_buys,
        )
        try:
            async with self.http.stream("GET", url, auth=auth) as response:
                body = await _read_bounded(response)
        except httpx.HTTPError as exc:
            outcome = await asettle_after_error(self.payer, exc)
            if outcome is None or outcome.status == "free":
                return FetchResult(url, None, None, error=f"host_unreachable: {_one_line(exc)}")
            return FetchResult(url, None, outcome, error=_one_line(exc))
        outcome = outcome_of(response)
        media_type = response.headers.get("content-type", "text/plain")
        page = None
        if response.is_success:
            page = read_page(
                body.decode(response.encoding or "utf-8", errors="replace"),
                url=url,
                media_type=media_type,
            )
        return FetchResult(url, response.status_code, outcome, page)

    def describe_fetch(self, result: FetchResult) -> str:
        outcome = result.outcome
        if result.error is not None and outcome is None:
            return f"Could not fetch {result.url}: {result.error}. Nothing was paid."
        head = (
            outcome.describe() if outcome is not None else f"{result.url}: no payment information"
        )
        if outcome is not None and outcome.payment_id is not None:
            head += f" [payment id {format_transfer_id(outcome.payment_id)}]"
        if outcome is not None and outcome.status in ("not_paid", "refused"):
            head += ". Nothing was charged"
        if result.page is None:
            status = f" (HTTP {result.status_code})" if result.status_code else ""
            return f"{head}{status}."
        title = f'Title: "{result.page.title}"\n' if result.page.title else ""
        return f"{head}.\n{title}" + fence(
            result.page.text, source=result.url, chars_max=self.settings.content_chars_max
        )

    # ------------------------------------------------------------ wallet_status

    async def _status_tool(self) -> tuple[str, BudgetStatus]:
        status, balance, possible = await anyio.to_thread.run_sync(self._status)
        return self.describe_status(status, balance, possible), status

    def _status(self) -> tuple[BudgetStatus, int, int]:
        status = self.payer.books.status(self.task.task_id or None)
        return status, self.payer.balance(), len(open_payments(self.payer.books))

    async def status(self) -> BudgetStatus:
        status, _, _ = await anyio.to_thread.run_sync(self._status)
        return status

    def describe_status(self, status: BudgetStatus, balance: int, possible: int) -> str:
        f = self.payer.asset.format
        lines = [
            f"Wallet {self.payer.address} holds {f(balance)} on {self.payer.asset.network}.",
            (
                f"Task {self.task.task_id}: budget {f(status.task_budget or 0)}, spent or reserved "
                f"{f(status.task_spent)}, left {f(status.task_remaining or 0)}."
            ),
            (
                f"Agent budget: funded {f(status.funded)}, spent {f(status.spent)}, reserved "
                f"{f(status.reserved)}, available {f(status.available)}."
            ),
        ]
        if status.daily_limit is not None:
            lines.append(f"Daily limit {f(status.daily_limit)}, used {f(status.daily_used)}.")
        if status.total_budget is not None:
            lines.append(f"Total budget {f(status.total_budget)}.")
        if possible:
            lines.append(f"{possible} payment(s) await resolution from the chain (possible spend).")
        lines.append(f"The most the next payment can be: {f(status.remaining())}.")
        return "\n".join(lines)


def policy_note(books: AgentBooks, task_id: str, url: str, amount: int, pay_to: str) -> str | None:
    """What the policy would say of paying ``amount`` to ``pay_to`` for ``url``, reserving nothing.

    The payment itself checks it all again; this is what a price check tells
    the brain beforehand.
    """
    policy = books.policy()
    refusal = check_terms(policy, host=urlsplit(url).hostname or "", pay_to=pay_to)
    if refusal is not None:
        return refusal
    if policy.payment_cap is not None and amount > policy.payment_cap:
        return "exceeds_payment_cap"
    if amount > books.status(task_id or None).remaining():
        return "exceeds_task_budget"
    if needs_approval(policy, amount):
        return "needs_approval"
    return None


def _invalid_arguments(error: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors()[:4]
    )
    return f"The tool was called with invalid arguments ({problems}). Nothing was fetched or paid."


def _bad_url(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "only http(s) URLs with a host can be fetched"
    return None


def _page_of(response: httpx.Response, url: str) -> Page:
    media_type = response.headers.get("content-type", "text/plain")
    return read_page(response.text, url=url, media_type=media_type)


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_BYTES_MAX:
            break  # the rest is not read; the text handed on says it was cut
    return b"".join(chunks)[:BODY_BYTES_MAX]


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


def tool_call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    """A LangChain tool call, so invoking a tool returns its ToolMessage with the artifact."""
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}

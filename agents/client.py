"""The paying client: an ``httpx.Auth`` that answers a 402 once, the way DigestAuth answers a 401.

::

    payer = Payer(signer=..., chain=..., asset=..., books=AgentBooks(...))
    with paying_client(payer, task_id="t-1", purpose="research", max_price=20_000) as http:
        response = http.get("https://blog.example/posts/farthing")
    outcome_of(response)          # PaymentOutcome: paid / not_paid / refused / possible_spend

The flow (:meth:`PaymentAuth._flow`) sends the request as it is. On a 402 it
reads the seller's terms and hands them to :meth:`Payer.prepare`, which checks
every limit, **reserves** the amount in the ledger and only then signs. It
sends the request once more with ``PAYMENT-SIGNATURE`` (or v1's
``X-PAYMENT``), retries that same payment a few times while the seller says
``settlement_pending`` (a 503: never a new signature), and hands the answer to
:meth:`Payer.finish`, which posts, voids or leaves the reservation pending.
A paid answer that streams (server-sent events, charged by usage) is booked
from its last event as the caller reads it (``farthing.agents.streamed``).

The flow is one generator for both worlds. It yields requests to send and,
for the blocking work (the ledger, the chain, signing, waiting for an
approval), small steps that :meth:`PaymentAuth.sync_auth_flow` runs inline and
:meth:`PaymentAuth.async_auth_flow` runs in a worker thread, so an asyncio
agent never blocks its event loop. Unit tests drive ``sync_auth_flow`` by hand.

If the signed request gets no answer (a timeout), httpx raises to the caller.
The paid request already carries a ``possible_spend`` outcome and the
prepared payment in its extensions (:func:`outcome_of` on ``exc.request``),
and :func:`settle_after_error` asks the chain what happened.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import anyio
import anyio.to_thread
import httpx

from farthing.agents.challenge import read_challenge, read_settlement
from farthing.agents.channels.prepared import ChannelPrepared
from farthing.agents.outcome import OUTCOME_EXTENSION, PaymentOutcome, outcome_of
from farthing.agents.payer import AnyPrepared, Intent, Payer, Prepared
from farthing.agents.streamed import is_metered_stream, watch_stream
from farthing.agents.upto import UptoPrepared
from farthing.faults import crash_point

__all__ = [
    "PREPARED_EXTENSION",
    "PaymentAuth",
    "asettle_after_error",
    "async_paying_client",
    "paying_client",
    "settle_after_error",
]

PREPARED_EXTENSION: Final = "farthing.prepared"


@dataclass(frozen=True, slots=True)
class _Read:
    """Read this response's body (the 402's terms may be in it)."""

    response: httpx.Response


@dataclass(frozen=True, slots=True)
class _Call:
    """Blocking work: the ledger, the chain, signing, or a wait for approval."""

    fn: Callable[[], Any]


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Stream:
    """A paid answer that streams: book its charge from its last event (farthing.agents.streamed)."""

    response: httpx.Response
    prepared: Any


_Step = httpx.Request | _Read | _Call | _Sleep | _Stream


class PaymentAuth(httpx.Auth):
    """Pays a 402 for one purchase intent (task, purpose, ``max_price``) under the payer's policy."""

    requires_request_body = True  # the paid retry re-sends the same body

    def __init__(self, payer: Payer, intent: Intent) -> None:
        self.payer = payer
        self.intent = intent

    def __repr__(self) -> str:
        return f"PaymentAuth({self.payer!r}, {self.intent!r})"

    def _flow(self, request: httpx.Request) -> Generator[_Step, Any, None]:
        response: httpx.Response = yield request
        url = str(request.url)
        if response.status_code != 402:
            response.extensions[OUTCOME_EXTENSION] = PaymentOutcome(
                status="free", url=url, task_id=self.intent.task_id, purpose=self.intent.purpose
            )
            return
        yield _Read(response)
        # Already bought (our books say so) and the seller offers sign-in-with-x:
        # prove the wallet instead of paying again (farthing.agents.sign_in).
        signed_in = yield _Call(partial(self.payer.sign_in_header, url, response))
        if signed_in is not None:
            again: httpx.Response = yield _with_header(request, signed_in)
            if again.status_code != 402:
                again.extensions[OUTCOME_EXTENSION] = PaymentOutcome(
                    status="free", url=url, reason="already_owned",
                    task_id=self.intent.task_id, purpose=self.intent.purpose,
                )  # fmt: skip
                return
            yield _Read(again)
            response = again  # not owned after all: pay from this fresh 402
        challenge = read_challenge(response)
        prepared = yield _Call(partial(self.payer.prepare, url, challenge, self.intent))
        if isinstance(prepared, PaymentOutcome):
            response.extensions[OUTCOME_EXTENSION] = prepared
            return
        retries = 0
        resynced = False
        while True:
            paid_request = _with_payment(request, prepared)
            paid: httpx.Response = yield paid_request
            crash_point("agent.after_send")
            if _settlement_pending(paid) and retries < self.payer.settings.settle_retry_count_max:
                # The seller is still settling *this* payment: ask again with
                # the same header; a new signature could be charged twice.
                retries += 1
                yield _Read(paid)
                yield _Sleep(self.payer.settings.settle_retry_delay_s)
                continue
            if paid.status_code == 402:
                yield _Read(paid)
            crash_point("agent.after_response")
            if is_metered_stream(paid):
                yield _Stream(paid, prepared)  # booked as the caller reads it
                return
            outcome = yield _Call(partial(self.payer.finish, prepared, paid))
            if outcome.reason == "channel_resynced" and not resynced:
                # A corrective 402 on a channel: the state was resynced as far
                # as it could be verified; sign once more, from that state.
                resynced, retries = True, 0
                resigned = yield _Call(
                    partial(self.payer.prepare, url, read_challenge(paid), self.intent)
                )
                if isinstance(resigned, PaymentOutcome):
                    paid.extensions[OUTCOME_EXTENSION] = resigned
                    return
                prepared = resigned
                continue
            break
        crash_point("agent.after_post")
        paid.extensions[OUTCOME_EXTENSION] = outcome

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        steps = self._flow(request)
        value: Any = None
        try:
            while True:
                try:
                    step = steps.send(value)
                except StopIteration:
                    return
                if isinstance(step, httpx.Request):
                    value = yield step
                elif isinstance(step, _Read):
                    value = step.response.read()
                elif isinstance(step, _Call):
                    value = step.fn()
                elif isinstance(step, _Stream):
                    watch_stream(self.payer, step.prepared, step.response, asynchronous=False)
                    value = None
                else:
                    time.sleep(step.seconds)
                    value = None
        finally:
            steps.close()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        steps = self._flow(request)
        value: Any = None
        try:
            while True:
                try:
                    step = steps.send(value)
                except StopIteration:
                    return
                if isinstance(step, httpx.Request):
                    value = yield step
                elif isinstance(step, _Read):
                    value = await step.response.aread()
                elif isinstance(step, _Call):
                    value = await anyio.to_thread.run_sync(step.fn)
                elif isinstance(step, _Stream):
                    watch_stream(self.payer, step.prepared, step.response, asynchronous=True)
                    value = None
                else:
                    await anyio.sleep(step.seconds)
                    value = None
        finally:
            steps.close()


def _with_payment(request: httpx.Request, prepared: AnyPrepared) -> httpx.Request:
    headers = request.headers.copy()
    name, value = prepared.header
    headers[name] = value
    paid = httpx.Request(
        request.method,
        request.url,
        headers=headers,
        content=request.content,
        extensions=dict(request.extensions),  # keeps the client's timeout
    )
    # Should the seller never answer, the caller still learns what may have been spent.
    paid.extensions[OUTCOME_EXTENSION] = prepared.outcome(
        "possible_spend", "timeout", message="no answer after the payment was sent"
    )
    paid.extensions[PREPARED_EXTENSION] = prepared
    return paid


def _with_header(request: httpx.Request, header: tuple[str, str]) -> httpx.Request:
    headers = request.headers.copy()
    headers[header[0]] = header[1]
    return httpx.Request(
        request.method,
        request.url,
        headers=headers,
        content=request.content,
        extensions=dict(request.extensions),
    )


def _settlement_pending(response: httpx.Response) -> bool:
    if response.status_code != 503:
        return False
    settlement = read_settlement(response)
    return settlement is not None and settlement.pending


def settle_after_error(payer: Payer, error: httpx.HTTPError) -> PaymentOutcome | None:
    """After a transport error: the payment's outcome, asking the chain; None if nothing was signed."""
    request = _request_of(error)
    prepared = request.extensions.get(PREPARED_EXTENSION) if request is not None else None
    if not isinstance(prepared, Prepared | ChannelPrepared | UptoPrepared):
        return outcome_of(request) if request is not None else None
    return payer.after_error(prepared, error)


async def asettle_after_error(payer: Payer, error: httpx.HTTPError) -> PaymentOutcome | None:
    """:func:`settle_after_error` for asyncio (the chain is asked in a worker thread)."""
    return await anyio.to_thread.run_sync(settle_after_error, payer, error)


def _request_of(error: httpx.HTTPError) -> httpx.Request | None:
    try:
        return error.request
    except RuntimeError:  # httpx raises when an error carries no request
        return None


def paying_client(
    payer: Payer,
    *,
    task_id: str | None = None,
    purpose: str | None = None,
    max_price: int | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` that pays for this intent, with explicit timeouts and limits.

    Redirects are not followed: a page must not send the agent, and its
    money, somewhere it did not choose to go.
    """
    settings = payer.settings
    return httpx.Client(
        auth=payer.auth(task_id=task_id, purpose=purpose, max_price=max_price),
        timeout=settings.http_timeout(),
        limits=settings.http_limits(),
        follow_redirects=False,
        transport=transport,
    )


def async_paying_client(
    payer: Payer,
    *,
    task_id: str | None = None,
    purpose: str | None = None,
    max_price: int | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """:func:`paying_client` for asyncio."""
    settings = payer.settings
    return httpx.AsyncClient(
        auth=payer.auth(task_id=task_id, purpose=purpose, max_price=max_price),
        timeout=settings.http_timeout(),
        limits=settings.http_limits(),
        follow_redirects=False,
        transport=transport,
    )

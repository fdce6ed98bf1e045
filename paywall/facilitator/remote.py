"""A facilitator reached over HTTP: ours (``farthing facilitator serve``) or any x402 one.

It speaks the x402 v2 facilitator API (``GET /supported``, ``POST /verify``,
``POST /settle``, camelCase JSON) with an explicit ``httpx`` timeout and
connection limits. Payment outcomes come back as values; a facilitator that
does not answer, answers a status other than 200, or answers something that is
not a verify/settle response raises ``FacilitatorUnavailableError`` (a 503 at
the paywall). The official SDK's reason codes are mapped to Farthing's, so the
payer sees the same reasons whichever facilitator is behind the paywall.

A facilitator's ``EXTENSION-RESPONSES`` header (x402 v2 §7.2.1: what it made
of the payment's extensions, e.g. whether the ``bazaar`` declaration will be
cataloged) is for the seller alone: it is read bounded and logged, one line,
and never reaches the buyer.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final, Protocol, TypeVar

import httpx

from farthing.paywall.discovery.ingest import EXTENSION_RESPONSES_HEADER
from farthing.paywall.errors import FacilitatorUnavailableError, PaywallConfigError
from farthing.paywall.schemes.auth_capture.wire import SCHEME as AUTH_CAPTURE_SCHEME
from farthing.paywall.schemes.auth_capture.wire import AuthCapturePayment, AuthCaptureRequirements
from farthing.paywall.schemes.batch_settlement.types import ChannelPayment, ChannelRequirements
from farthing.paywall.schemes.batch_settlement.wire import SCHEME as CHANNEL_SCHEME
from farthing.paywall.schemes.upto.wire import UptoPayment, UptoRequirements
from farthing.paywall.seam import Supported
from farthing.paywall.wire import (
    X402_VERSION,
    PaymentPayload,
    PaymentRequirements,
    SettleResult,
    VerifyResult,
    unb64_json_bounded,
)
from farthing.wallet.address import checksum, is_address
from farthing.wallet.errors import AuthorizationError
from farthing.web import JsonBodyError, loads_bounded

__all__ = ["RESPONSE_BYTES_MAX", "X402_REASONS", "RemoteFacilitator"]

# A facilitator's answer is a few hundred bytes; its nesting is bounded too
# (farthing.web.loads_bounded), so a hostile one is an outage, not a crash.
RESPONSE_BYTES_MAX: Final = 1024 * 1024

# The x402 SDK's exact-EVM codes, as Farthing's reasons.
X402_REASONS: Final = {
    "invalid_exact_evm_nonce_already_used": "nonce_already_used",
    "invalid_exact_evm_insufficient_balance": "insufficient_balance",
    "invalid_exact_evm_payload_signature": "invalid_signature",
    "invalid_exact_evm_payload_authorization_valid_before": "authorization_expired",
    "invalid_exact_evm_payload_authorization_valid_after": "authorization_not_yet_valid",
    "invalid_exact_evm_payload_recipient_mismatch": "pay_to_mismatch",
    "invalid_exact_evm_payload_authorization_value_mismatch": "amount_mismatch",
}


_Answer = TypeVar("_Answer", VerifyResult, SettleResult)
_SIDE_CHANNEL_CHARS_MAX: Final = 4096
_BAZAAR_STATUSES: Final = frozenset({"success", "processing", "rejected"})
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e]")

log = logging.getLogger(__name__)


def _log_extension_responses(value: str | None, url: str, path: str) -> None:
    """The facilitator's side channel, bounded: one log line of its bazaar status, if any."""
    if not value:
        return
    decoded = unb64_json_bounded(value, bytes_max=_SIDE_CHANNEL_CHARS_MAX)
    bazaar = decoded.get("bazaar") if isinstance(decoded, dict) else None
    status = bazaar.get("status") if isinstance(bazaar, dict) else None
    if status not in _BAZAAR_STATUSES:
        return
    assert isinstance(bazaar, dict)
    reason = bazaar.get("rejectedReason")
    why = _UNPRINTABLE.sub("?", reason[:200]) if isinstance(reason, str) else ""
    if status == "rejected":
        log.warning("the facilitator at %s will not catalog %s's declaration: %s", url, path, why)
    else:
        log.info("the facilitator at %s catalogs the declaration (%s)", url, status)


class _Wired(Protocol):
    """A payload or requirements of any scheme: what goes into a request body."""

    def to_wire(self) -> dict[str, Any]: ...


class RemoteFacilitator:
    """An x402 v2 facilitator at ``url``, with an optional bearer token."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        connections_max: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise PaywallConfigError(f"a facilitator URL must be http(s)://, got {url!r}")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(
                max_connections=connections_max, max_keepalive_connections=connections_max
            ),
            transport=transport,  # None: the network; an ASGITransport in tests
        )

    def __repr__(self) -> str:
        return f"RemoteFacilitator({self.url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            async with self._client.stream(method, path, json=body) as response:
                status = response.status_code
                side_channel = response.headers.get(EXTENSION_RESPONSES_HEADER)
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > RESPONSE_BYTES_MAX:
                        break  # loads_bounded refuses it; read no more
        except httpx.TimeoutException:
            raise FacilitatorUnavailableError(f"the facilitator at {self.url} timed out") from None
        except httpx.HTTPError:
            raise FacilitatorUnavailableError(
                f"the facilitator at {self.url} did not answer"
            ) from None
        if status != 200:
            raise FacilitatorUnavailableError(
                f"the facilitator at {self.url} answered HTTP {status} to {path}"
            )
        _log_extension_responses(side_channel, self.url, path)
        try:
            return loads_bounded(bytes(content), bytes_max=RESPONSE_BYTES_MAX)
        except JsonBodyError as exc:
            raise FacilitatorUnavailableError(
                f"the facilitator at {self.url} answered {path} with something that is not "
                f"bounded JSON ({exc.reason})"
            ) from None

    async def _ask(
        self, kind: type[_Answer], path: str, payload: _Wired, requirements: _Wired
    ) -> _Answer:
        """``POST path`` (``/verify`` or ``/settle``) of any scheme's payload, as ``kind``."""
        body = {
            "x402Version": X402_VERSION,
            "paymentPayload": payload.to_wire(),
            "paymentRequirements": requirements.to_wire(),
        }
        data = await self._call("POST", path, body)
        try:
            return kind.from_wire(data)
        except AuthorizationError:
            raise FacilitatorUnavailableError(
                f"the facilitator at {self.url} sent a malformed {path[1:]} response"
            ) from None

    async def verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResult:
        result = await self._ask(VerifyResult, "/verify", payload, requirements)
        if result.reason in X402_REASONS:
            return VerifyResult(
                result.valid, X402_REASONS[result.reason], result.payer, result.message
            )
        return result

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResult:
        result = await self._ask(SettleResult, "/settle", payload, requirements)
        if result.reason in X402_REASONS:
            return SettleResult(
                result.success,
                result.network,
                result.transaction,
                result.payer,
                result.amount,
                X402_REASONS[result.reason],
                result.message,
            )
        return result

    async def verify_channel(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> VerifyResult:
        """``/verify`` of a batch-settlement payload (deposit, voucher or refund)."""
        return await self._ask(VerifyResult, "/verify", payment, requirements)

    async def settle_channel(
        self, payment: ChannelPayment, requirements: ChannelRequirements
    ) -> SettleResult:
        """``/settle`` of a deposit, claim, settle or refund payload."""
        return await self._ask(SettleResult, "/settle", payment, requirements)

    async def verify_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> VerifyResult:
        """``/verify`` of an auth-capture payload (the client's, or a lifecycle one)."""
        return await self._ask(VerifyResult, "/verify", payment, requirements)

    async def settle_auth_capture(
        self, payment: AuthCapturePayment, requirements: AuthCaptureRequirements
    ) -> SettleResult:
        """``/settle`` of an authorize, capture, void or refund payload."""
        return await self._ask(SettleResult, "/settle", payment, requirements)

    async def verify_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> VerifyResult:
        """``/verify`` of an upto payment (``requirements.amount`` the ceiling)."""
        return await self._ask(VerifyResult, "/verify", payment, requirements)

    async def settle_upto(
        self, payment: UptoPayment, requirements: UptoRequirements
    ) -> SettleResult:
        """``/settle`` of an upto payment (``requirements.amount`` the actual charge)."""
        return await self._ask(SettleResult, "/settle", payment, requirements)

    async def upto_facilitator(self, network: str) -> str | None:
        """Whom an ``upto`` payer names to settle on ``network`` (``/supported``), if it settles upto there."""
        data = await self._call("GET", "/supported")
        kinds = data.get("kinds") if isinstance(data, dict) else None
        for kind in kinds if isinstance(kinds, list) else []:
            if not isinstance(kind, dict) or (kind.get("scheme"), kind.get("network")) != (
                "upto",
                network,
            ):
                continue
            extra = kind.get("extra")
            address = extra.get("facilitatorAddress") if isinstance(extra, dict) else None
            if isinstance(address, str) and is_address(address):
                return checksum(address)
        return None

    async def supported(self) -> Supported:
        data = await self._call("GET", "/supported")
        kinds = data.get("kinds") if isinstance(data, dict) else None
        if not isinstance(kinds, list):
            raise FacilitatorUnavailableError(f"the facilitator at {self.url} lists no kinds")
        listed = [k for k in kinds if isinstance(k, dict) and isinstance(k.get("network"), str)]
        networks = tuple(k["network"] for k in listed if k.get("scheme", "exact") == "exact")
        channels = [k for k in listed if k.get("scheme") == CHANNEL_SCHEME]
        extra = next((k["extra"] for k in channels if isinstance(k.get("extra"), dict)), None)
        signers = data.get("signers") if isinstance(data.get("signers"), dict) else {}
        addresses = tuple(a for group in signers.values() if isinstance(group, list) for a in group)
        held = [k for k in listed if k.get("scheme") == AUTH_CAPTURE_SCHEME]
        held_extra = next((k["extra"] for k in held if isinstance(k.get("extra"), dict)), None)
        return Supported(
            networks,
            addresses,
            tuple(k["network"] for k in channels),
            extra,
            tuple(k["network"] for k in held),
            held_extra,
        )

"""Buy once, read again: an article its reader already bought is served without paying.

A receipt cookie (``farthing.paywall.edge.receipts``) or an x402
sign-in-with-x header (``farthing.paywall.edge.sign_in``) from a wallet that
paid for the path proves ownership; the article is then served privately
(never from a shared cache). A sign-in is spent once across every replica
(``farthing.paywall.edge.nonces``) and only when it opens something. A
settled, paid answer for an article gets a receipt cookie on its way out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from farthing.paywall.edge.asgi import (
    Send,
    cookie,
    header,
    header_of,
    in_thread,
    private_answer,
    send_unavailable,
)
from farthing.paywall.edge.challenge import resource_url
from farthing.paywall.edge.nonces import UsedSignIns
from farthing.paywall.edge.receipts import Receipt, Receipts
from farthing.paywall.edge.routes import ResolvedRoute
from farthing.paywall.edge.sign_in import SIGN_IN_WITH_X, SignInRefusal, check_sign_in, has_paid
from farthing.paywall.errors import PaymentStoreError
from farthing.paywall.records.store import PaymentStore
from farthing.paywall.wire import (
    PAYMENT_HEADER_BYTES_MAX,
    PAYMENT_RESPONSE_HEADER,
    unb64_json_bounded,
)

__all__ = ["OwnedArticles"]

log = logging.getLogger("farthing.paywall")


class OwnedArticles:
    """Receipts and sign-ins for the article routes of one :class:`PaywallMiddleware`."""

    def __init__(
        self,
        app: Any,
        *,
        receipts: Receipts,
        used_sign_ins: UsedSignIns | None,
        store: PaymentStore,
        public_url: str | None,
    ) -> None:
        self.app = app
        self.receipts = receipts
        self.used_sign_ins = used_sign_ins  # None: sign-in is off
        self.store = store
        self.public_url = public_url

    async def serve(
        self, scope: dict[str, Any], receive: Any, send: Send, route: ResolvedRoute
    ) -> bool:
        """Serve an article its reader already bought: a receipt cookie or a sign-in proves it."""
        receipts = self.receipts
        path = scope["path"]
        token = cookie(scope, receipts.cookie_name(path))
        if token is not None and isinstance(receipts.check(token, path), Receipt):
            await self.app(scope, receive, private_answer(send, []))
            return True
        signed_header = header(scope, SIGN_IN_WITH_X.encode())
        used = self.used_sign_ins
        if signed_header is None or used is None:
            return False
        signed = check_sign_in(
            signed_header,
            resource_url=resource_url(scope, self.public_url),
            network=route.asset.network,
            receipts=receipts,
        )
        if isinstance(signed, SignInRefusal):
            log.info("sign-in refused for %s: %s", path, signed.reason)
            return False
        try:
            paid = await in_thread(has_paid, self.store, path, signed.address)
            # Spent only by a sign-in that opens something: a wallet that never
            # paid stores nothing; one spend per header across every replica.
            first = paid and await in_thread(used.first_use, signed.nonce, signed.fresh_until_s)
        except PaymentStoreError as exc:
            await send_unavailable(send, "payment_database_unavailable", str(exc))
            return True
        if not first:
            if paid:
                log.info("sign-in refused for %s: invalid_siwx_nonce_reused", path)
            return False
        set_cookie = receipts.set_cookie(path, signed.address, secure=self._secure(scope))
        await self.app(scope, receive, private_answer(send, [(b"set-cookie", set_cookie)]))
        return True

    def with_receipt(self, scope: dict[str, Any], send: Send) -> Send:
        """``send`` that adds a receipt cookie to a settled, paid answer for this article."""
        receipts = self.receipts
        path = scope["path"]
        secure = self._secure(scope)

        async def with_receipt(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                settled = header_of(
                    message.get("headers", []), PAYMENT_RESPONSE_HEADER.lower().encode()
                )
                payer = _settled_payer(settled)
                if payer is not None:
                    set_cookie = receipts.set_cookie(path, payer, secure=secure)
                    headers = [*message.get("headers", []), (b"set-cookie", set_cookie)]
                    message = {**message, "headers": headers}
            await send(message)

        return with_receipt

    def _secure(self, scope: Mapping[str, Any]) -> bool:
        base = self.public_url or f"{scope.get('scheme', 'http')}://"
        return base.startswith("https://")


def _settled_payer(header_value: str | None) -> str | None:
    """The payer of a successful ``PAYMENT-RESPONSE``, else None."""
    if not header_value:
        return None
    data = unb64_json_bounded(header_value, bytes_max=PAYMENT_HEADER_BYTES_MAX)
    if not isinstance(data, dict) or data.get("success") is not True:
        return None
    payer = data.get("payer")
    return payer if isinstance(payer, str) and payer.startswith("0x") else None

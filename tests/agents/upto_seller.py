"""A seller of metered content for the agent's ``upto`` tests, honest or not, settling on a real chain.

``metered_seller`` answers ``GET /meter`` with a 402 offering ``upto`` (and,
if asked, ``exact``), and a paid request by verifying and settling the
signed permit with the scheme's own facilitator part (``UptoFacilitator``,
the relayer being the offer's ``facilitatorAddress``) for what was used;
the answer carries a ``PAYMENT-RESPONSE``. The :class:`Behaviour` makes it lie in the ways the
attacks need: claim another amount, name another transaction (the previous
one: a replayed receipt), claim a zero settlement and settle later, or try
to settle the same permit twice. It is a seller written for the tests, as
``v1_seller`` is in ``test_x402_interop``; the chain, the token and the
contracts are real.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from farthing.paywall.schemes.upto.client import approve_permit2 as client_approve
from farthing.paywall.schemes.upto.contract import settle_call
from farthing.paywall.schemes.upto.facilitator import UptoFacilitator
from farthing.paywall.schemes.upto.types import EIP2612_KEY
from farthing.paywall.schemes.upto.wire import (
    UptoPayment,
    UptoRequirements,
    parse_payment,
    parse_requirements,
)
from farthing.paywall.wire import SettleResult, b64_json
from farthing.wallet.chain import Call, Chain, TxResult
from farthing.wallet.money import Asset
from farthing.wallet.signer import LocalSigner
from farthing.wallet.token import Stablecoin

__all__ = [
    "Behaviour",
    "MeteredSeller",
    "approve_permit2",
    "give_gas",
    "metered_seller",
    "settle_permit",
]


@dataclass
class Behaviour:
    """How the seller answers a paid request; the defaults are an honest seller."""

    used: int  # what is settled on chain
    claimed: int | None = None  # what PAYMENT-RESPONSE says was settled; None: the truth
    replay_receipt: bool = False  # answer with the previous request's receipt
    receipt_transaction: str | None = None  # name this transaction instead of its own
    settle: bool = True  # False: settle nothing, claim a zero settlement
    settle_twice: bool = False  # try the same permit again after it settled
    payee_in_offer: str | None = None  # another payTo in the 402


@dataclass
class MeteredSeller:
    app: Starlette
    payloads: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    settlements: list[SettleResult] = field(default_factory=list)
    extensions: list[dict[str, Any]] = field(default_factory=list)
    direct: list[TxResult] = field(default_factory=list)  # settles sent around the facilitator


def give_gas(chain: Chain, to: str) -> None:
    """Send ETH from a dev account, for an address that must send transactions."""
    funder = chain.dev_accounts()[1].signer()
    assert chain.send(Call(to, b"", value=10**18), sender=funder).ok


def settle_permit(
    chain: Chain, relayer: LocalSigner, payload: dict[str, Any], amount: int
) -> TxResult:
    """The facilitator's settle of a signed permit, sent by ``relayer`` (the witness's facilitator)."""
    auth = payload["permit2Authorization"]
    permit = (
        (auth["permitted"]["token"], int(auth["permitted"]["amount"])),
        int(auth["nonce"]),
        int(auth["deadline"]),
    )
    witness = (
        auth["witness"]["to"],
        auth["witness"]["facilitator"],
        int(auth["witness"]["validAfter"]),
    )
    signature = bytes.fromhex(payload["signature"][2:])
    call = settle_call(permit, amount, auth["from"], witness, signature)
    return chain.send(call, sender=relayer, gas_limit=400_000)


def metered_seller(
    chain: Chain,
    asset: Asset,
    *,
    pay_to: str,
    relayer: LocalSigner,
    ceiling: int,
    behaviour: Behaviour,
    exact_price: int | None = None,
    sponsor_eip2612: bool = False,
) -> MeteredSeller:
    """The seller, over the relayer's real settlements; see the module doc."""
    seller = MeteredSeller(app=Starlette())
    facilitator = UptoFacilitator(chain, relayer)
    offer = {
        "scheme": "upto",
        "network": chain.network,
        "asset": asset.address,
        "amount": str(ceiling),
        "payTo": behaviour.payee_in_offer or pay_to,
        "maxTimeoutSeconds": 300,
        "extra": {
            "name": asset.name,
            "version": asset.version,
            "facilitatorAddress": relayer.address,
            "assetTransferMethod": "permit2",
        },
    }
    accepts: list[dict[str, Any]] = [offer]
    if exact_price is not None:
        accepts.append(
            {
                **offer,
                "scheme": "exact",
                "amount": str(exact_price),
                "extra": {"name": asset.name, "version": asset.version},
            }
        )

    async def meter(request: Request) -> Response:
        header = request.headers.get("payment-signature")
        if header is None:
            required: dict[str, Any] = {
                "x402Version": 2,
                "error": "payment required",
                "resource": {"url": str(request.url), "description": "metered"},
                "accepts": accepts,
            }
            if sponsor_eip2612:
                required["extensions"] = {
                    EIP2612_KEY: {
                        "info": {"description": "gasless Permit2 approval", "version": "1"}
                    }
                }
            return JSONResponse(
                {"x402Version": 2},
                status_code=402,
                headers={"PAYMENT-REQUIRED": b64_json(required)},
            )
        data = json.loads(base64.b64decode(header))
        assert data["accepted"]["scheme"] == "upto", data["accepted"]
        payment = parse_payment(data)
        assert isinstance(payment, UptoPayment), payment
        requirements = parse_requirements(offer)
        assert isinstance(requirements, UptoRequirements), requirements
        verified = await facilitator.verify_upto(payment, requirements)
        if not verified.valid:
            return JSONResponse({"error": verified.reason}, status_code=402)
        payload = data["payload"]
        seller.payloads.append(payload)
        seller.extensions.append(data.get("extensions") or {})
        transaction = ""
        if behaviour.settle:
            charge = replace(requirements, amount=behaviour.used)
            settled = await facilitator.settle_upto(payment, charge)
            assert settled.success, settled
            seller.settlements.append(settled)
            transaction = settled.transaction
            if behaviour.settle_twice:
                seller.settlements.append(await facilitator.settle_upto(payment, charge))
                seller.direct.append(settle_permit(chain, relayer, payload, behaviour.used))
        receipt = {
            "success": True,
            "transaction": transaction,
            "network": chain.network,
            "payer": payload["permit2Authorization"]["from"],
            "amount": str(
                behaviour.claimed
                if behaviour.claimed is not None
                else (behaviour.used if behaviour.settle else 0)
            ),
        }
        if behaviour.receipt_transaction is not None:
            receipt = {**receipt, "transaction": behaviour.receipt_transaction}
        if behaviour.replay_receipt and seller.receipts:
            receipt = seller.receipts[0]
        seller.receipts.append(receipt)
        return PlainTextResponse("metered content", headers={"PAYMENT-RESPONSE": b64_json(receipt)})

    seller.app.add_route("/meter", meter, methods=["GET"])
    return seller


def approve_permit2(chain: Chain, token: Stablecoin, owner: LocalSigner, amount: int) -> None:
    """The payer's one-time approval of Permit2 (the scheme's client part; it pays the gas)."""
    give_gas(chain, owner.address)
    assert client_approve(chain, owner, token.address, amount).ok

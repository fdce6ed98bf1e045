"""The payment headers the paywall fuzzer sends: signed right and wrong, mutated, malformed.

:func:`header_signer` signs a :class:`Headers` pool on a chain: right terms by
a payer who holds nothing (so no case can ever pay), and wrong terms of every
kind (amount, payee, network, asset, token name and version, value, window,
signer); the fuzzer signs it again every minute to stay inside the
paywall's validBefore window. :func:`payment_header` draws one
``PAYMENT-SIGNATURE`` value from a case's ``random.Random``: absent, empty,
not base64, not JSON, of wrong shapes and types, mutated, deep, huge, good,
wrong terms, replayed, X-PAYMENT v1 in v2, too large, or tampered.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

# Within the paywall's window (maxTimeoutSeconds 300 plus skew), minus verify's margin.
POOL_VALID_FOR_S: Final = 240


@dataclass
class Headers:
    """The pre-built payment headers and bodies the cases draw from."""

    good: list[str]  # right terms, signed by the broke payer
    wrong_terms: list[str]
    replayed: str
    payload: dict[str, Any]  # one good payload as JSON, to mutate
    v1: str


_EVIL: Final[tuple[Any, ...]] = (
    None, True, False, 0, -1, 1, 2, 1.5, -0.0, 1e308, 10**80, -(10**80), 2**256, 2**256 - 1,
    "", "0", "-1", "1e6", "0x", "0x" + "0" * 64, " 10000", "10000 ", "10000\n", "+10000",
    "10_000", "١٠٠٠٠", "１００００", "0x2710", "00010000", "9" * 79, "9" * 78, [], {}, [1, 2],
    {"a": 1}, "a" * 3000, "\u0000", "\ud800", "eip155:1\n", "eip155:0", "eip155:" + "9" * 20,
    "0x" + "00" * 20, "0x" + "ff" * 20, "0X" + "ab" * 20, "exact", "EXACT", "upto",
)  # fmt: skip


def _mutate_json(rng: random.Random, data: Any, depth: int = 0) -> Any:
    """One structural change somewhere inside ``data`` (a copy)."""
    if isinstance(data, dict) and data and (depth < 3 and rng.random() < 0.7):
        data = dict(data)
        key = rng.choice(sorted(data))
        roll = rng.random()
        if roll < 0.15:
            del data[key]
        elif roll < 0.25:
            data[rng.choice(("extra", "__proto__", key.upper(), key + " "))] = rng.choice(_EVIL)
        elif roll < 0.6 and isinstance(data[key], (dict, list)):
            data[key] = _mutate_json(rng, data[key], depth + 1)
        else:
            data[key] = rng.choice(_EVIL)
        return data
    if isinstance(data, list) and data and rng.random() < 0.5:
        return [_mutate_json(rng, item, depth + 1) for item in data]
    return rng.choice(_EVIL)


def b64(text: str | bytes) -> str:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def payment_header(rng: random.Random, pool: Headers) -> tuple[str | None, str]:
    """A ``PAYMENT-SIGNATURE`` value (or None: absent) and its kind."""
    kinds = (
        "absent", "empty", "spaces", "not_base64", "urlsafe", "not_json", "wrong_shape",
        "mutated", "mutated", "mutated", "text_json", "deep", "huge", "good", "good",
        "wrong_terms", "wrong_terms", "replay", "v1_in_v2", "too_large", "tampered",
    )  # fmt: skip
    kind = rng.choice(kinds)
    good = json.dumps(pool.payload, separators=(",", ":"))
    if kind == "absent":
        return None, kind
    if kind == "empty":
        return "", kind
    if kind == "spaces":
        return " \t " + rng.choice(pool.good) + " ", kind
    if kind == "not_base64":
        return rng.choice(("!!!", "abc", "====", "YQ", "Y Q==", "eyJ", "%%%", "é" * 10)), kind
    if kind == "urlsafe":
        return b64(good).replace("+", "-").replace("/", "_").rstrip("="), kind
    if kind == "not_json":
        raw = rng.choice((b"\xff\xfe\x00", b"not json", b"{", b"[1,", b"\xef\xbb\xbf{}", b"{}x"))
        return b64(raw), kind
    if kind == "wrong_shape":
        shape: Any = rng.choice(
            ([], "2", 2, None, {}, {"x402Version": "2"}, {"x402Version": 2},
             {"x402Version": 2, "payload": []}, {"x402Version": 2.0, **pool.payload},
             {"x402Version": True}, {"x402Version": 10**30}, {"x402Version": -2})
        )  # fmt: skip
        return b64(json.dumps(shape)), kind
    if kind == "mutated":
        mutated = pool.payload
        for _ in range(rng.randint(1, 3)):
            mutated = _mutate_json(rng, mutated)
        return b64(json.dumps(mutated)), kind
    if kind == "text_json":
        text = rng.choice(
            (good.replace('"2"', "NaN", 1), good.replace("10000", "1e4"),
             good.replace("10000", "10000.0"), good.replace("10000", "-10000"),
             good[:-1] + ',"x402Version":1}', good.replace('"x402Version":2', '"x402Version":2e0'),
             '{"x402Version":Infinity}', good.replace('"', "'"), good + "\n", " " + good)
        )  # fmt: skip
        return b64(text), kind
    if kind == "deep":
        depth = rng.choice((50, 999, 1500, 3000))
        return b64("[" * depth + "]" * depth), kind
    if kind == "huge":
        return b64('{"x402Version":' + "9" * rng.choice((20, 400, 4400)) + "}"), kind
    if kind == "good":
        return rng.choice(pool.good), kind
    if kind == "wrong_terms":
        return rng.choice(pool.wrong_terms), kind
    if kind == "replay":
        return pool.replayed, kind
    if kind == "v1_in_v2":
        return pool.v1, kind
    if kind == "too_large":
        return b64(good + " " * rng.choice((6000, 9000, 20000))), kind
    # tampered: a good header with one base64 character changed
    header = rng.choice(pool.good)
    at = rng.randrange(len(header))
    return header[:at] + rng.choice("AB+/") + header[at + 1 :], kind


def header_signer(
    chain: Any, asset: Any, merchant: str, price_atomic: int
) -> Callable[[], Headers]:
    """A signer of the payment headers: right terms by the broke payer, and wrong terms.

    The right terms' window is short (the paywall refuses a validBefore past
    now + maxTimeoutSeconds + skew), so the run signs them again every minute.
    """
    from farthing.paywall.wire import PaymentPayload, PaymentRequirements, encode_payment_signature
    from farthing.wallet.eip3009 import build_authorization, typed_data
    from farthing.wallet.signer import LocalSigner

    broke = LocalSigner.generate()  # never funded: no case can ever pay
    stranger = LocalSigner.generate()
    right = PaymentRequirements(
        network=chain.network,
        asset=asset.address,
        amount=price_atomic,
        pay_to=merchant,
        max_timeout_seconds=300,
        token_name=asset.name,
        token_version=asset.version,
    )

    def header(
        requirements: PaymentRequirements = right,
        signer: LocalSigner = broke,
        payer: str | None = None,
        **fields: Any,
    ) -> str:
        auth_fields: dict[str, Any] = {
            "from_address": payer or signer.address,
            "to": requirements.pay_to,
            "value": requirements.amount,
            "valid_for_s": POOL_VALID_FOR_S,
        }
        auth_fields.update(fields)
        authorization = build_authorization(**auth_fields)
        signature = signer.sign_typed_data(*typed_data(authorization, requirements.domain()))
        # The client claims the terms it signed, right or wrong.
        payload = PaymentPayload(
            accepted=requirements, authorization=authorization, signature=signature
        )
        return str(encode_payment_signature(payload))

    def other(**changes: Any) -> PaymentRequirements:
        fields = {
            "network": right.network,
            "asset": right.asset,
            "amount": right.amount,
            "pay_to": right.pay_to,
            "max_timeout_seconds": 300,
            "token_name": right.token_name,
            "token_version": right.token_version,
        }
        fields.update(changes)
        return PaymentRequirements(**fields)

    def sign() -> Headers:
        now = int(time.time())
        good = [header() for _ in range(8)]
        wrong = [
            header(other(amount=price_atomic - 1)),
            header(other(amount=price_atomic * 100)),
            header(other(pay_to=stranger.address)),
            header(other(network="eip155:1")),
            header(other(network="eip155:31337")),
            header(other(asset=stranger.address)),
            header(other(token_name="USD Coin")),
            header(other(token_version="1")),
            header(value=1),
            header(value=price_atomic + 1),
            header(to=stranger.address),
            header(now=now - 7200, valid_for_s=3600),  # expired an hour ago
            header(valid_after=now + 120),  # not valid yet
            header(now=now, valid_for_s=7 * 24 * 3600),  # far too long a window
            header(signer=stranger, payer=broke.address),  # signed by someone else
            header(signer=stranger),  # a stranger, also broke
        ]
        payload = json.loads(base64.b64decode(good[0]))
        v1 = {
            "x402Version": 1,
            "scheme": "exact",
            "network": "base-sepolia",
            "payload": payload["payload"],
        }
        return Headers(good, wrong, good[1], payload, b64(json.dumps(v1)))

    return sign

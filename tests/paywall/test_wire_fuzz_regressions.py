"""Hostile PAYMENT-SIGNATURE headers of the kinds the paywall fuzzer sends decode to a reason, never an exception.

Pure functions, no chain: one payment is signed by a local key, then broken in
the ways ``benchmarks/fuzz_paywall.py`` breaks it (encoding, JSON syntax,
shapes, types, sizes, numbers) and handed to ``decode_payment_signature``.
Each must come back as a :class:`MalformedPayment` with the expected
snake_case reason; the one fix so far (a network with a trailing newline was
accepted) has its own case.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from farthing.paywall.wire import (
    PAYMENT_HEADER_BYTES_MAX,
    MalformedPayment,
    PaymentPayload,
    PaymentRequirements,
    decode_payment_signature,
    encode_payment_signature,
)
from farthing.wallet.eip3009 import build_authorization, sign_authorization
from farthing.wallet.signer import LocalSigner

TOKEN = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    """A well-formed, correctly signed payment payload as JSON."""
    payer = LocalSigner.generate()
    requirements = PaymentRequirements(
        network="eip155:84532",
        asset=TOKEN,
        amount=10_000,
        pay_to=PAY_TO,
        max_timeout_seconds=300,
        token_name="USDC",
        token_version="2",
    )
    authorization = build_authorization(
        from_address=payer.address, to=PAY_TO, value=10_000, valid_for_s=240
    )
    signed = sign_authorization(payer, authorization, requirements.domain())
    payload = PaymentPayload(
        accepted=requirements, authorization=authorization, signature=signed.signature
    )
    decoded: dict[str, Any] = json.loads(base64.b64decode(encode_payment_signature(payload)))
    return decoded


def b64(text: str | bytes) -> str:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def with_value(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``data`` with the field at ``path`` set to ``value``."""
    out = json.loads(json.dumps(data))
    here = out
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = value
    return out


def reason_of(header: str) -> str:
    decoded = decode_payment_signature(header)
    assert isinstance(decoded, MalformedPayment), decoded
    assert decoded.reason and decoded.reason == decoded.reason.lower()
    return decoded.reason


def test_the_good_payload_decodes(good: dict[str, Any]) -> None:
    assert isinstance(decode_payment_signature(b64(json.dumps(good))), PaymentPayload)


def test_a_network_with_a_trailing_newline_is_refused(good: dict[str, Any]) -> None:
    # Found by the fuzzer's value list: "$" in the old pattern matched before "\n".
    header = b64(json.dumps(with_value(good, ("accepted", "network"), "eip155:84532\n")))
    assert reason_of(header) == "invalid_payment_payload"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "payment_header_not_json"),  # empty is valid base64 of nothing
        ("!!!", "payment_header_not_base64"),
        ("Y Q==", "payment_header_not_base64"),
        ("é" * 12, "payment_header_not_base64"),
        (b64(b"\xff\xfe\x00"), "payment_header_not_json"),
        (b64(b"\xef\xbb\xbf{}"), "payment_header_not_json"),
        (b64("{}x"), "payment_header_not_json"),
        (b64('{"x402Version":' + "9" * 4400 + "}"), "payment_header_not_json"),
        (b64('{"x402Version":NaN}'), "payment_header_not_json"),
        (b64('{"x402Version":Infinity}'), "payment_header_not_json"),
        (b64(json.dumps([])), "invalid_payment_payload"),
        (b64(json.dumps("2")), "invalid_payment_payload"),
        (b64(json.dumps(None)), "invalid_payment_payload"),
        (b64(json.dumps({"x402Version": "2"})), "invalid_payment_payload"),
        (b64(json.dumps({"x402Version": True})), "invalid_payment_payload"),
        (b64(json.dumps({"x402Version": 2.0})), "invalid_payment_payload"),
        (b64(json.dumps({"x402Version": 1})), "unsupported_x402_version"),
        (b64(json.dumps({"x402Version": -2})), "unsupported_x402_version"),
        (b64(json.dumps({"x402Version": 10**30})), "unsupported_x402_version"),
        (b64(json.dumps({"x402Version": 2, "payload": []})), "invalid_payment_payload"),
    ],
)
def test_broken_headers_have_a_reason(header: str, reason: str) -> None:
    assert reason_of(header) == reason


@pytest.mark.parametrize("depth", [50, 999, 1500, 3000])
def test_deep_nesting_has_a_reason(depth: int) -> None:
    # Too deep for the parser, or parsed and then not an object: either way a reason.
    header = b64("[" * depth + "]" * depth)
    assert reason_of(header) in ("payment_header_not_json", "invalid_payment_payload")


def test_an_oversized_header_is_refused_before_decoding(good: dict[str, Any]) -> None:
    header = b64(json.dumps(good) + " " * PAYMENT_HEADER_BYTES_MAX)
    assert reason_of(header) == "payment_header_too_large"


def test_the_url_safe_alphabet_is_not_standard_base64() -> None:
    header = base64.urlsafe_b64encode(b'{"x402Version":2,"k":"\xfb\xff"}').decode()
    assert "-" in header or "_" in header
    assert reason_of(header) == "payment_header_not_base64"


@pytest.mark.parametrize(
    "path",
    [
        ("accepted", "amount"),
        ("accepted", "network"),
        ("accepted", "asset"),
        ("accepted", "payTo"),
        ("accepted", "maxTimeoutSeconds"),
        ("accepted", "extra"),
        ("accepted", "extra", "name"),
        ("payload", "authorization"),
        ("payload", "authorization", "from"),
        ("payload", "authorization", "value"),
        ("payload", "authorization", "validBefore"),
        ("payload", "authorization", "nonce"),
        ("payload", "signature"),
    ],
)
@pytest.mark.parametrize(
    "value",
    [
        None, True, 0, -1, 1.5, 1e308, 10**80, -(10**80), "", "-1", "+10000", "1e6", "10_000",
        "١٠٠٠٠", "１００００", "9" * 79, [], {}, "a" * 3000, "\u0000", "\ud800", "eip155:0",
        "0x" + "00" * 20,
    ],
)  # fmt: skip
def test_wrong_types_and_numbers_are_refused(
    good: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    header = b64(json.dumps(with_value(good, path, value)))
    if len(header) > PAYMENT_HEADER_BYTES_MAX:
        assert reason_of(header) == "payment_header_too_large"
    elif _legal(path, value):
        # Well-formed but wrong: decoding takes it, and verify refuses it by its terms.
        assert isinstance(decode_payment_signature(header), PaymentPayload)
    else:
        assert reason_of(header) == "invalid_payment_payload"


def _legal(path: tuple[str, ...], value: Any) -> bool:
    """Values that are well-formed where they are put (any short name; the zero address).

    A lone surrogate is no text anywhere: the header's JSON is refused whole.
    """
    if path == ("accepted", "extra", "name"):
        return isinstance(value, str) and len(value) <= 256 and value != "\ud800"
    return path in (("accepted", "asset"), ("accepted", "payTo")) and value == "0x" + "00" * 20

"""ERC-6492 wrappers round-trip, and a malformed one is a reason, never an exception.

Pure byte tests: :func:`wrap` then :func:`unwrap` gives the parts back
(Hypothesis over factories, calls and signatures); a signature without the
magic suffix is not wrapped; a wrapper that is truncated, not canonical ABI
(extra bytes, moved offsets), names the zero factory or carries an empty call
or signature, or is longer than ``SIGNATURE_BYTES_MAX``, is refused with its
snake_case reason.
"""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as abi_encode
from hypothesis import given
from hypothesis import strategies as st

from farthing.wallet.erc6492 import MAGIC_SUFFIX, SIGNATURE_BYTES_MAX, Wrapped, unwrap, wrap
from farthing.wallet.errors import AuthorizationError

FACTORY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@given(
    factory=st.binary(min_size=20, max_size=20).filter(any),
    calldata=st.binary(min_size=1, max_size=300),
    signature=st.binary(min_size=1, max_size=300),
)
def test_wrap_then_unwrap_gives_the_parts_back(
    factory: bytes, calldata: bytes, signature: bytes
) -> None:
    address = "0x" + factory.hex()
    wrapped = wrap(address, calldata, signature)
    assert wrapped.endswith(MAGIC_SUFFIX)
    parts = unwrap(wrapped)
    assert isinstance(parts, Wrapped)
    assert (parts.factory.lower(), parts.factory_calldata, parts.signature) == (
        address,
        calldata,
        signature,
    )


def test_a_plain_signature_is_not_wrapped() -> None:
    assert unwrap(b"\x01" * 65) is None
    assert unwrap(b"") is None


def _body(factory: str, calldata: bytes, signature: bytes) -> bytes:
    return abi_encode(["address", "bytes", "bytes"], [factory, calldata, signature])


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (b"\x00" * 10 + MAGIC_SUFFIX, "invalid_erc6492_signature"),
        (_body(FACTORY, b"\x01", b"\x02")[:-1] + MAGIC_SUFFIX, "invalid_erc6492_signature"),
        (
            _body(FACTORY, b"\x01", b"\x02") + b"\x00" * 32 + MAGIC_SUFFIX,
            "invalid_erc6492_signature",
        ),
        (_body("0x" + "00" * 20, b"\x01", b"\x02") + MAGIC_SUFFIX, "invalid_erc6492_signature"),
        (_body(FACTORY, b"", b"\x02") + MAGIC_SUFFIX, "invalid_erc6492_signature"),
        (_body(FACTORY, b"\x01", b"") + MAGIC_SUFFIX, "invalid_erc6492_signature"),
        (b"\x00" * SIGNATURE_BYTES_MAX + MAGIC_SUFFIX, "signature_too_large"),
    ],
    ids=["junk", "truncated", "trailing", "zero-factory", "no-call", "no-signature", "too-large"],
)
def test_a_malformed_wrapper_is_a_reason(signature: bytes, reason: str) -> None:
    assert unwrap(signature) == reason


def test_a_non_canonical_offset_is_refused() -> None:
    body = bytearray(_body(FACTORY, b"\x01", b"\x02"))
    # Point the calldata's offset at the signature's slot: decodable, not canonical.
    body[32:64] = body[64:96]
    assert unwrap(bytes(body) + MAGIC_SUFFIX) == "invalid_erc6492_signature"


def test_wrap_refuses_what_it_cannot_honestly_make() -> None:
    with pytest.raises(AuthorizationError):
        wrap("0x" + "00" * 20, b"\x01", b"\x02")
    with pytest.raises(AuthorizationError):
        wrap(FACTORY, b"", b"\x02")
    with pytest.raises(AuthorizationError):
        wrap(FACTORY, b"\x01" * SIGNATURE_BYTES_MAX, b"\x02")

"""The fast verify path computes eth-account's EIP-712 digest and signer exactly and refuses
everything the token refuses, proven by known-answer vectors, Hypothesis round-trips against
eth-account, mutated and high-s signatures, and arbitrary bytes that must never raise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farthing.wallet import eip712
from farthing.wallet.eip712 import (
    DOMAIN_CACHE_SIZE_MAX,
    SECP256K1_N,
    SignatureParts,
    VerifyOutcome,
    authorization_digest,
    cancel_digest,
    domain_separator,
    keccak256,
    recover_digest,
    recover_fast,
    signature_defect,
    verify_authorization_signature,
)
from farthing.wallet.eip3009 import (
    Authorization,
    SignedAuthorization,
    TokenDomain,
    typed_data,
)
from farthing.wallet.errors import AddressError
from farthing.wallet.signer import LocalSigner

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "eip3009.json").read_text(encoding="utf-8")
)["vectors"]

LOCAL = TokenDomain("Farthing Dollar", "1", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
SECP256K1_P = 2**256 - 2**32 - 977
EXAMPLES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def domain_of(vector: dict[str, Any]) -> TokenDomain:
    d = vector["domain"]
    return TokenDomain(d["name"], d["version"], d["chainId"], d["verifyingContract"])


def eth_account_digest(authorization: Authorization, domain: TokenDomain, primary: str) -> bytes:
    data = typed_data(authorization, domain, primary)  # type: ignore[arg-type]
    signable = encode_typed_data(data.domain, data.types, data.message)
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


def eth_account_recover(signed: SignedAuthorization) -> str:
    data = typed_data(signed.authorization, signed.domain, signed.primary_type)
    signable = encode_typed_data(data.domain, data.types, data.message)
    return str(Account.recover_message(signable, signature=signed.signature))


def with_bytes(signature: bytes, **at: int) -> bytes:
    """Replace r, s or v of a 65-byte signature."""
    r, s, v = signature[:32], signature[32:64], signature[64:]
    if "r" in at:
        r = at["r"].to_bytes(32, "big")
    if "s" in at:
        s = at["s"].to_bytes(32, "big")
    if "v" in at:
        v = bytes([at["v"]])
    return r + s + v


# --- strategies ---------------------------------------------------------------

keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
domains = st.builds(
    TokenDomain,
    name=st.text(max_size=40),
    version=st.text(max_size=8),
    chain_id=st.integers(min_value=1, max_value=2**256 - 1),
    verifying_contract=addresses,
)
primary_types = st.sampled_from(["TransferWithAuthorization", "ReceiveWithAuthorization"])


@st.composite
def authorizations(draw: st.DrawFn, payer: str) -> Authorization:
    valid_after = draw(st.integers(min_value=0, max_value=2**256 - 2))
    return Authorization(
        from_address=payer,
        to=draw(addresses),
        value=draw(uint256),
        valid_after=valid_after,
        valid_before=draw(st.integers(min_value=valid_after + 1, max_value=2**256 - 1)),
        nonce=draw(st.binary(min_size=32, max_size=32)),
    )


@st.composite
def signed_cases(draw: st.DrawFn) -> tuple[LocalSigner, SignedAuthorization]:
    signer = LocalSigner(draw(keys))
    authorization = draw(authorizations(signer.address))
    domain = draw(domains)
    primary = draw(primary_types)
    # Signed through eth-account directly, not sign_authorization, so that the
    # fast path is not also the thing checking the signature being tested.
    raw = signer.sign_typed_data(*typed_data(authorization, domain, primary))
    return signer, SignedAuthorization(authorization, raw, domain, primary)


# --- known answers ------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector_digest_and_signer(vector: dict[str, Any]) -> None:
    domain = domain_of(vector)
    signature = bytes.fromhex(vector["signature"][2:])
    if vector["primaryType"] == "CancelAuthorization":
        nonce = bytes.fromhex(vector["message"]["nonce"][2:])
        digest = cancel_digest(vector["message"]["authorizer"], nonce, domain)
    else:
        authorization = Authorization.from_wire(vector["message"])
        digest = authorization_digest(authorization, domain, vector["primaryType"])
        signed = SignedAuthorization(authorization, signature, domain, vector["primaryType"])
        assert recover_fast(signed) == vector["signer"]
        assert verify_authorization_signature(signed) == VerifyOutcome(
            valid=True, signer=vector["signer"]
        )
    assert "0x" + digest.hex() == vector["digest"]
    assert recover_digest(digest, signature) == vector["signer"]


def test_keccak_backend_is_keccak_not_sha3() -> None:
    # NIST SHA3-256("") differs; Ethereum's Keccak-256("") is c5d2…a470.
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


# --- round trips against eth-account -----------------------------------------


@EXAMPLES
@given(signed_cases())
def test_fast_path_matches_eth_account(case: tuple[LocalSigner, SignedAuthorization]) -> None:
    signer, signed = case
    assert authorization_digest(
        signed.authorization, signed.domain, signed.primary_type
    ) == eth_account_digest(signed.authorization, signed.domain, signed.primary_type)
    assert recover_fast(signed) == eth_account_recover(signed) == signer.address
    assert verify_authorization_signature(signed, signer.address) == VerifyOutcome(
        valid=True, signer=signer.address
    )


@EXAMPLES
@given(signed_cases(), st.data())
def test_mutated_signatures_never_recover_to_the_signer(
    case: tuple[LocalSigner, SignedAuthorization], data: st.DataObject
) -> None:
    signer, signed = case
    bit = data.draw(st.integers(min_value=0, max_value=65 * 8 - 1))
    mutated = bytearray(signed.signature)
    mutated[bit // 8] ^= 1 << (bit % 8)
    parts = SignatureParts(signed.authorization, signed.domain, bytes(mutated), signed.primary_type)
    outcome = verify_authorization_signature(parts, signer.address)
    assert not outcome.valid and outcome.signer != signer.address
    assert recover_fast(parts) != signer.address


@EXAMPLES
@given(signed_cases(), st.data())
def test_mutated_messages_never_recover_to_the_signer(
    case: tuple[LocalSigner, SignedAuthorization], data: st.DataObject
) -> None:
    signer, signed = case
    a, d = signed.authorization, signed.domain
    field = data.draw(
        st.sampled_from(["to", "value", "after", "before", "nonce", "chain", "name", "type"])
    )
    primary = signed.primary_type
    if field == "to":
        a = Authorization(
            a.from_address, data.draw(addresses.filter(lambda x: x != a.to)), a.value,
            a.valid_after, a.valid_before, a.nonce,
        )  # fmt: skip
    elif field == "value":
        a = Authorization(a.from_address, a.to, a.value ^ 1, a.valid_after, a.valid_before, a.nonce)
    elif field == "after":
        after = a.valid_after + 1 if a.valid_after + 1 < a.valid_before else a.valid_after - 1
        if after < 0:
            return  # a one-second window at zero has no neighbour to move to
        a = Authorization(a.from_address, a.to, a.value, after, a.valid_before, a.nonce)
    elif field == "before":
        before = a.valid_before - 1 if a.valid_before == 2**256 - 1 else a.valid_before + 1
        if before <= a.valid_after:
            return
        a = Authorization(a.from_address, a.to, a.value, a.valid_after, before, a.nonce)
    elif field == "nonce":
        nonce = bytes([a.nonce[0] ^ 0x80]) + a.nonce[1:]
        a = Authorization(a.from_address, a.to, a.value, a.valid_after, a.valid_before, nonce)
    elif field == "chain":
        chain = d.chain_id + 1 if d.chain_id < 2**256 - 1 else d.chain_id - 1
        d = TokenDomain(d.name, d.version, chain, d.verifying_contract)
    elif field == "name":
        d = TokenDomain(d.name + "x", d.version, d.chain_id, d.verifying_contract)
    else:
        primary = (
            "ReceiveWithAuthorization"
            if primary == "TransferWithAuthorization"
            else "TransferWithAuthorization"
        )
    tampered = SignedAuthorization(a, signed.signature, d, primary)
    outcome = verify_authorization_signature(tampered, signer.address)
    assert not outcome.valid
    assert outcome.reason in ("signature_recovers_to_wrong_address", "signature_unrecoverable")


@EXAMPLES
@given(signed_cases())
def test_high_s_twin_is_refused_though_eth_account_accepts_it(
    case: tuple[LocalSigner, SignedAuthorization],
) -> None:
    signer, signed = case
    s = int.from_bytes(signed.s, "big")
    twin_sig = with_bytes(signed.signature, s=SECP256K1_N - s, v=55 - signed.v)
    twin = SignedAuthorization(signed.authorization, twin_sig, signed.domain, signed.primary_type)
    # The twin is a valid ECDSA signature by the same key: only the low-s rule stops it.
    assert eth_account_recover(twin) == signer.address
    assert verify_authorization_signature(twin, signer.address) == VerifyOutcome(
        valid=False, reason="signature_s_not_low"
    )
    assert recover_fast(twin) is None


# --- untrusted bytes ----------------------------------------------------------

ANY_PAYER = to_checksum_address("0x" + "ab" * 20)  # no known key
ANY_AUTH = Authorization(ANY_PAYER, LOCAL.verifying_contract, 1, 0, 10, b"\x00" * 32)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=140))
def test_garbage_bytes_never_raise(garbage: bytes) -> None:
    outcome = verify_authorization_signature(SignatureParts(ANY_AUTH, LOCAL, garbage))
    assert isinstance(outcome, VerifyOutcome) and not outcome.valid
    assert recover_fast(SignatureParts(ANY_AUTH, LOCAL, garbage)) is None
    assert recover_digest(garbage[:32].ljust(32, b"\x00"), garbage) is None


@settings(max_examples=200, deadline=None)
@given(keys, st.binary(min_size=32, max_size=32))
def test_both_recovery_backends_agree(key: bytes, digest: bytes) -> None:
    # The cffi shortcut must give exactly what coincurve's public API gives.
    signature = bytes(Account.from_key(key).unsafe_sign_hash(digest).signature)
    expected = eip712._public_key_via_coincurve(digest, signature)
    assert expected is not None
    assert eip712._recover_public_key(digest, signature) == expected
    bad_r = with_bytes(signature, r=_not_on_curve_x())
    assert eip712._recover_public_key(digest, bad_r) is None
    assert eip712._public_key_via_coincurve(digest, bad_r) is None


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**256 - 1),
    st.integers(min_value=0, max_value=2**256 - 1),
    st.sampled_from([0, 1, 27, 28, 29, 255]),
    st.sampled_from(["TransferWithAuthorization", "ReceiveWithAuthorization", "Permit"]),
)
def test_any_rsv_never_raises(r: int, s: int, v: int, primary: str) -> None:
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    outcome = verify_authorization_signature(SignatureParts(ANY_AUTH, LOCAL, signature, primary))
    # Nobody holds the key for ANY_PAYER's address in this test, so no random
    # (r, s, v) can verify; anything that reaches recovery names another signer.
    assert not outcome.valid
    assert outcome.reason is not None


@pytest.mark.parametrize("signature", [None, "0x" + "00" * 65, 12, ["a"], memoryview(b"\x00" * 65)])
def test_non_bytes_signatures_are_a_reason(signature: object) -> None:
    outcome = verify_authorization_signature(SignatureParts(ANY_AUTH, LOCAL, signature))
    assert outcome == VerifyOutcome(valid=False, reason="invalid_signature_type")


# --- each reason, at its boundary --------------------------------------------


@pytest.fixture(scope="module")
def good() -> tuple[str, SignatureParts]:
    signer = LocalSigner(keccak(text="farthing-test-fast-verify-signer"))
    authorization = Authorization(signer.address, LOCAL.verifying_contract, 5, 0, 10, b"\x01" * 32)
    raw = signer.sign_typed_data(*typed_data(authorization, LOCAL))
    return signer.address, SignatureParts(authorization, LOCAL, raw)


def _reason(good: tuple[str, SignatureParts], signature: bytes) -> str | None:
    signer, parts = good
    return verify_authorization_signature(parts._replace(signature=signature), signer).reason


def _not_on_curve_x() -> int:
    # An x with no y on secp256k1 (x³+7 is not a square mod p) cannot be an r.
    x = 1
    while pow(x**3 + 7, (SECP256K1_P - 1) // 2, SECP256K1_P) == 1:
        x += 1
    return x


def test_each_reason_at_its_boundary(good: tuple[str, SignatureParts]) -> None:
    sig = good[1].signature
    assert isinstance(sig, bytes)
    assert _reason(good, sig) is None
    assert _reason(good, sig[:64]) == "invalid_signature_length"
    assert _reason(good, sig + b"\x00") == "invalid_signature_length"
    assert _reason(good, b"") == "invalid_signature_length"
    # The token reverts on anything but 27/28, so 0/1 are refused rather than normalised.
    for v in (0, 1, 26, 29, 255):
        assert _reason(good, with_bytes(sig, v=v)) == "invalid_signature_v"
    assert _reason(good, with_bytes(sig, r=0)) == "invalid_signature_r"
    assert _reason(good, with_bytes(sig, r=SECP256K1_N)) == "invalid_signature_r"
    assert _reason(good, with_bytes(sig, r=2**256 - 1)) == "invalid_signature_r"
    assert _reason(good, with_bytes(sig, s=0)) == "invalid_signature_s"
    assert _reason(good, with_bytes(sig, s=SECP256K1_N)) == "invalid_signature_s"
    assert _reason(good, with_bytes(sig, s=SECP256K1_N // 2 + 1)) == "signature_s_not_low"
    assert signature_defect(with_bytes(sig, s=SECP256K1_N // 2)) is None  # the largest low s
    assert _reason(good, with_bytes(sig, r=_not_on_curve_x())) == "signature_unrecoverable"
    other = "0x" + "11" * 20
    outcome = verify_authorization_signature(good[1], other)
    assert outcome == VerifyOutcome(
        valid=False, reason="signature_recovers_to_wrong_address", signer=good[0]
    )
    assert (
        verify_authorization_signature(good[1]._replace(primary_type="CancelAuthorization")).reason
        == "unsupported_primary_type"
    )


def test_bytearray_signatures_are_accepted(good: tuple[str, SignatureParts]) -> None:
    sig = good[1].signature
    assert isinstance(sig, bytes)
    assert _reason(good, bytearray(sig)) is None


def test_expected_signer_is_compared_case_insensitively(good: tuple[str, SignatureParts]) -> None:
    signer, parts = good
    assert verify_authorization_signature(parts, signer.lower()).valid
    assert verify_authorization_signature(parts).valid  # defaults to authorization.from


def test_malformed_expected_signer_is_a_programmer_error(good: tuple[str, SignatureParts]) -> None:
    with pytest.raises(AddressError):
        verify_authorization_signature(good[1], "0x1234")


def test_recover_digest_wants_32_bytes(good: tuple[str, SignatureParts]) -> None:
    _, parts = good
    digest = authorization_digest(parts.authorization, parts.domain)
    assert recover_digest(digest, parts.signature) == good[0]
    assert recover_digest(digest[:31], parts.signature) is None
    assert recover_digest("00" * 32, parts.signature) is None  # type: ignore[arg-type]


def test_domain_separator_cache_is_bounded_and_correct() -> None:
    info = domain_separator.cache_info()
    assert info.maxsize == DOMAIN_CACHE_SIZE_MAX
    data = typed_data(ANY_AUTH, LOCAL)
    signable = encode_typed_data(data.domain, data.types, data.message)
    assert signable.header == domain_separator(
        LOCAL.name, LOCAL.version, LOCAL.chain_id, LOCAL.verifying_contract
    )

"""EIP-3009 authorizations are built, signed, recovered and carried on the wire correctly,
proven against eth-account known-answer vectors and by refusing every malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from farthing.wallet.eip712 import SECP256K1_N
from farthing.wallet.eip3009 import (
    CLOCK_SKEW_S,
    VALID_FOR_S_DEFAULT,
    VALID_FOR_S_MAX,
    Authorization,
    Cancellation,
    SignedAuthorization,
    TokenDomain,
    build_authorization,
    cancel_typed_data,
    recover_authorization_signer,
    sign_authorization,
    sign_cancel_authorization,
    sign_receive_authorization,
    typed_data,
)
from farthing.wallet.errors import (
    AddressError,
    AmountError,
    AuthorizationError,
    SigningError,
    WalletError,
)
from farthing.wallet.networks import get_network
from farthing.wallet.signer import LocalSigner

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "eip3009.json").read_text(encoding="utf-8")
)
AUTH_VECTORS = [v for v in VECTORS["vectors"] if v["primaryType"] != "CancelAuthorization"]
CANCEL_VECTORS = [v for v in VECTORS["vectors"] if v["primaryType"] == "CancelAuthorization"]

PAYEE = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
LOCAL = TokenDomain("Farthing Dollar", "1", 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
NOW = 1_750_000_000


def signer_for(seed: str) -> LocalSigner:
    # The vectors name a public seed, never a key: the key is keccak256(seed).
    return LocalSigner(keccak(text=seed))


def domain_of(vector: dict[str, Any]) -> TokenDomain:
    d = vector["domain"]
    return TokenDomain(d["name"], d["version"], d["chainId"], d["verifyingContract"])


def digest_of(signable: Any) -> bytes:
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


@pytest.fixture(scope="module")
def signer() -> LocalSigner:
    return signer_for("farthing-test-eip3009-signer")


def auth(payer: str, **overrides: Any) -> Authorization:
    fields: dict[str, Any] = {
        "from_address": payer,
        "to": PAYEE,
        "value": 10_000,
        "valid_after": NOW - 600,
        "valid_before": NOW + 300,
        "nonce": bytes(range(32)),
    }
    fields.update(overrides)
    return Authorization(**fields)


# --- known answers ------------------------------------------------------------


@pytest.mark.parametrize("vector", AUTH_VECTORS, ids=lambda v: v["id"])
def test_vector_reference_path_and_signing_reproduce_the_answer(vector: dict[str, Any]) -> None:
    signer = signer_for(vector["keySeed"])
    assert signer.address == vector["signer"]
    domain = domain_of(vector)
    authorization = Authorization.from_wire(vector["message"])
    data = typed_data(authorization, domain, vector["primaryType"])
    assert (
        "0x" + digest_of(encode_typed_data(data.domain, data.types, data.message)).hex()
        == (vector["digest"])
    )
    sign = (
        sign_authorization
        if vector["primaryType"] == "TransferWithAuthorization"
        else sign_receive_authorization
    )
    signed = sign(signer, authorization, domain)
    # eth-account signs deterministically (RFC 6979), so the bytes must match exactly.
    assert "0x" + signed.signature.hex() == vector["signature"]
    assert recover_authorization_signer(signed) == vector["signer"]


@pytest.mark.parametrize("vector", CANCEL_VECTORS, ids=lambda v: v["id"])
def test_cancel_vector_signs_to_the_answer(vector: dict[str, Any]) -> None:
    signer = signer_for(vector["keySeed"])
    nonce = bytes.fromhex(vector["message"]["nonce"][2:])
    signed = sign_cancel_authorization(signer, nonce=nonce, domain=domain_of(vector))
    assert "0x" + signed.signature.hex() == vector["signature"]
    data = cancel_typed_data(signed.cancellation, signed.domain)
    signable = encode_typed_data(data.domain, data.types, data.message)
    assert "0x" + digest_of(signable).hex() == vector["digest"]
    assert (signed.v, signed.r, signed.s) == (
        signed.signature[64],
        signed.signature[:32],
        signed.signature[32:64],
    )


def test_type_hashes_are_the_ones_fiattoken_uses() -> None:
    # Constants from Circle's FiatToken v2 source (EIP3009.sol), independent of eth-account.
    assert VECTORS["typehashes"] == {
        "EIP712Domain": "0x8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f",
        "TransferWithAuthorization": (
            "0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
        ),
        "ReceiveWithAuthorization": (
            "0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8"
        ),
        "CancelAuthorization": "0x158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429",
    }


# --- building -----------------------------------------------------------------


def test_build_defaults_follow_x402_clients(signer: LocalSigner) -> None:
    a = build_authorization(from_address=signer.address, to=PAYEE, value=5, now=NOW)
    assert (a.valid_after, a.valid_before) == (NOW - CLOCK_SKEW_S, NOW + VALID_FOR_S_DEFAULT)
    assert len(a.nonce) == 32
    b = build_authorization(from_address=signer.address, to=PAYEE, value=5, now=NOW)
    assert a.nonce != b.nonce  # fresh randomness each time


def test_build_options(signer: LocalSigner) -> None:
    a = build_authorization(
        from_address=signer.address.lower(),
        to=PAYEE.lower(),
        value=7,
        valid_for_s=60,
        valid_after=NOW,
        now=NOW,
        nonce=b"\x01" * 32,
    )
    assert a.from_address == signer.address and a.to == PAYEE  # stored checksummed
    assert (a.valid_after, a.valid_before, a.nonce) == (NOW, NOW + 60, b"\x01" * 32)
    early = build_authorization(from_address=signer.address, to=PAYEE, value=1, now=5)
    assert early.valid_after == 0  # never negative
    live = build_authorization(from_address=signer.address, to=PAYEE, value=1)
    assert live.valid_before > live.valid_after


@pytest.mark.parametrize("valid_for_s", [0, -1, VALID_FOR_S_MAX + 1, 1.5, True])
def test_build_refuses_bad_windows(signer: LocalSigner, valid_for_s: Any) -> None:
    with pytest.raises(AuthorizationError):
        build_authorization(
            from_address=signer.address, to=PAYEE, value=1, valid_for_s=valid_for_s, now=NOW
        )


def test_build_refuses_valid_after_past_the_window(signer: LocalSigner) -> None:
    with pytest.raises(AuthorizationError, match="before valid_before"):
        build_authorization(
            from_address=signer.address, to=PAYEE, value=1, valid_after=NOW + 300, now=NOW
        )


# --- validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"to": "0x1234"}, AddressError),
        ({"to": "not an address"}, AddressError),
        ({"to": PAYEE.replace("C", "c", 1)}, AddressError),  # broken EIP-55 checksum
        ({"from_address": "0x" + "00" * 20}, AuthorizationError),
        ({"value": 1.0}, AmountError),
        ({"value": True}, AmountError),
        ({"value": "10"}, AmountError),
        ({"value": -1}, AmountError),
        ({"value": 2**256}, AmountError),
        ({"nonce": b"\x00" * 31}, AuthorizationError),
        ({"nonce": b"\x00" * 33}, AuthorizationError),
        ({"nonce": "0x" + "00" * 32}, AuthorizationError),
        ({"nonce": bytearray(32)}, AuthorizationError),
        ({"valid_after": NOW, "valid_before": NOW}, AuthorizationError),
        ({"valid_after": NOW + 1, "valid_before": NOW}, AuthorizationError),
        ({"valid_after": -1}, AuthorizationError),
        ({"valid_before": 2**256}, AuthorizationError),
        ({"valid_after": 1.0}, AuthorizationError),
        ({"valid_before": False}, AuthorizationError),
    ],
)
def test_authorization_refuses_malformed_fields(
    signer: LocalSigner, overrides: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        auth(signer.address, **overrides)


def test_authorization_errors_share_the_wallet_root() -> None:
    assert issubclass(AuthorizationError, WalletError)
    assert issubclass(AuthorizationError, ValueError)


def test_authorization_accepts_the_extremes(signer: LocalSigner) -> None:
    a = auth(signer.address, value=2**256 - 1, valid_after=0, valid_before=2**256 - 1)
    assert a.value == 2**256 - 1
    assert auth(signer.address, value=0).value == 0


@pytest.mark.parametrize(
    "fields",
    [
        ("", "2", 0, PAYEE),
        ("x" * 257, "2", 1, PAYEE),
        ("USDC", "2", True, PAYEE),
        ("USDC", "2", -1, PAYEE),
        ("USDC", "2", 1, "0x00"),
        ("USDC", 2, 1, PAYEE),
    ],
)
def test_domain_refuses_malformed_fields(fields: tuple[Any, ...]) -> None:
    with pytest.raises(WalletError):
        TokenDomain(*fields)


def test_domain_for_asset_reads_name_and_version_from_the_asset() -> None:
    base = get_network("base").usdc
    assert base is not None
    assert TokenDomain.for_asset(base) == TokenDomain(
        "USD Coin", "2", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    )
    assert TokenDomain.for_asset(base).as_eip712()["chainId"] == 8453


# --- signing ------------------------------------------------------------------


def test_sign_then_recover_on_both_paths(signer: LocalSigner) -> None:
    a = auth(signer.address)
    for sign in (sign_authorization, sign_receive_authorization):
        signed = sign(signer, a, LOCAL)
        assert signed.v in (27, 28)
        assert signed.r + signed.s + bytes([signed.v]) == signed.signature
        assert len(signed.r) == len(signed.s) == 32
        assert recover_authorization_signer(signed) == signer.address
    transfer = sign_authorization(signer, a, LOCAL)
    receive = sign_receive_authorization(signer, a, LOCAL)
    assert transfer.signature != receive.signature  # distinct type hashes


def test_sign_refuses_an_authorization_from_someone_else(signer: LocalSigner) -> None:
    other = signer_for("farthing-test-eip3009-other")
    with pytest.raises(AuthorizationError, match="but the signer is"):
        sign_authorization(signer, auth(other.address), LOCAL)


class _TamperingSigner:
    """A fake signer whose output is altered, standing in for a broken KMS or wallet."""

    def __init__(self, inner: LocalSigner, how: str) -> None:
        self._inner = inner
        self._how = how

    @property
    def address(self) -> str:
        return self._inner.address

    def sign_typed_data(
        self, domain: Any, types: dict[str, Any], primary_type: str, message: dict[str, Any]
    ) -> bytes:
        sig = self._inner.sign_typed_data(domain, types, primary_type, message)
        r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
        if self._how == "high_s":
            return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
        if self._how == "v01":
            return sig[:64] + bytes([v - 27])
        if self._how == "short":
            return sig[:64]
        if self._how == "other_key":
            return signer_for("farthing-test-eip3009-other").sign_typed_data(
                domain, types, primary_type, message
            )
        raise AssertionError(self._how)


@pytest.mark.parametrize("how", ["high_s", "v01", "short", "other_key"])
def test_sign_checks_the_fresh_signature(signer: LocalSigner, how: str) -> None:
    with pytest.raises(SigningError):
        sign_authorization(_TamperingSigner(signer, how), auth(signer.address), LOCAL)


def test_cancel_signature_is_checked_and_recoverable(signer: LocalSigner) -> None:
    signed = sign_cancel_authorization(signer, nonce=b"\x07" * 32, domain=LOCAL)
    assert signed.cancellation == Cancellation(signer.address, b"\x07" * 32)
    with pytest.raises(SigningError):
        sign_cancel_authorization(
            _TamperingSigner(signer, "other_key"), nonce=b"\x07" * 32, domain=LOCAL
        )
    with pytest.raises(AuthorizationError):
        sign_cancel_authorization(signer, nonce=b"\x07" * 31, domain=LOCAL)


def test_signed_authorization_requires_65_bytes(signer: LocalSigner) -> None:
    with pytest.raises(AuthorizationError):
        SignedAuthorization(auth(signer.address), b"\x00" * 64, LOCAL)
    with pytest.raises(AuthorizationError):
        SignedAuthorization(auth(signer.address), b"\x00" * 65, LOCAL, "CancelAuthorization")  # type: ignore[arg-type]


def test_reference_recovery_of_garbage_raises_a_wallet_error(signer: LocalSigner) -> None:
    garbage = SignedAuthorization(auth(signer.address), b"\x00" * 64 + b"\x1b", LOCAL)
    with pytest.raises(AuthorizationError):
        recover_authorization_signer(garbage)


def test_typed_data_refuses_unknown_primary_types(signer: LocalSigner) -> None:
    with pytest.raises(AuthorizationError):
        typed_data(auth(signer.address), LOCAL, "Permit")  # type: ignore[arg-type]


# --- the x402 wire form -------------------------------------------------------


def test_wire_round_trip_uses_decimal_strings_and_hex(signer: LocalSigner) -> None:
    signed = sign_authorization(signer, auth(signer.address, value=2**256 - 1), LOCAL)
    wire = signed.to_wire()
    assert set(wire) == {"authorization", "signature"}
    assert wire["authorization"] == {
        "from": signer.address,
        "to": PAYEE,
        "value": str(2**256 - 1),
        "validAfter": str(NOW - 600),
        "validBefore": str(NOW + 300),
        "nonce": "0x" + bytes(range(32)).hex(),
    }
    assert wire["signature"] == "0x" + signed.signature.hex()
    assert SignedAuthorization.from_wire(json.loads(json.dumps(wire)), LOCAL) == signed


def test_wire_matches_the_vector_messages() -> None:
    for vector in AUTH_VECTORS:
        assert Authorization.from_wire(vector["message"]).to_wire() == vector["message"]


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("authorization", "value"), 10),
        (("authorization", "value"), "-1"),
        (("authorization", "value"), "1e3"),
        (("authorization", "value"), "0x10"),
        (("authorization", "value"), " 1"),
        (("authorization", "value"), "1\n"),  # a trailing newline passes a `$` regex
        (("authorization", "validBefore"), "99\n"),
        (("authorization", "value"), "1" * 79),
        (("authorization", "value"), str(2**256)),
        (("authorization", "validBefore"), "１２"),  # full-width digits
        (("authorization", "nonce"), "0x" + "00" * 31),
        (("authorization", "nonce"), "00" * 32 + "00"),
        (("authorization", "nonce"), "0x" + "zz" * 32),
        (("authorization", "from"), None),
        (("authorization", "to"), "0x12"),
        (("signature",), "0x" + "00" * 64),
        (("signature",), "0x" + "00" * 4097),  # over SIGNATURE_BYTES_MAX (a contract wallet's)
        (("signature",), "0x" + "00" * 65 + "\n"),
        (("signature",), "0x" + "00" * 65 + "0"),
        (("signature",), b"\x00" * 65),
        (("authorization",), "not an object"),
    ],
)
def test_wire_refuses_malformed_payloads(
    signer: LocalSigner, path: tuple[str, ...], bad: object
) -> None:
    wire: dict[str, Any] = sign_authorization(signer, auth(signer.address), LOCAL).to_wire()
    target = wire
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(WalletError):
        SignedAuthorization.from_wire(wire, LOCAL)


@pytest.mark.parametrize("payload", [None, [], "x", {}, {"signature": "0x"}])
def test_wire_refuses_non_payloads(payload: object) -> None:
    with pytest.raises(AuthorizationError):
        SignedAuthorization.from_wire(payload, LOCAL)


def test_wire_ignores_unsigned_extra_keys(signer: LocalSigner) -> None:
    wire: dict[str, Any] = sign_authorization(signer, auth(signer.address), LOCAL).to_wire()
    wire["authorization"]["memo"] = "not signed, not kept"
    assert SignedAuthorization.from_wire(wire, LOCAL).authorization == auth(signer.address)


def test_repr_never_shows_a_key(signer: LocalSigner) -> None:
    signed = sign_authorization(signer, auth(signer.address), LOCAL)
    key_hex = signer.private_key.get_secret_value().removeprefix("0x")
    assert key_hex not in repr(signed) and key_hex not in json.dumps(signed.to_wire())


def test_typed_data_hands_each_signer_its_own_types(signer: LocalSigner) -> None:
    first = typed_data(auth(signer.address), LOCAL)
    first.types["TransferWithAuthorization"].append({"name": "extra", "type": "uint256"})
    first.types["EIP712Domain"] = []
    again = typed_data(auth(signer.address), LOCAL)
    assert list(again.types) == ["TransferWithAuthorization"]
    assert len(again.types["TransferWithAuthorization"]) == 6

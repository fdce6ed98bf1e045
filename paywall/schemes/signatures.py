"""Whose signature is it: the payer's check every scheme shares, for keys and contract wallets.

A payer is one of four kinds, told apart by the code at its address (read
from the chain, never from the wire):

* ``eoa``: no code and a plain signature. ECDSA, with the token's own rules
  (65 bytes, ``v`` 27 or 28, low ``s``: ``farthing.wallet.eip712``).
* ``contract``: a deployed contract wallet (Safe, Coinbase Smart Wallet, an
  ERC-4337 account). ERC-1271: its ``isValidSignature(digest, signature)``
  must return ``0x1626ba7e``.
* ``counterfactual``: no code yet and an ERC-6492 wrapper
  (``farthing.wallet.erc6492``). The factory call runs in a simulation, then
  the new wallet's ``isValidSignature`` is asked about the inner signature;
  whoever settles deploys it first (:class:`Deployment`).
* ``eip7702``: an EOA whose code is the delegation ``0xef0100 || delegate``.
  It has code, so, as the token does, ERC-1271 through the delegate decides;
  a delegate that accepts the EOA's own key (ours does) accepts its ECDSA
  signature that way.

The contract questions are asked by ``SmartAccountValidator``, a contract
that is never deployed: its constructor runs in an ``eth_call`` and answers
one word, so nothing it does is kept. It gives the factory and the wallet
at most :data:`CALL_GAS_MAX` gas each and reads at most 32 bytes of the
answer. A signature longer than ``SIGNATURE_BYTES_MAX`` is refused before
anything decodes it.

This is verification, not a simulation of the payment: the schemes still
read nonces and balances and the token still checks the signature when it
settles. A wallet whose answer changes between the two (a 7702 delegate
swapped) makes the settlement revert; no money moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final, Literal

from eth_abi.abi import encode as abi_encode

from farthing.contracts import load_artifact
from farthing.wallet.address import ZERO_ADDRESS, checksum
from farthing.wallet.chain import Call, Chain
from farthing.wallet.eip712 import TYPE_STRINGS, keccak256, recover_digest
from farthing.wallet.erc6492 import SIGNATURE_BYTES_MAX, unwrap

__all__ = [
    "CALL_GAS_MAX",
    "DELEGATION_PREFIX",
    "Deployment",
    "SignatureCheck",
    "WalletKind",
    "check_signature",
    "delegate_of",
    "domain_separator_of",
    "eip3009_digest",
]

# Gas for each outside call the check makes (the factory's deployment, the
# wallet's isValidSignature): a passkey wallet's P-256 check in Solidity and
# a proxy's deployment each fit well under it.
CALL_GAS_MAX: Final = 1_000_000
DELEGATION_PREFIX: Final = b"\xef\x01\x00"
_DELEGATION_SIZE: Final = 23
_DOMAIN_SEPARATOR: Final = keccak256(b"DOMAIN_SEPARATOR()")[:4]

WalletKind = Literal["eoa", "contract", "counterfactual", "eip7702"]

_VALID: Final = 1
_VERDICTS: Final[dict[int, tuple[str, str]]] = {
    0: ("erc1271_refused", "the wallet's isValidSignature did not accept the signature"),
    2: ("erc6492_factory_failed", "the ERC-6492 factory call failed"),
    3: ("erc6492_not_deployed", "the ERC-6492 factory call did not deploy the payer's wallet"),
}


@dataclass(frozen=True, slots=True)
class Deployment:
    """The factory call that deploys a counterfactual wallet, to run before settling."""

    factory: str
    calldata: bytes


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The verdict on one signature: ``valid`` or a snake_case ``reason`` (with a ``message``).

    ``signature`` is what the token is to be given (a wrapper's inner
    signature); ``deployment`` is set for a counterfactual wallet.
    """

    valid: bool
    kind: WalletKind | None
    reason: str | None = None
    message: str | None = None
    signature: bytes = b""
    deployment: Deployment | None = None


def domain_separator_of(chain: Chain, token: str) -> bytes | None:
    """The token's own ``DOMAIN_SEPARATOR()``, or ``None`` if it has none."""
    answer = chain.call(Call(token, _DOMAIN_SEPARATOR))
    return answer.return_data if answer.ok and len(answer.return_data) == 32 else None


def eip3009_digest(
    separator: bytes,
    primary_type: str,
    *,
    from_address: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> bytes:
    """The EIP-712 digest of a Transfer- or ReceiveWithAuthorization under a token's separator."""
    struct_hash = keccak256(
        keccak256(TYPE_STRINGS[primary_type].encode("ascii"))
        + abi_encode(
            ["address", "address", "uint256", "uint256", "uint256", "bytes32"],
            [from_address, to, value, valid_after, valid_before, nonce],
        )
    )
    return keccak256(b"\x19\x01" + separator + struct_hash)


def delegate_of(code: bytes) -> str | None:
    """The EIP-7702 delegate named by an account's code, or ``None`` if it is not a delegation."""
    if len(code) != _DELEGATION_SIZE or code[:3] != DELEGATION_PREFIX:
        return None
    return checksum("0x" + code[3:].hex())


def check_signature(chain: Chain, signer: str, digest: bytes, signature: bytes) -> SignatureCheck:
    """Is ``signature`` over ``digest`` ``signer``'s, whatever kind of wallet ``signer`` is."""
    if len(digest) != 32:
        raise ValueError("a digest is 32 bytes")
    signer = checksum(signer)
    wrapped = unwrap(signature)
    if isinstance(wrapped, str):
        return SignatureCheck(False, None, wrapped, _MALFORMED.get(wrapped, wrapped))
    inner = signature if wrapped is None else wrapped.signature
    code = chain.code_at(signer)
    if not code:
        if wrapped is None:
            if recover_digest(digest, signature) == signer:
                return SignatureCheck(True, "eoa", signature=signature)
            return SignatureCheck(
                False, "eoa", "invalid_signature", "the signature does not recover to the payer"
            )
        deployment = Deployment(wrapped.factory, wrapped.factory_calldata)
        refused = _ask(chain, signer, digest, inner, deployment)
        if refused is not None:
            return SignatureCheck(False, "counterfactual", *refused)
        return SignatureCheck(True, "counterfactual", signature=inner, deployment=deployment)
    kind: WalletKind = "contract" if delegate_of(code) is None else "eip7702"
    refused = _ask(chain, signer, digest, inner, None)
    if refused is not None:
        return SignatureCheck(False, kind, *refused)
    return SignatureCheck(True, kind, signature=inner)


_MALFORMED: Final = {
    "signature_too_large": f"the signature is over {SIGNATURE_BYTES_MAX} bytes",
    "invalid_erc6492_signature": "the ERC-6492 wrapper is not well formed",
}


def _ask(
    chain: Chain, signer: str, digest: bytes, signature: bytes, deployment: Deployment | None
) -> tuple[str, str] | None:
    """Run the validator's constructor read-only: ``None`` if the wallet accepts, else why not."""
    factory = deployment.factory if deployment is not None else ZERO_ADDRESS
    calldata = deployment.calldata if deployment is not None else b""
    arguments = abi_encode(
        ["address", "bytes32", "address", "bytes", "bytes", "uint256"],
        [signer, digest, factory, calldata, signature, CALL_GAS_MAX],
    )
    result = chain.call(Call(None, _validator_code() + arguments))
    if not result.ok or len(result.return_data) != 32:
        return ("signature_check_failed", f"the wallet check did not run: {result.reason}")
    verdict = int.from_bytes(result.return_data, "big")
    if verdict == _VALID:
        return None
    return _VERDICTS.get(verdict, ("signature_check_failed", f"unexpected verdict {verdict}"))


@cache
def _validator_code() -> bytes:
    return bytes.fromhex(load_artifact("SmartAccountValidator").bytecode[2:])

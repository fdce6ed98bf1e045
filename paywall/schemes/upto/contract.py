"""The ``upto`` contracts: Permit2 and the x402UptoPermit2Proxy, their calls, errors and placement.

The payer approves Permit2 once per token; each payment is a Permit2 witness
transfer signed for a ceiling, which only the proxy may spend, only the
facilitator named in the witness may settle, and only to the payee named in
it. :func:`settle_call` and :func:`settle_with_permit_call` encode the
proxy's two entry points for the actual amount; :func:`custom_error_name`
names the custom error behind a revert.

:func:`place_upto_contracts` puts Farthing's own Permit2 and proxy at the
canonical addresses on a dev chain (the memory chain or anvil), so the
official SDKs, which hard-code those addresses, work unmodified. Real
networks use the deployed official contracts (the same addresses on every
chain).
"""

from __future__ import annotations

from typing import Final

from eth_abi.abi import encode as abi_encode

from farthing.contracts import load_artifact
from farthing.paywall.schemes.calldata import arg_types, encode_call
from farthing.paywall.schemes.placement import place_code, runtime_code
from farthing.paywall.schemes.reverts import custom_error, error_selectors
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain
from farthing.wallet.errors import ChainError
from farthing.wallet.networks import CANONICAL_UPTO_CONTRACTS

__all__ = [
    "ERC20_SIGNATURES",
    "PERMIT2_ADDRESS",
    "PERMIT2_SIGNATURES",
    "PROXY_SIGNATURES",
    "UPTO_PROXY_ADDRESS",
    "WITNESS_TYPE_STRING",
    "custom_error_name",
    "place_upto_contracts",
    "settle_call",
    "settle_with_permit_call",
]

# The canonical addresses: the same on every EVM chain (CREATE2).
PERMIT2_ADDRESS: Final = checksum(CANONICAL_UPTO_CONTRACTS.permit2)
UPTO_PROXY_ADDRESS: Final = checksum(CANONICAL_UPTO_CONTRACTS.proxy)

# What follows Permit2's "PermitWitnessTransferFrom(...,uint256 deadline," in the signed type.
WITNESS_TYPE_STRING: Final = (
    "Witness witness)TokenPermissions(address token,uint256 amount)"
    "Witness(address to,address facilitator,uint256 validAfter)"
)

_PERMIT = "((address,uint256),uint256,uint256)"
_WITNESS = "(address,address,uint256)"
_EIP2612 = "(uint256,uint256,bytes32,bytes32,uint8)"

# Every call the binding encodes, by signature (checked against the ABIs by a test).
PROXY_SIGNATURES: Final = {
    "settle": f"settle({_PERMIT},uint256,address,{_WITNESS},bytes)",
    "settleWithPermit": f"settleWithPermit({_EIP2612},{_PERMIT},uint256,address,{_WITNESS},bytes)",
}
PERMIT2_SIGNATURES: Final = {
    "nonceBitmap": "nonceBitmap(address,uint256)",
    "DOMAIN_SEPARATOR": "DOMAIN_SEPARATOR()",
}
ERC20_SIGNATURES: Final = {
    "allowance": "allowance(address,address)",
    "approve": "approve(address,uint256)",
    "balanceOf": "balanceOf(address)",
    "nonces": "nonces(address)",
}

_WHAT: Final = "upto"
_ERROR_SELECTORS: Final = error_selectors(("Permit2", "X402UptoPermit2Proxy"))

PermitArgs = tuple[tuple[str, int], int, int]
WitnessArgs = tuple[str, str, int]


def settle_call(
    permit: PermitArgs, amount: int, owner: str, witness: WitnessArgs, signature: bytes
) -> Call:
    """``x402UptoPermit2Proxy.settle`` for ``amount`` (at most the permit's ceiling)."""
    signature_text = PROXY_SIGNATURES["settle"]
    args = [permit, amount, owner, witness, signature]
    return Call(UPTO_PROXY_ADDRESS, encode_call(signature_text, arg_types(signature_text), args))


def settle_with_permit_call(
    permit2612: tuple[int, int, bytes, bytes, int],
    permit: PermitArgs,
    amount: int,
    owner: str,
    witness: WitnessArgs,
    signature: bytes,
) -> Call:
    """``x402UptoPermit2Proxy.settleWithPermit``: the EIP-2612 approval of Permit2, then the settle."""
    signature_text = PROXY_SIGNATURES["settleWithPermit"]
    args = [permit2612, permit, amount, owner, witness, signature]
    return Call(UPTO_PROXY_ADDRESS, encode_call(signature_text, arg_types(signature_text), args))


def custom_error_name(revert_message: str | None) -> str | None:
    """The Permit2 or proxy custom error behind a revert message, e.g. ``InvalidNonce``."""
    return custom_error(revert_message, _ERROR_SELECTORS)


def place_upto_contracts(chain: Chain) -> tuple[str, str]:
    """Put our Permit2 and x402UptoPermit2Proxy at their canonical addresses on a dev chain.

    Returns (Permit2, proxy). Only on a dev chain (the memory chain or anvil);
    elsewhere it raises ``ChainError``. Idempotent: code already in place is
    left alone. Permit2 has no immutables (its domain separator is computed
    per call, so it names the canonical address); the proxy's one (Permit2's
    address) is filled in by running its constructor read-only.
    """
    if not chain.is_dev:
        raise ChainError(f"{chain!r} is not a dev chain: use the deployed {_WHAT} contracts there")
    proxy_creation = bytes.fromhex(load_artifact("X402UptoPermit2Proxy").bytecode[2:]) + abi_encode(
        ["address"], [PERMIT2_ADDRESS]
    )
    wanted: dict[str, bytes] = {
        PERMIT2_ADDRESS: bytes.fromhex(load_artifact("Permit2").deployed_bytecode[2:]),
        UPTO_PROXY_ADDRESS: runtime_code(chain, proxy_creation, what=_WHAT),
    }
    place_code(chain, wanted, what=_WHAT)
    return PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS

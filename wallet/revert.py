"""Revert reasons: the token's revert strings as snake_case reasons.

The stablecoin reverts with the strings of Circle's FiatToken v2, so x402
tooling reads them as it reads USDC's. This module maps them to Farthing's
snake_case reasons and digs the string out of whichever exception a backend
raised (eth-tester's ``TransactionFailed`` or web3's ``ContractLogicError``).
"""

from __future__ import annotations

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError

__all__ = ["REVERT_REASONS", "decode_revert_data", "reason_for_revert", "revert_message"]

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

# FiatToken v2 revert strings (and our BatchSettler's) → snake_case reasons.
# Matched exactly first, then as substrings, most specific first.
REVERT_REASONS: tuple[tuple[str, str], ...] = (
    ("FiatTokenV2: authorization is expired", "authorization_expired"),
    ("FiatTokenV2: authorization is not yet valid", "authorization_not_yet_valid"),
    ("FiatTokenV2: authorization is used or canceled", "authorization_used_or_canceled"),
    ("FiatTokenV2: caller must be the payee", "caller_must_be_payee"),
    ("FiatTokenV2: permit is expired", "permit_expired"),
    ("FiatTokenV2: invalid signature", "invalid_signature"),
    ("EIP2612: invalid signature", "invalid_signature"),
    ("ECRecover: invalid signature 's' value", "invalid_signature"),
    ("ECRecover: invalid signature 'v' value", "invalid_signature"),
    ("ECRecover: invalid signature length", "invalid_signature"),
    ("ECRecover: invalid signature", "invalid_signature"),
    ("ERC20: transfer amount exceeds balance", "insufficient_balance"),
    ("ERC20: transfer amount exceeds allowance", "insufficient_allowance"),
    ("ERC20: transfer to the zero address", "transfer_to_zero_address"),
    ("ERC20: transfer from the zero address", "transfer_from_zero_address"),
    ("ERC20: approve to the zero address", "approve_to_zero_address"),
    ("ERC20: approve from the zero address", "approve_from_zero_address"),
    ("FiatToken: caller is not a minter", "caller_not_minter"),
    ("FiatToken: caller is not the masterMinter", "caller_not_master_minter"),
    ("FiatToken: mint amount exceeds minterAllowance", "mint_exceeds_minter_allowance"),
    ("FiatToken: mint amount not greater than 0", "mint_amount_zero"),
    ("FiatToken: mint to the zero address", "mint_to_zero_address"),
    ("Ownable: caller is not the owner", "caller_not_owner"),
    ("BatchSettler: token has no code", "token_has_no_code"),
)
_REASON_BY_MESSAGE = dict(REVERT_REASONS)


def reason_for_revert(message: str | None) -> str:
    """Map a revert message to a snake_case reason (``"reverted"`` if unknown).

    >>> reason_for_revert("execution reverted: FiatTokenV2: authorization is expired")
    'authorization_expired'
    """
    if not message:
        return "reverted"
    text = _strip_revert_prefix(message)
    if text in _REASON_BY_MESSAGE:
        return _REASON_BY_MESSAGE[text]
    for needle, reason in REVERT_REASONS:
        if needle in text:
            return reason
    if "out of gas" in text.lower() or "outofgas" in text.lower():  # py-evm, anvil
        return "out_of_gas"
    return "reverted"


def _strip_revert_prefix(message: str) -> str:
    text = message.strip()
    for prefix in ("execution reverted: ", "execution reverted:", "execution reverted"):
        if text.startswith(prefix):
            return text[len(prefix) :].strip()
    return text


def revert_message(exc: BaseException) -> str | None:
    """The revert string behind either backend's exception, if there is one."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        decoded = decode_revert_data(bytes.fromhex(data[2:]))
        if decoded is not None:
            return decoded
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc.args[0]) if exc.args else None
    if message is None:
        return None
    text = _strip_revert_prefix(message)
    return text or None


def decode_revert_data(data: bytes) -> str | None:
    if data[:4] == _ERROR_SELECTOR:
        try:
            (text,) = abi_decode(["string"], data[4:])
            return str(text)
        except DecodingError:
            return None
    if data[:4] == _PANIC_SELECTOR and len(data) >= 36:
        return f"panic {hex(int.from_bytes(data[4:36], 'big'))}"
    return None

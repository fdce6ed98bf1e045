"""Typed bindings for Farthing's Stablecoin and BatchSettler contracts.

Calls are encoded with eth-abi against fixed signatures (a test checks each
one against the committed ABI), and every write goes through
:meth:`Chain.send`, so an outcome such as ``authorization_used_or_canceled`` is
a :class:`TxResult` value. The bindings work on both backends and on any
FiatToken v2.2-compatible token (USDC) for the calls it shares.

A signed authorization is anything with ``.authorization`` (``from_address``,
``to``, ``value``, ``valid_after``, ``valid_before``, ``nonce``) and a 65-byte
``.signature``: ``farthing.wallet.eip3009.SignedAuthorization`` fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from farthing.contracts import load_artifact
from farthing.invariant import invariant
from farthing.wallet.address import checksum
from farthing.wallet.chain import Call, Chain, TransferEvent, TxResult, address_topic
from farthing.wallet.errors import ChainError, DeploymentError
from farthing.wallet.money import UINT256_MAX, Asset
from farthing.wallet.revert import reason_for_revert
from farthing.wallet.signer import TxSigner

__all__ = [
    "AUTHORIZATION_CANCELED_TOPIC",
    "AUTHORIZATION_SETTLED_TOPIC",
    "AUTHORIZATION_USED_TOPIC",
    "AuthorizationOutcome",
    "BatchItemResult",
    "BatchSettlement",
    "BatchSettler",
    "SignatureForm",
    "SignedAuthorizationLike",
    "SignedCancellationLike",
    "Stablecoin",
    "deploy_batch_settler",
    "deploy_stablecoin",
    "read_asset",
]

SignatureForm = Literal["vrs", "bytes"]

_AUTH_ARGS = "address,address,uint256,uint256,uint256,bytes32"
_AUTH_TYPES = ["address", "address", "uint256", "uint256", "uint256", "bytes32"]
_BATCH_ITEM = "(address,address,uint256,uint256,uint256,bytes32,bytes)"

# Every function signature this module calls, checked against the ABI by a test.
SIGNATURES: dict[str, str] = {
    "name": "name()",
    "symbol": "symbol()",
    "version": "version()",
    "decimals": "decimals()",
    "totalSupply": "totalSupply()",
    "balanceOf": "balanceOf(address)",
    "allowance": "allowance(address,address)",
    "authorizationState": "authorizationState(address,bytes32)",
    "nonces": "nonces(address)",
    "DOMAIN_SEPARATOR": "DOMAIN_SEPARATOR()",
    "isMinter": "isMinter(address)",
    "minterAllowance": "minterAllowance(address)",
    "transfer": "transfer(address,uint256)",
    "approve": "approve(address,uint256)",
    "mint": "mint(address,uint256)",
    "configureMinter": "configureMinter(address,uint256)",
    "transferWithAuthorization.vrs": f"transferWithAuthorization({_AUTH_ARGS},uint8,bytes32,bytes32)",
    "transferWithAuthorization.bytes": f"transferWithAuthorization({_AUTH_ARGS},bytes)",
    "receiveWithAuthorization.vrs": f"receiveWithAuthorization({_AUTH_ARGS},uint8,bytes32,bytes32)",
    "receiveWithAuthorization.bytes": f"receiveWithAuthorization({_AUTH_ARGS},bytes)",
    "cancelAuthorization.vrs": "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)",
    "cancelAuthorization.bytes": "cancelAuthorization(address,bytes32,bytes)",
    "permit.vrs": "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
    "permit.bytes": "permit(address,address,uint256,uint256,bytes)",
    "settle": f"settle(address,{_BATCH_ITEM}[])",
}

AUTHORIZATION_USED_TOPIC = keccak(text="AuthorizationUsed(address,bytes32)")
AUTHORIZATION_CANCELED_TOPIC = keccak(text="AuthorizationCanceled(address,bytes32)")
AUTHORIZATION_SETTLED_TOPIC = keccak(
    text="AuthorizationSettled(address,address,bytes32,uint256,bool,string)"
)


class AuthorizationLike(Protocol):
    @property
    def from_address(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def value(self) -> int: ...
    @property
    def valid_after(self) -> int: ...
    @property
    def valid_before(self) -> int: ...
    @property
    def nonce(self) -> bytes | str: ...


@dataclass(frozen=True, slots=True)
class AuthorizationOutcome:
    """What the chain says about one EIP-3009 nonce.

    ``state`` is ``used`` (money moved, in ``tx_hash``), ``canceled``,
    ``unused``, or ``spent_outside_range`` (used or cancelled, but no log in
    the blocks searched).
    """

    state: Literal["used", "canceled", "unused", "spent_outside_range"]
    tx_hash: str | None = None
    block_number: int | None = None


class SignedAuthorizationLike(Protocol):
    """What the bindings need from a signed EIP-3009 authorization."""

    @property
    def authorization(self) -> AuthorizationLike: ...
    @property
    def signature(self) -> bytes: ...


class CancellationLike(Protocol):
    @property
    def authorizer(self) -> str: ...
    @property
    def nonce(self) -> bytes | str: ...


class SignedCancellationLike(Protocol):
    """What the bindings need from a signed EIP-3009 CancelAuthorization."""

    @property
    def cancellation(self) -> CancellationLike: ...
    @property
    def signature(self) -> bytes: ...


def _encode(key: str, types: list[str], args: list[Any]) -> bytes:
    return keccak(text=SIGNATURES[key])[:4] + abi_encode(types, args)


def _bytes32(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else value
    invariant(len(raw) == 32, "an EIP-3009 nonce is 32 bytes")
    return bytes(raw)


def _split_signature(signature: bytes) -> tuple[int, bytes, bytes]:
    """(v, r, s) of a 65-byte r‖s‖v signature, passed through unchanged."""
    invariant(len(signature) == 65, "the v,r,s form needs a 65-byte signature")
    return signature[64], signature[:32], signature[32:64]


def _auth_args(signed: SignedAuthorizationLike) -> list[Any]:
    auth = signed.authorization
    for name in ("value", "valid_after", "valid_before"):
        amount = getattr(auth, name)
        invariant(
            isinstance(amount, int) and not isinstance(amount, bool) and 0 <= amount <= UINT256_MAX,
            f"authorization {name} must be an int in uint256 range",
        )
    return [
        checksum(auth.from_address),
        checksum(auth.to),
        auth.value,
        auth.valid_after,
        auth.valid_before,
        _bytes32(auth.nonce),
    ]


def _with_signature(
    key: str, types: list[str], args: list[Any], signature: bytes, form: SignatureForm
) -> bytes:
    if form == "vrs":
        v, r, s = _split_signature(signature)
        return _encode(f"{key}.vrs", [*types, "uint8", "bytes32", "bytes32"], [*args, v, r, s])
    invariant(form == "bytes", f"signature form must be 'vrs' or 'bytes', got {form!r}")
    return _encode(f"{key}.bytes", [*types, "bytes"], [*args, bytes(signature)])


def _check_amount(amount: int) -> None:
    invariant(
        isinstance(amount, int) and not isinstance(amount, bool) and 0 <= amount <= UINT256_MAX,
        "amounts are ints of atomic units in uint256 range",
    )


# ---------------------------------------------------------------- deployment


def deploy_stablecoin(
    chain: Chain,
    *,
    sender: TxSigner,
    name: str = "USD Coin",
    symbol: str = "USDC",
    version: str = "2",
) -> Asset:
    """Deploy a Stablecoin; ``sender`` becomes its owner and master minter."""
    args = abi_encode(["string", "string", "string"], [name, symbol, version])
    creation = bytes.fromhex(load_artifact("Stablecoin").bytecode[2:]) + args
    result = chain.deploy(creation, sender=sender)
    if not result.ok or result.contract_address is None:
        raise DeploymentError(f"deploying the stablecoin failed: {result.reason}")
    return Asset(chain.network, result.contract_address, 6, name, version, symbol)


def deploy_batch_settler(chain: Chain, *, sender: TxSigner) -> str:
    """Deploy a BatchSettler; return its address."""
    result = chain.deploy(bytes.fromhex(load_artifact("BatchSettler").bytecode[2:]), sender=sender)
    if not result.ok or result.contract_address is None:
        raise DeploymentError(f"deploying the batch settler failed: {result.reason}")
    return result.contract_address


def read_asset(chain: Chain, address: str) -> Asset:
    """Describe the token at ``address`` from what it says on-chain."""
    address = checksum(address)
    if not chain.code_at(address):
        raise DeploymentError(f"no contract at {address} on {chain.network}")
    token = Stablecoin(chain, Asset(chain.network, address, 6, "?", "?", "?"))
    return Asset(
        chain.network, address, token.decimals(), token.name(), token.version(), token.symbol()
    )


# ---------------------------------------------------------------- the token


class Stablecoin:
    """A FiatToken-style token on one chain."""

    def __init__(self, chain: Chain, asset: Asset) -> None:
        invariant(
            asset.network == chain.network, f"{asset.network} token on a {chain.network} chain"
        )
        self.chain = chain
        self.asset = asset
        self.address = checksum(asset.address)

    def __repr__(self) -> str:
        return f"Stablecoin({self.asset.symbol} at {self.address} on {self.chain.network})"

    # ------------------------------------------------------------ reads

    def _read(self, key: str, types: list[str], args: list[Any], out: list[str]) -> Any:
        result = self.chain.call(Call(self.address, _encode(key, types, args)))
        if not result.ok:
            raise DeploymentError(
                f"{self.address} refused {SIGNATURES[key]}: {result.revert_message}"
            )
        values = abi_decode(out, result.return_data)
        return values[0] if len(values) == 1 else values

    def name(self) -> str:
        return str(self._read("name", [], [], ["string"]))

    def symbol(self) -> str:
        return str(self._read("symbol", [], [], ["string"]))

    def version(self) -> str:
        return str(self._read("version", [], [], ["string"]))

    def decimals(self) -> int:
        return int(self._read("decimals", [], [], ["uint8"]))

    def total_supply(self) -> int:
        return int(self._read("totalSupply", [], [], ["uint256"]))

    def balance_of(self, address: str) -> int:
        return int(self._read("balanceOf", ["address"], [checksum(address)], ["uint256"]))

    def allowance(self, owner: str, spender: str) -> int:
        args = [checksum(owner), checksum(spender)]
        return int(self._read("allowance", ["address", "address"], args, ["uint256"]))

    def nonces(self, owner: str) -> int:
        """The EIP-2612 permit nonce of ``owner``."""
        return int(self._read("nonces", ["address"], [checksum(owner)], ["uint256"]))

    def domain_separator(self) -> bytes:
        return bytes(self._read("DOMAIN_SEPARATOR", [], [], ["bytes32"]))

    def is_minter(self, address: str) -> bool:
        return bool(self._read("isMinter", ["address"], [checksum(address)], ["bool"]))

    def minter_allowance(self, address: str) -> int:
        return int(self._read("minterAllowance", ["address"], [checksum(address)], ["uint256"]))

    def authorization_state(self, authorizer: str, nonce: bytes | str) -> bool:
        """True once the EIP-3009 nonce is used or cancelled."""
        return self.chain.authorization_state(self.address, authorizer, _bytes32(nonce))

    def payer_state(self, authorizer: str, nonce: bytes | str) -> tuple[bool, int]:
        """``(authorizationState, balanceOf)`` of one payer, read together against one block.

        What verifying an EIP-3009 payment asks of the chain, in one round
        trip on a JSON-RPC chain (``Chain.call_many``).
        """
        holder = checksum(authorizer)
        state_of = _encode("authorizationState", ["address", "bytes32"], [holder, _bytes32(nonce)])
        used, held = self.chain.call_many(
            (
                Call(self.address, state_of),
                Call(self.address, _encode("balanceOf", ["address"], [holder])),
            )
        )
        if not used.ok:
            raise ChainError(f"{self.address} has no authorizationState (not an EIP-3009 token?)")
        if not held.ok:
            raise DeploymentError(
                f"{self.address} refused {SIGNATURES['balanceOf']}: {held.revert_message}"
            )
        (state,) = abi_decode(["bool"], used.return_data)
        (balance,) = abi_decode(["uint256"], held.return_data)
        return bool(state), int(balance)

    def authorization_outcome(
        self,
        authorizer: str,
        nonce: bytes | str,
        *,
        from_block: int = 0,
        to_block: int | None = None,
    ) -> AuthorizationOutcome:
        """What became of an authorization: used (and where), cancelled, or unused.

        ``authorizationState`` alone cannot tell a used nonce from a cancelled
        one, and only a used one moved money, so the token's
        ``AuthorizationUsed`` and ``AuthorizationCanceled`` logs decide.
        """
        raw_nonce = _bytes32(nonce)
        if not self.authorization_state(authorizer, raw_nonce):
            return AuthorizationOutcome("unused")
        topics = [None, address_topic(authorizer), "0x" + raw_nonce.hex()]
        for log in self.chain.logs(self.address, topics, from_block, to_block):
            if log.topics[0] == AUTHORIZATION_USED_TOPIC:
                return AuthorizationOutcome("used", log.tx_hash, log.block_number)
            if log.topics[0] == AUTHORIZATION_CANCELED_TOPIC:
                return AuthorizationOutcome("canceled", log.tx_hash, log.block_number)
        # Used or cancelled outside the scanned blocks: known to be spent, not how.
        return AuthorizationOutcome("spent_outside_range")

    def transfer_events(
        self, from_block: int, to_block: int | None = None, addresses: Sequence[str] | None = None
    ) -> list[TransferEvent]:
        return self.chain.transfer_events(
            self.address, from_block, to_block, list(addresses or []) or None
        )

    # ------------------------------------------------------------ writes

    def _send(self, data: bytes, sender: TxSigner) -> TxResult:
        return self.chain.send(Call(self.address, data), sender=sender)

    def transfer(self, to: str, amount: int, *, sender: TxSigner) -> TxResult:
        _check_amount(amount)
        return self._send(
            _encode("transfer", ["address", "uint256"], [checksum(to), amount]), sender
        )

    def approve(self, spender: str, amount: int, *, sender: TxSigner) -> TxResult:
        _check_amount(amount)
        return self._send(
            _encode("approve", ["address", "uint256"], [checksum(spender), amount]), sender
        )

    def mint(self, to: str, amount: int, *, sender: TxSigner) -> TxResult:
        """Mint ``amount`` atomic units to ``to``; ``sender`` must be a minter."""
        _check_amount(amount)
        return self._send(_encode("mint", ["address", "uint256"], [checksum(to), amount]), sender)

    def configure_minter(
        self, minter: str, allowance: int = UINT256_MAX, *, sender: TxSigner
    ) -> TxResult:
        """Let ``minter`` mint up to ``allowance`` (unlimited by default); master minter only."""
        _check_amount(allowance)
        args = [checksum(minter), allowance]
        return self._send(_encode("configureMinter", ["address", "uint256"], args), sender)

    def transfer_with_authorization_call(
        self, signed: SignedAuthorizationLike, form: SignatureForm = "vrs"
    ) -> Call:
        """The call, unsent: simulate it with ``chain.call(…, sender=…)`` to verify a payment."""
        data = _with_signature(
            "transferWithAuthorization", _AUTH_TYPES, _auth_args(signed), signed.signature, form
        )
        return Call(self.address, data)

    def transfer_with_authorization(
        self, signed: SignedAuthorizationLike, *, sender: TxSigner, form: SignatureForm = "vrs"
    ) -> TxResult:
        """Submit a signed EIP-3009 TransferWithAuthorization; anyone may send it."""
        return self.chain.send(self.transfer_with_authorization_call(signed, form), sender=sender)

    def receive_with_authorization(
        self, signed: SignedAuthorizationLike, *, sender: TxSigner, form: SignatureForm = "vrs"
    ) -> TxResult:
        """Submit a signed ReceiveWithAuthorization; only the payee may send it."""
        data = _with_signature(
            "receiveWithAuthorization", _AUTH_TYPES, _auth_args(signed), signed.signature, form
        )
        return self._send(data, sender)

    def cancel_authorization(
        self, signed: SignedCancellationLike, *, sender: TxSigner, form: SignatureForm = "vrs"
    ) -> TxResult:
        """Burn an unused nonce with the authorizer's signed CancelAuthorization."""
        cancellation = signed.cancellation
        args = [checksum(cancellation.authorizer), _bytes32(cancellation.nonce)]
        data = _with_signature(
            "cancelAuthorization", ["address", "bytes32"], args, signed.signature, form
        )
        return self._send(data, sender)

    def permit(
        self,
        owner: str,
        spender: str,
        value: int,
        deadline: int,
        signature: bytes,
        *,
        sender: TxSigner,
        form: SignatureForm = "vrs",
    ) -> TxResult:
        """Submit an EIP-2612 permit signed by ``owner``."""
        _check_amount(value)
        _check_amount(deadline)
        args = [checksum(owner), checksum(spender), value, deadline]
        types = ["address", "address", "uint256", "uint256"]
        return self._send(_with_signature("permit", types, args, signature, form), sender)


# ---------------------------------------------------------------- batches


@dataclass(frozen=True, slots=True)
class BatchItemResult:
    """What happened to one authorization of a batch."""

    index: int
    ok: bool
    from_address: str
    nonce: bytes
    reason: str | None
    revert_message: str | None


@dataclass(frozen=True, slots=True)
class BatchSettlement:
    """A batch's transaction and, in submission order, each item's outcome."""

    tx: TxResult
    items: tuple[BatchItemResult, ...]

    @property
    def settled_count(self) -> int:
        return sum(1 for item in self.items if item.ok)


class BatchSettler:
    """Submits many EIP-3009 authorizations for one token in one transaction."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.address = checksum(address)

    def __repr__(self) -> str:
        return f"BatchSettler({self.address} on {self.chain.network})"

    def settle(
        self, token: Asset | str, items: Sequence[SignedAuthorizationLike], *, sender: TxSigner
    ) -> BatchSettlement:
        """Try every authorization; one the token refuses does not sink the others.

        If the transaction itself fails (no token code, out of gas), every item
        carries that transaction's reason.
        """
        invariant(len(items) > 0, "a batch needs at least one authorization")
        token_address = checksum(token.address if isinstance(token, Asset) else token)
        encoded_items = [(*_auth_args(item), bytes(item.signature)) for item in items]
        data = _encode("settle", ["address", f"{_BATCH_ITEM}[]"], [token_address, encoded_items])
        tx = self.chain.send(Call(self.address, data), sender=sender)
        if not tx.ok:
            failed = tuple(
                BatchItemResult(i, False, args[0], args[5], tx.reason, tx.revert_message)
                for i, args in enumerate(encoded_items)
            )
            return BatchSettlement(tx, failed)
        outcomes: dict[int, BatchItemResult] = {}
        for log in tx.logs:
            if (
                log.address != self.address
                or not log.topics
                or log.topics[0] != AUTHORIZATION_SETTLED_TOPIC
            ):
                continue
            index, success, message = abi_decode(["uint256", "bool", "string"], log.data)
            outcomes[int(index)] = BatchItemResult(
                index=int(index),
                ok=bool(success),
                from_address=to_checksum_address(log.topics[2][-20:]),
                nonce=bytes(log.topics[3]),
                reason=None if success else reason_for_revert(message),
                revert_message=None if success else (message or None),
            )
        invariant(
            sorted(outcomes) == list(range(len(items))),
            "the batch settler must report every item exactly once",
        )
        return BatchSettlement(tx, tuple(outcomes[i] for i in range(len(items))))

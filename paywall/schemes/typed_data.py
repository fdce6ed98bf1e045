"""EIP-712 by hand for the schemes' own messages: type hashes, digests, and the checked signature.

``batch_settlement`` (vouchers, claim batches, refunds under the escrow's
domain) and ``auth_capture`` (the receiver authorizer's consents under the
operator's domain) build their digests word by word; what they share sits
here: :func:`type_hash` of a primary type and the types it references,
:func:`typed_digest` (``keccak(0x1901 ‖ domainSeparator ‖ structHash)``) and
:func:`sign_checked`, which reads encode → sign → recover so a signature that
does not recover to its signer never leaves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from farthing.wallet.abi_words import keccak
from farthing.wallet.eip712 import recover_digest
from farthing.wallet.errors import SigningError
from farthing.wallet.signer import Signer
from farthing.wallet.smart_account import SmartAccountSigner

__all__ = ["sign_checked", "type_hash", "typed_digest"]

Types = Mapping[str, list[dict[str, str]]]


def type_hash(types: Types, primary: str) -> bytes:
    """``keccak(encodeType(primary))``: the primary type, then the types it references, sorted."""

    def one(name: str) -> str:
        return f"{name}({','.join(f['type'] + ' ' + f['name'] for f in types[name])})"

    referenced = sorted(name for name in types if name != primary)
    return keccak("".join([one(primary), *(one(n) for n in referenced)]).encode())


def typed_digest(separator: bytes, struct_hash: bytes) -> bytes:
    """The EIP-712 digest of a struct hash under a domain separator."""
    return keccak(b"\x19\x01" + separator + struct_hash)


def sign_checked(
    signer: Signer,
    domain: dict[str, Any],
    types: Types,
    primary: str,
    message: dict[str, Any],
    digest: bytes,
    *,
    what: str,
) -> bytes:
    """encode → sign → recover: a ``what`` that does not recover to its signer never leaves.

    The signer gets its own copy of ``types``, so the module's tables stay as declared.
    """
    copied = {name: [dict(f) for f in fields] for name, fields in types.items()}
    signature = bytes(signer.sign_typed_data(domain, copied, primary, message))
    if isinstance(signer, SmartAccountSigner):
        # A smart account's signature is its owner key's (the account answers ERC-1271).
        if recover_digest(digest, signer.owner_signature(signature)) != signer.owner:
            raise SigningError(f"the {primary} {what} does not recover to {signer.owner}")
        return signature
    if recover_digest(digest, signature) != signer.address:
        raise SigningError(f"the {primary} {what} does not recover to {signer.address}")
    return signature

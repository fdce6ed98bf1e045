"""Compiled Farthing contracts, loaded from the committed artifacts.

The Solidity sources beside this file are compiled at development time with
the pinned npm ``solc`` (``node contracts/build.mjs``); the artifacts under
``artifacts/`` ship as package data, so no user path needs a compiler.

>>> load_artifact("Stablecoin").contract_name
'Stablecoin'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["ARTIFACT_NAMES", "Artifact", "load_artifact"]

ARTIFACT_NAMES: tuple[str, ...] = (
    "AuthCaptureEscrow",
    "BatchSettlement",
    "BatchSettler",
    "ERC3009DepositCollector",
    "ERC3009PaymentCollector",
    "Multicall3",
    "OperatorRefundCollector",
    "Permit2",
    "SmartAccount",
    "SmartAccountFactory",
    "SmartAccountValidator",
    "Stablecoin",
    "X402UptoPermit2Proxy",
)


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract: its ABI, creation and runtime bytecode, and compiler."""

    contract_name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str  # 0x-prefixed creation code
    deployed_bytecode: str  # 0x-prefixed runtime code, as eth_getCode returns it
    compiler_version: str
    evm_version: str
    optimizer_runs: int


@cache
def load_artifact(name: str) -> Artifact:
    """Load the committed artifact ``artifacts/<name>.json``.

    Raises ``LookupError`` for a name that has no artifact: asking for a
    contract that does not exist is a programmer error.
    """
    if name not in ARTIFACT_NAMES:
        raise LookupError(
            f"no compiled contract named {name!r} (have: {', '.join(ARTIFACT_NAMES)})"
        )
    text = resources.files(__name__).joinpath("artifacts", f"{name}.json").read_text("utf-8")
    raw = json.loads(text)
    compiler = raw["compiler"]
    return Artifact(
        contract_name=raw["contractName"],
        abi=tuple(raw["abi"]),
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        compiler_version=compiler["version"],
        evm_version=compiler["evmVersion"],
        optimizer_runs=int(compiler["optimizer"]["runs"]),
    )

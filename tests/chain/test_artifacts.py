"""The committed contract artifacts match their sources and the Python bindings.

When node and the pinned npm ``solc`` are installed, the artifacts are rebuilt
(``node contracts/build.mjs --check``) and any drift fails the test. Without
them (a user install) the rebuild is skipped with the reason; the remaining
checks read the committed artifacts: every call the bindings encode exists in
the ABI, the deployed contract's type hashes equal the wallet's, and the
batch-settlement escrow's ABI (functions and the Settled event) is exactly the
one the x402 reference package ships.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_utils import keccak
from x402.mechanisms.evm.batch_settlement import constants as x402_channels
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI

from farthing.contracts import ARTIFACT_NAMES, load_artifact
from farthing.paywall.schemes.batch_settlement.contract import (
    ESCROW_EVENT_TOPICS,
    ESCROW_SIGNATURES,
)
from farthing.wallet.chain import Call, MemoryChain
from farthing.wallet.eip712 import TYPE_STRINGS
from farthing.wallet.token import SIGNATURES, deploy_stablecoin
from tests import zygote

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "contracts" / "build.mjs"


def _abi_signatures(abi: tuple[dict[str, Any], ...]) -> set[str]:
    def canonical(param: dict[str, Any]) -> str:
        kind = str(param["type"])
        if kind.startswith("tuple"):
            return (
                "("
                + ",".join(canonical(c) for c in param["components"])
                + ")"
                + kind[len("tuple") :]
            )
        return kind

    return {
        f"{item['name']}({','.join(canonical(p) for p in item['inputs'])})"
        for item in abi
        if item["type"] == "function"
    }


def test_artifacts_match_a_fresh_compile() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so the artifacts cannot be recompiled")
    if not (REPO / "node_modules" / "solc" / "package.json").exists():
        pytest.skip(
            "npm solc is not installed (run `npm ci`), so the artifacts cannot be recompiled"
        )
    result = zygote.run_process(
        [node, str(BUILD_SCRIPT), "--check"],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_every_artifact_loads_with_its_compiler_settings() -> None:
    for name in ARTIFACT_NAMES:
        artifact = load_artifact(name)
        assert artifact.contract_name == name
        assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 2
        assert artifact.deployed_bytecode.startswith("0x")
        assert artifact.evm_version == "prague"
        assert artifact.compiler_version.startswith("0.8.37+")
    with pytest.raises(LookupError):
        load_artifact("Nope")


def test_every_call_the_bindings_encode_is_in_the_abi() -> None:
    available = _abi_signatures(load_artifact("Stablecoin").abi) | _abi_signatures(
        load_artifact("BatchSettler").abi
    )
    missing = {key: sig for key, sig in SIGNATURES.items() if sig not in available}
    assert not missing


def test_the_contract_type_hashes_are_the_wallets() -> None:
    chain = MemoryChain(accounts=1)
    owner = chain.dev_accounts()[0].signer()
    token = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    for constant, type_name in [
        ("TRANSFER_WITH_AUTHORIZATION_TYPEHASH", "TransferWithAuthorization"),
        ("RECEIVE_WITH_AUTHORIZATION_TYPEHASH", "ReceiveWithAuthorization"),
        ("CANCEL_AUTHORIZATION_TYPEHASH", "CancelAuthorization"),
    ]:
        result = chain.call(Call(token.address, keccak(text=f"{constant}()")[:4]))
        (on_chain,) = abi_decode(["bytes32"], result.return_data)
        assert on_chain == keccak(text=TYPE_STRINGS[type_name])
    # The well-known value, as USDC publishes it.
    assert keccak(text=TYPE_STRINGS["TransferWithAuthorization"]).hex() == (
        "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
    )


def _abi_entries(abi: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    """Each function or event by name: its input and output types (and indexing)."""

    def canonical(param: dict[str, Any]) -> str:
        kind = str(param["type"])
        if kind.startswith("tuple"):
            inner = ",".join(canonical(c) for c in param["components"])
            return f"({inner}){kind[len('tuple') :]}"
        return kind

    return {
        f"{item['type']}:{item['name']}": (
            [(canonical(p), bool(p.get("indexed"))) for p in item["inputs"]],
            [canonical(p) for p in item.get("outputs", [])],
        )
        for item in abi
        if item["type"] in ("function", "event")
    }


def test_the_escrow_abi_is_the_x402_reference_abi() -> None:
    ours = _abi_entries(load_artifact("BatchSettlement").abi)
    reference = _abi_entries(BATCH_SETTLEMENT_ABI)
    assert {name: ours.get(name) for name in reference} == reference
    # Every call and event topic our binding uses is in our ABI.
    assert set(ESCROW_SIGNATURES.values()) <= _abi_signatures(load_artifact("BatchSettlement").abi)
    events = {
        keccak(text=f"{item['name']}({','.join(str(p['type']) for p in item['inputs'])})")
        for item in load_artifact("BatchSettlement").abi
        if item["type"] == "event" and all(p["type"] != "tuple" for p in item["inputs"])
    }
    assert {t for n, t in ESCROW_EVENT_TOPICS.items() if not n.startswith("Channel")} <= events


def test_the_escrow_type_hashes_and_limits_are_the_specs() -> None:
    chain = MemoryChain(accounts=1)
    settlement = chain.deploy(
        bytes.fromhex(load_artifact("BatchSettlement").bytecode[2:]),
        sender=chain.dev_accounts()[0].signer(),
    )
    assert settlement.ok and settlement.contract_address is not None

    def read(name: str, kind: str) -> Any:
        result = chain.call(Call(settlement.contract_address, keccak(text=f"{name}()")[:4]))
        assert result.ok, name
        return abi_decode([kind], result.return_data)[0]

    assert read("CHANNEL_CONFIG_TYPEHASH", "bytes32") == x402_channels.CHANNEL_CONFIG_TYPEHASH
    assert read("MIN_WITHDRAW_DELAY", "uint40") == x402_channels.MIN_WITHDRAW_DELAY
    assert read("MAX_WITHDRAW_DELAY", "uint40") == x402_channels.MAX_WITHDRAW_DELAY
    assert read("VOUCHER_TYPEHASH", "bytes32") == keccak(
        text="Voucher(bytes32 channelId,uint128 maxClaimableAmount)"
    )

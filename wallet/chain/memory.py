"""The in-process backend: py-evm through web3's EthereumTesterProvider.

No node to run, about 80 transactions a second, and a chain id that is *not*
31337. It mines one block per transaction and each block's timestamp is at
least its parent's plus one second, so under load its clock runs ahead of the
wall clock.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils.address import to_canonical_address
from eth_utils.exceptions import ValidationError as EthValidationError
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractLogicError

from farthing.invariant import invariant
from farthing.wallet.address import checksum
from farthing.wallet.chain.base import Backend, Chain, funds_refusal
from farthing.wallet.chain.values import (
    ANVIL_DEV_MNEMONIC,
    DEV_HD_PATH,
    DevAccount,
    TxResult,
    anvil_dev_accounts,
)
from farthing.wallet.revert import reason_for_revert, revert_message

__all__ = ["MemoryChain"]


class MemoryChain(Chain):
    """py-evm in this process: the embedded default, no node to run.

    Its genesis funds anvil's ten dev accounts, so addresses match the dev chain.
    """

    backend: ClassVar[Backend] = "memory"
    revert_errors: ClassVar[tuple[type[Exception], ...]] = (ContractLogicError, TransactionFailed)
    # py-evm's estimate_gas searches by re-running the call; a plain eth_call is
    # enough to simulate, and gas is then sent with a fixed generous limit (the
    # unused part is refunded, but the sender must hold enough ETH to cover it
    # up front: about 0.02 ETH). A batch larger than ~150 items needs gas_limit=.
    memory_gas_limit: ClassVar[int] = 8_000_000

    def __init__(self, *, accounts: int = 10) -> None:
        backend = PyEVMBackend.from_mnemonic(
            ANVIL_DEV_MNEMONIC, num_accounts=accounts, hd_path=DEV_HD_PATH
        )
        self._tester = EthereumTester(backend)
        self._accounts = accounts
        super().__init__(Web3(EthereumTesterProvider(self._tester)), receipt_timeout_s=10.0)

    def dev_accounts(self) -> tuple[DevAccount, ...]:
        return anvil_dev_accounts(self._accounts)

    @property
    def is_dev(self) -> bool:
        return True

    def set_code(self, address: str, code: bytes) -> None:
        # py-evm has no RPC for this: write the code into the pending state,
        # then mine so "latest" (what eth_getCode reads) carries it.
        evm_chain = self._tester.backend.chain
        vm = evm_chain.get_vm(evm_chain.header)
        vm.state.set_code(to_canonical_address(address), code)
        vm.state.persist()
        evm_chain.header = evm_chain.header.copy(state_root=vm.state.state_root)
        self._tester.backend.mine_blocks(1)

    def advance_time(self, seconds: int) -> int:
        invariant(seconds > 0, "advance_time needs a positive number of seconds")
        target = self.timestamp() + seconds
        self._tester.time_travel(target)
        self._tester.mine_blocks(1)
        return self.timestamp()

    def _simulate(self, tx: dict[str, Any], gas_limit: int | None) -> tuple[TxResult | None, int]:
        gas = gas_limit or self.memory_gas_limit
        try:
            # With the gas it will be sent with, so py-evm's "can the sender
            # afford it" check matches the real send.
            self.w3.eth.call(cast(Any, {**tx, "gas": gas}))
        except self.revert_errors as exc:
            message = revert_message(exc)
            return TxResult(False, None, reason_for_revert(message), message), 0
        except EthValidationError as exc:
            refusal = funds_refusal(exc)
            if refusal is None:
                raise
            return refusal, 0
        return None, gas

    def _priority_fee(self) -> int:
        return 1_000_000_000

    def _next_nonce(self, address: str) -> int:
        # Every transaction is mined at once, so "latest" is exact here.
        return int(self.w3.eth.get_transaction_count(checksum(address)))

"""One chain interface over two backends: in-process py-evm and any JSON-RPC URL.

``open_chain("memory")`` runs py-evm inside this process (web3's
EthereumTesterProvider): no node, about 80 transactions a second, and a chain
id that is *not* 31337, so callers always read ``chain.chain_id``.
``open_chain("http://127.0.0.1:8545")`` talks to anvil or a real network.

Transactions are signed locally by a ``TxSigner`` and their outcome is a value,
:class:`TxResult`, never an exception: a revert has ``ok=False``, a snake_case
``reason`` (``authorization_expired``, ``insufficient_balance``, …) and the raw
``revert_message``. The two backends report reverts differently (eth-tester
raises ``TransactionFailed``, HTTP raises ``ContractLogicError``, and a
transaction sent with explicit gas is mined with status 0 and raises nothing);
this module hides the difference. Exceptions are left for what a caller cannot
treat as a result: an RPC that does not answer, times out, or answers a
JSON-RPC error object that is the node's fault rather than the call's
(``ChainUnavailableError``, whose message names the URL, and the method and
code when there is one), or a programmer error.

The memory chain mines one block per transaction and each block's timestamp is
at least its parent's plus one second, so under load its clock runs ahead of
the wall clock. Read the chain's time with :meth:`Chain.timestamp`.

``values`` (calls, results, logs, dev accounts), ``base`` (the interface both
backends share), ``memory`` and ``rpc`` (the backends), ``backends``
(:func:`open_chain`).

The names are imported on first use (``farthing.lazy``): importing one
submodule does not load the whole package.
"""

from typing import TYPE_CHECKING

from farthing.lazy import lazy_exports

if TYPE_CHECKING:
    from farthing.wallet.chain.backends import open_chain as open_chain
    from farthing.wallet.chain.base import Backend as Backend
    from farthing.wallet.chain.base import Chain as Chain
    from farthing.wallet.chain.base import address_topic as address_topic
    from farthing.wallet.chain.memory import MemoryChain as MemoryChain
    from farthing.wallet.chain.rpc import RpcChain as RpcChain
    from farthing.wallet.chain.values import ANVIL_DEV_MNEMONIC as ANVIL_DEV_MNEMONIC
    from farthing.wallet.chain.values import TRANSFER_TOPIC as TRANSFER_TOPIC
    from farthing.wallet.chain.values import Call as Call
    from farthing.wallet.chain.values import CallResult as CallResult
    from farthing.wallet.chain.values import DevAccount as DevAccount
    from farthing.wallet.chain.values import LogEntry as LogEntry
    from farthing.wallet.chain.values import TransferEvent as TransferEvent
    from farthing.wallet.chain.values import TxResult as TxResult
    from farthing.wallet.chain.values import anvil_dev_accounts as anvil_dev_accounts

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

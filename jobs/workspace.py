"""The agent's jobs as ``farthing jobs`` opens them: a ``JobService`` over the agent's workspace.

The shared options of ``farthing jobs`` (``--data-dir``, ``--agent-id``,
``--wallet``, ``--network``, ``--rpc-url``, ``--token``, ``--database-url``,
``--passphrase-file``) name the workspace (``farthing.agents.workspace``);
the escrow's operator key is ``--operator-wallet``'s keystore (default: the
agent's own wallet). Without a key the answer is a :class:`JobReader`:
reading jobs needs none. The imports are inside the function, so the CLI
starts quickly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["JobReader", "open_jobs"]


def open_jobs(options: Mapping[str, Any], *, with_wallet: bool = True, reviewer: Any = None) -> Any:
    """The agent's workspace and a JobService over it (the caller closes the workspace)."""
    from farthing.agents.admin_cli import agent_settings
    from farthing.agents.workspace import open_workspace
    from farthing.jobs.operators.escrow import DirectEscrowOperator
    from farthing.jobs.service import JobService
    from farthing.jobs.settings import JobSettings
    from farthing.paywall.schemes.auth_capture.contract import AuthCaptureEscrow
    from farthing.wallet.keystore import read_passphrase, unlock_keystore
    from farthing.wallet.settings import WalletSettings

    settings = agent_settings(options["data_dir"], options["agent_id"], options["wallet"])
    workspace = open_workspace(
        settings,
        network=options["network"],
        rpc_url=options["rpc_url"],
        token=options["token"],
        database_url=options["database_url"],
        passphrase_file=options["passphrase_file"],
        with_wallet=with_wallet,
    )
    chain = workspace.target.chain
    network = workspace.target.network
    contracts = getattr(network, "auth_capture", None)
    escrow = (
        AuthCaptureEscrow(chain, contracts) if contracts is not None else AuthCaptureEscrow(chain)
    )
    payer = workspace.signer
    if payer is None:
        return workspace, JobReader(workspace, escrow)
    operator_key = payer
    if options["operator_wallet"] not in (None, settings.wallet):
        wallet_settings = WalletSettings(data_dir=settings.data_dir.expanduser())
        passphrase = read_passphrase(wallet_settings, passphrase_file=options["passphrase_file"])
        operator_key = unlock_keystore(wallet_settings, options["operator_wallet"], passphrase)
    service = JobService(
        books=workspace.books,
        chain=chain,
        operator=DirectEscrowOperator(escrow, operator_key, workspace.target.asset),
        payer=payer,
        escrow=escrow,
        reviewer=reviewer,
        settings=JobSettings(),
    )
    return workspace, service


class JobReader:
    """Reading jobs needs no key."""

    def __init__(self, workspace: Any, escrow: Any) -> None:
        from farthing.jobs.tables import ensure_tables

        self.books = workspace.books
        self.database = workspace.database
        self.escrow = escrow
        self.asset = workspace.target.asset
        ensure_tables(self.database)

    def get(self, job_id: int) -> Any:
        from farthing.jobs.store import load

        with self.database.read() as session:
            return load(session, job_id)

    def list(self, *, state: str | None = None, limit: int = 100) -> Any:
        from farthing.jobs.store import list_jobs

        with self.database.read() as session:
            return list_jobs(session, agent_id=self.books.agent_id, state=state, limit=limit)

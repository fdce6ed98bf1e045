"""``farthing agent approvals`` and ``farthing agent policy``: what people decide for agents.

Approvals need only the books: ``list`` shows what waits (newest first),
``approve ID`` and ``deny ID`` decide one request, once. Policy needs the
token too (amounts are given in its units): ``show`` prints every limit,
``set`` changes the ones named and keeps the rest. Each list option replaces
that list; ``none`` clears a limit or a list.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from farthing.agents.approvals import ApprovalStatus, decide_approval, list_approvals
from farthing.agents.errors import AgentConfigError
from farthing.agents.policy import SpendPolicy
from farthing.agents.settings import AgentSettings
from farthing.agents.workspace import Workspace, open_database, open_workspace
from farthing.console import emit_json, out_console
from farthing.wallet.money import Asset

__all__ = ["agent_settings", "approvals_app", "open_from_options", "policy_app"]

approvals_app = typer.Typer(
    help="Payments waiting for a person: list, approve, deny.",
    no_args_is_help=True,
    add_completion=False,
)
policy_app = typer.Typer(
    help="The agent's durable spend policy: show, set.", no_args_is_help=True, add_completion=False
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line for scripts.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the books live (default ~/.farthing).")
]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="The books: sqlite:///PATH or postgresql://...")
]
AgentOpt = Annotated[str | None, typer.Option("--agent-id", help="Whose policy (default: agent).")]
WalletOpt = Annotated[
    str | None,
    typer.Option("--wallet", help="Keystore name under <data dir>/keys (default: default)."),
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File whose first line is the keystore passphrase."),
]
# What the paying commands (fetch, call, run, ...) share: their data dir also holds the keys.
PayerDataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Keys, dev-chain record and books (default ~/.farthing)."),
]
PayerAgentOpt = Annotated[
    str | None, typer.Option("--agent-id", help="Whose budget and policy (default: agent).")
]
MaxPriceOpt = Annotated[str, typer.Option("--max-price", help="The most to pay, e.g. 0.02 (USDC).")]
TaskIdOpt = Annotated[str | None, typer.Option("--task-id", help="Charge it to this task.")]
BudgetOpt = Annotated[
    str | None, typer.Option("--budget", help="The task's budget, if the task is new.")
]
_NONE = "none"


def agent_settings(
    data_dir: Path | None, agent_id: str | None = None, wallet: str | None = None
) -> AgentSettings:
    """The agent's settings from the command line's options (``None``: the setting's default)."""
    values: dict[str, Any] = {}
    if data_dir is not None:
        values["data_dir"] = data_dir
    if agent_id is not None:
        values["agent_id"] = agent_id
    if wallet is not None:
        values["wallet"] = wallet
    return AgentSettings(**values)


def open_from_options(
    data_dir: Path | None,
    agent_id: str | None,
    wallet: str | None,
    network: str | None,
    rpc_url: str | None,
    token: str | None,
    database_url: str | None,
    passphrase_file: Path | None = None,
    *,
    with_wallet: bool = True,
) -> Workspace:
    """The agent's workspace from the command line's options (the caller closes it)."""
    return open_workspace(
        agent_settings(data_dir, agent_id, wallet),
        network=network,
        rpc_url=rpc_url,
        token=token,
        database_url=database_url,
        passphrase_file=passphrase_file,
        with_wallet=with_wallet,
    )


# ------------------------------------------------------------------ approvals


@approvals_app.command("list")
def list_command(
    status: Annotated[
        str, typer.Option("--status", help="pending, approved, denied, expired or all.")
    ] = "pending",
    data_dir: DataDirOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approval requests, newest first (pending ones by default)."""
    if status not in ("pending", "approved", "denied", "expired", "all"):
        raise AgentConfigError(
            f"--status must be pending, approved, denied, expired or all, not {status!r}"
        )
    database = open_database(agent_settings(data_dir), database_url)
    try:
        wanted: ApprovalStatus | None = None if status == "all" else status  # type: ignore[assignment]
        rows = list_approvals(database, status=wanted)
    finally:
        database.dispose()
    if as_json:
        emit_json(
            {
                "approvals": [
                    {
                        "id": a.id,
                        "agent_id": a.agent_id,
                        "status": a.status,
                        "amount_atomic": a.amount,
                        "price": a.price(),
                        "pay_to": a.pay_to,
                        "resource": a.resource,
                        "task_id": a.task_id,
                        "purpose": a.purpose,
                        "note": a.note,
                    }
                    for a in rows
                ]
            }
        )
        return
    if not rows:
        out_console.print(
            f"no {status if status != 'all' else ''} approval requests".replace("  ", " ")
        )
        return
    table = Table("id", "status", "agent", "price", "pay to", "resource", "task", "purpose")
    for a in rows:
        table.add_row(
            str(a.id),
            a.status,
            a.agent_id,
            a.price(),
            a.pay_to,
            a.resource,
            a.task_id or "-",
            a.purpose or "-",
        )
    out_console.print(table)


def _decide(
    approval_id: int,
    approve: bool,
    note: str | None,
    data_dir: Path | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    database = open_database(agent_settings(data_dir), database_url)
    try:
        decided = decide_approval(database, approval_id, approve=approve, note=note)
    finally:
        database.dispose()
    if as_json:
        emit_json(
            {
                "id": decided.id,
                "status": decided.status,
                "price": decided.price(),
                "pay_to": decided.pay_to,
            }
        )
        return
    out_console.print(
        f"{decided.status} request {decided.id}: {decided.price()} to {decided.pay_to} for {decided.resource}"
    )


@approvals_app.command("approve")
def approve_command(
    approval_id: Annotated[int, typer.Argument(help="The request's id (see `list`).")],
    note: Annotated[str | None, typer.Option("--note", help="Why, kept with the decision.")] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let the waiting agent make exactly this payment."""
    _decide(approval_id, True, note, data_dir, database_url, as_json)


@approvals_app.command("deny")
def deny_command(
    approval_id: Annotated[int, typer.Argument(help="The request's id (see `list`).")],
    note: Annotated[str | None, typer.Option("--note", help="Why; the agent reports it.")] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refuse the payment; the agent reports it and pays nothing."""
    _decide(approval_id, False, note, data_dir, database_url, as_json)


# ------------------------------------------------------------------ policy

NetworkOpt = Annotated[
    str | None, typer.Option("--network", help="local, base-sepolia or base (default: local).")
]
RpcOpt = Annotated[
    str | None, typer.Option("--rpc-url", help="JSON-RPC URL (overrides the network's default).")
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Token address (overrides the network's stablecoin).")
]
AmountOpt = Annotated[str | None, typer.Option(help="An amount in the token, e.g. 0.5, or none.")]
ListOpt = Annotated[
    list[str] | None, typer.Option(help="Repeatable; replaces the list; none clears it.")
]


def policy_json(policy: SpendPolicy) -> dict[str, Any]:
    def listed(values: frozenset[str] | None) -> list[str] | None:
        return None if values is None else sorted(values)

    return {
        "payment_cap_atomic": policy.payment_cap,
        "daily_limit_atomic": policy.daily_limit,
        "payee_daily_cap_atomic": policy.payee_daily_cap,
        "total_budget_atomic": policy.total_budget,
        "approval_above_atomic": policy.approval_above,
        "approval_timeout_s": policy.approval_timeout_s,
        "channel_withdraw_delay_max_s": policy.channel_withdraw_delay_max_s,
        "asset_allowlist": listed(policy.asset_allowlist),
        "hosts_allowed": listed(policy.hosts_allowed),
        "hosts_denied": listed(policy.hosts_denied),
        "payees_allowed": listed(policy.payees_allowed),
        "payees_denied": listed(policy.payees_denied),
    }


def _show(policy: SpendPolicy, asset: Asset) -> None:
    def amount(value: int | None) -> str:
        return "no limit" if value is None else asset.format(value)

    def listed(values: frozenset[str] | None, empty: str) -> str:
        return empty if not values else ", ".join(sorted(values))

    table = Table("limit", "value", title="Spend policy")
    table.add_row("per-payment cap", amount(policy.payment_cap))
    table.add_row("daily limit", amount(policy.daily_limit))
    table.add_row("per-payee daily cap", amount(policy.payee_daily_cap))
    table.add_row("total budget", amount(policy.total_budget))
    table.add_row(
        "approval above",
        "never asks" if policy.approval_above is None else asset.format(policy.approval_above),
    )
    table.add_row("approval timeout", f"{policy.approval_timeout_s} s")
    table.add_row("channel withdraw delay at most", f"{policy.channel_withdraw_delay_max_s} s")
    table.add_row(
        "assets allowed",
        "any" if policy.asset_allowlist is None else listed(policy.asset_allowlist, "none"),
    )
    table.add_row(
        "hosts allowed",
        "any" if policy.hosts_allowed is None else listed(policy.hosts_allowed, "none"),
    )
    table.add_row("hosts denied", listed(policy.hosts_denied, "none"))
    table.add_row(
        "payees allowed",
        "any" if policy.payees_allowed is None else listed(policy.payees_allowed, "none"),
    )
    table.add_row("payees denied", listed(policy.payees_denied, "none"))
    out_console.print(table)


@policy_app.command("show")
def show_command(
    agent_id: AgentOpt = None,
    data_dir: DataDirOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every limit of the agent's spend policy."""
    workspace = open_from_options(
        data_dir, agent_id, None, network, rpc_url, token, database_url, with_wallet=False
    )
    try:
        policy = workspace.books.policy()
    finally:
        workspace.close()
    if as_json:
        emit_json({"agent_id": workspace.settings.agent_id, **policy_json(policy)})
        return
    _show(policy, workspace.target.asset)


@policy_app.command("set")
def set_command(
    payment_cap: AmountOpt = None,
    daily_limit: AmountOpt = None,
    payee_daily_cap: AmountOpt = None,
    total_budget: AmountOpt = None,
    approval_above: AmountOpt = None,
    approval_timeout_s: Annotated[
        int | None, typer.Option(help="How long an agent waits for a person.")
    ] = None,
    channel_withdraw_delay_max_s: Annotated[
        int | None,
        typer.Option(help="The longest withdraw delay a channel deposit may be locked for."),
    ] = None,
    allow_host: ListOpt = None,
    deny_host: ListOpt = None,
    allow_payee: ListOpt = None,
    deny_payee: ListOpt = None,
    allow_asset: ListOpt = None,
    agent_id: AgentOpt = None,
    data_dir: DataDirOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the limits named; the others stay as they are."""
    workspace = open_from_options(
        data_dir, agent_id, None, network, rpc_url, token, database_url, with_wallet=False
    )
    try:
        asset = workspace.target.asset
        policy = workspace.books.policy()
        changes: dict[str, Any] = {}
        for name, text in (
            ("payment_cap", payment_cap),
            ("daily_limit", daily_limit),
            ("payee_daily_cap", payee_daily_cap),
            ("total_budget", total_budget),
            ("approval_above", approval_above),
        ):
            if text is not None:
                changes[name] = None if text.strip().lower() == _NONE else asset.parse(text)
        if approval_timeout_s is not None:
            changes["approval_timeout_s"] = approval_timeout_s
        if channel_withdraw_delay_max_s is not None:
            changes["channel_withdraw_delay_max_s"] = channel_withdraw_delay_max_s
        for name, values, optional in (
            ("hosts_allowed", allow_host, True),
            ("hosts_denied", deny_host, False),
            ("payees_allowed", allow_payee, True),
            ("payees_denied", deny_payee, False),
            ("asset_allowlist", allow_asset, True),
        ):
            if values is None:
                continue
            cleared = [v for v in values if v.strip().lower() != _NONE]
            if not cleared:
                changes[name] = None if optional else frozenset()
            else:
                changes[name] = frozenset(cleared)
        updated = replace(policy, **changes)
        workspace.books.set_policy(updated)
    finally:
        workspace.close()
    if as_json:
        emit_json({"agent_id": workspace.settings.agent_id, **policy_json(updated)})
        return
    _show(updated, asset)

"""``farthing agent call MCP_URL TOOL --args JSON --max-price X``: call one MCP tool, paying within the policy.

Registered on ``farthing agent`` by ``farthing.agents.cli``. It keeps the
other agent commands' conventions: the workspace options (``--data-dir``,
``--wallet``, ``--passphrase-file``, ...), ``--json`` for one line on stdout,
a usage error as one line with exit 2, any other refusal as one line with
exit 1. Without ``--task-id`` the call is a task of its own whose budget is
``--max-price``, as ``farthing agent fetch`` does.

Only light imports at module level: ``farthing agent --help`` must not load
the MCP client.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from farthing.agents.admin_cli import (
    BudgetOpt,
    DatabaseOpt,
    JsonOpt,
    MaxPriceOpt,
    NetworkOpt,
    PassFileOpt,
    PayerAgentOpt,
    PayerDataDirOpt,
    RpcOpt,
    TaskIdOpt,
    TokenOpt,
    WalletOpt,
    open_from_options,
)
from farthing.console import emit_json, fail, out_console
from farthing.ledger.ids import format_transfer_id

if TYPE_CHECKING:
    from farthing.agents.mcp.session import ToolCall

__all__ = ["call"]

_ARGS_CHARS_MAX: Final = 16 * 1024
_TEXT_CHARS_MAX: Final = 20_000


def _arguments(text: str) -> dict[str, Any]:
    from farthing.web import JsonBodyError, loads_bounded

    if len(text) > _ARGS_CHARS_MAX:
        fail(f"--args is over {_ARGS_CHARS_MAX} characters", exit_code=2)
    try:
        value = loads_bounded(text.encode("utf-8"), depth_max=16, bytes_max=_ARGS_CHARS_MAX)
    except (JsonBodyError, ValueError, UnicodeError):
        fail('--args must be a JSON object, e.g. \'{"city": "Lisbon"}\'', exit_code=2)
    if not isinstance(value, dict):
        fail('--args must be a JSON object, e.g. \'{"city": "Lisbon"}\'', exit_code=2)
    return value


def call(
    mcp_url: Annotated[
        str, typer.Argument(help="The MCP server (streamable HTTP), e.g. http://host/mcp.")
    ],
    tool: Annotated[str, typer.Argument(help="The tool to call.")],
    args: Annotated[
        str, typer.Option("--args", help="The tool's arguments as a JSON object.")
    ] = "{}",
    max_price: MaxPriceOpt = "0",
    purpose: Annotated[
        str, typer.Option("--purpose", help="Why, recorded with the payment.")
    ] = "called from the command line",
    task_id: TaskIdOpt = None,
    budget: BudgetOpt = None,
    data_dir: PayerDataDirOpt = None,
    agent_id: PayerAgentOpt = None,
    wallet: WalletOpt = None,
    passphrase_file: PassFileOpt = None,
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    token: TokenOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Call one MCP tool, paying within the policy and --max-price; print its result."""
    from farthing.agents.cli import tell_approval
    from farthing.agents.mcp.session import PayingSession, check_mcp_url, open_mcp
    from farthing.agents.mcp.tools import describe_call
    from farthing.agents.tools import Task
    from farthing.wallet.errors import AmountError

    problem = check_mcp_url(mcp_url)
    if problem is not None:
        fail(f"{mcp_url}: {problem}", exit_code=2)
    if not tool or len(tool) > 128:
        fail("TOOL is a tool's name, 1 to 128 characters", exit_code=2)
    arguments = _arguments(args)
    workspace = open_from_options(
        data_dir, agent_id, wallet, network, rpc_url, token, database_url, passphrase_file
    )
    try:
        asset = workspace.target.asset
        try:
            cap = asset.parse(max_price)
            task_budget = cap if budget is None else asset.parse(budget)
        except AmountError as exc:
            fail(f"not an amount of {asset.symbol}: {exc}", exit_code=2)
        the_task = Task(task_id or f"call-{uuid.uuid4().hex[:8]}", purpose, cap)
        if task_id is None or budget is not None:
            workspace.books.start_task(the_task.task_id, task_budget, purpose)
        payer = workspace.payer
        payer.on_approval = tell_approval

        async def go() -> ToolCall:
            async with open_mcp(mcp_url, payer.settings) as session:
                paying = PayingSession(session, payer, mcp_url)
                return await paying.call_tool(
                    tool,
                    arguments,
                    task_id=the_task.task_id,
                    purpose=purpose[:200],
                    max_price=cap,
                )

        try:
            result = asyncio.run(go())
        except Exception as exc:  # noqa: BLE001 - an unreachable server is one line, not a traceback
            fail(f"could not reach the MCP server at {mcp_url}: {_one_line(exc)}")
    finally:
        workspace.close()
    outcome = result.outcome
    if as_json:
        emit_json(
            {
                "server": mcp_url,
                "tool": tool,
                "outcome": outcome.status if outcome else None,
                "reason": (outcome.reason if outcome else None) or result.error,
                "amount_atomic": outcome.amount if outcome else None,
                "transaction": outcome.tx_hash if outcome else None,
                "payment_id": format_transfer_id(outcome.payment_id)
                if outcome and outcome.payment_id
                else None,
                "is_error": result.result.isError if result.result is not None else None,
                "text": result.text(_TEXT_CHARS_MAX) if result.delivered else None,
            }
        )
        if not result.delivered:
            raise typer.Exit(1)
        return
    if not result.delivered:
        fail(describe_call(result, chars_max=300).replace("\n", " "))
    if outcome is not None and outcome.status == "paid":
        out_console.print(f"[dim]{outcome.describe()}[/dim]")
    out_console.print(result.text(_TEXT_CHARS_MAX), markup=False, highlight=False)


def _one_line(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__

"""The ``farthing`` console script.

Each package contributes a Typer app; this module gathers them under one
command and imports each only when it runs, so ``farthing --help`` stays fast
even though the chain and web stacks are slow to import.

Every ``FarthingError`` becomes one line on stderr and a non-zero exit code:
users see what went wrong, never a traceback. Set ``FARTHING_DEBUG=1`` to see
the traceback of an unexpected error.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from farthing import __version__
from farthing.console import CliError
from farthing.errors import FarthingError

__all__ = ["app", "entrypoint", "main"]


@dataclass(frozen=True)
class _SubCommand:
    module: str
    attribute: str
    summary: str


# The order here is the order `farthing --help` lists them in.
_SUBCOMMANDS: dict[str, _SubCommand] = {
    "demo": _SubCommand("farthing.demo", "app", "Run the end-to-end demo on embedded defaults."),
    "chain": _SubCommand("farthing.devchain.cli", "app", "Run and inspect local chains."),
    "wallet": _SubCommand(
        "farthing.wallet.cli", "app", "Create keys, check balances, fund and send."
    ),
    "paywall": _SubCommand(
        "farthing.paywall.cli", "app", "Serve a paywalled reverse proxy (x402 v2)."
    ),
    "facilitator": _SubCommand(
        "farthing.paywall.facilitator.cli", "app", "Run an x402 v2 facilitator on a chain."
    ),
    "agent": _SubCommand(
        "farthing.agents.cli", "app", "Run paying agents; approvals and the spend policy."
    ),
    "ledger": _SubCommand(
        "farthing.ledger.cli.commands",
        "app",
        "Books: budgets, reports, export and audit verification.",
    ),
    "inference": _SubCommand(
        "farthing.inference.cli", "app", "Serve a model with vLLM and sell it per call (x402)."
    ),
    "dashboard": _SubCommand(
        "farthing.dashboard.cli", "app", "Watch spend, approvals and audit in a browser."
    ),
    "jobs": _SubCommand(
        "farthing.jobs.cli",
        "app",
        "Hire workers and pay on accepted delivery (auth-capture escrow).",
    ),
}


class _LazyGroup(TyperGroup):
    """A group whose sub-commands are imported on first use.

    While the root help is rendered, sub-commands are stand-ins that carry only
    their summary, so listing them imports nothing.
    """

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(_SUBCOMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        spec = _SUBCOMMANDS.get(cmd_name)
        if spec is None:
            return None
        if self._listing:
            return TyperCommand(name=cmd_name, help=spec.summary, short_help=spec.summary)
        target = getattr(importlib.import_module(spec.module), spec.attribute)
        command = typer.main.get_command(target)
        command.name = cmd_name
        _tidy_flags(command)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _tidy_flags(command: Any) -> None:
    """Show no value type (typer's ``<bool>``) after options that take no value.

    The help option is made per context, so its maker is wrapped as well.
    """
    for param in getattr(command, "params", ()):
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
    make_help = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _tidy_flags(sub)


def _usage_line(exc: Any) -> str:
    """A usage error as one line: what was wrong, and where to read more."""
    message = exc.format_message().strip().replace("\n", " ")
    message = message[:1].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "farthing"
    return f"{where}: {message} (see '{where} --help')"


app = typer.Typer(
    cls=_LazyGroup,
    name="farthing",
    help=(
        "Farthing: agent micropayments in stablecoins.\n\n"
        "Paywall content and APIs with x402 v2, let agents pay under a durable "
        "spend policy, and keep double-entry books of every payment."
    ),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        print(f"farthing {__version__}")
        raise Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Farthing: agent micropayments in stablecoins."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="farthing", standalone_mode=False)
    except CliError as exc:
        _print_error(str(exc))
        return exc.exit_code
    except FarthingError as exc:
        _print_error(str(exc))
        return 1
    except Exit as exc:
        return exc.exit_code
    except (Abort, KeyboardInterrupt):
        _print_error("interrupted")
        return 130
    except TyperException as exc:  # usage errors: one line, exit 2
        _print_error(_usage_line(exc))
        return exc.exit_code
    except Exception as exc:  # a bug: say so in one line unless debugging
        if os.environ.get("FARTHING_DEBUG"):
            raise
        _print_error(
            f"internal error ({type(exc).__name__}): {exc}. "
            "Set FARTHING_DEBUG=1 for a traceback and please report it."
        )
        return 70
    return result if isinstance(result, int) else 0


def _print_error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def entrypoint() -> None:
    sys.exit(main())

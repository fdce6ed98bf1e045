"""The ``farthing`` console script.

Each package contributes a Typer app; this module gathers them under one
command and loads each one only when it is used, so ``farthing --help`` stays
fast even though the chain and web stacks are heavy to import.

Every ``FarthingError`` becomes one line on stderr and a non-zero exit code:
users see what went wrong, never a traceback. Set ``FARTHING_DEBUG=1`` to see
the traceback of an unexpected error.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

import click
import typer.main

from farthing import __version__
from farthing.console import CliError
from farthing.errors import FarthingError

__all__ = ["main"]


@dataclass(frozen=True)
class _SubCommand:
    module: str
    attribute: str
    summary: str


# Order is the order `farthing --help` lists them in.
_SUBCOMMANDS: dict[str, _SubCommand] = {
    "demo": _SubCommand("farthing.demo", "demo", "Run the end-to-end demo on embedded defaults."),
    "chain": _SubCommand("farthing.wallet.chain_cli", "app", "Run and inspect local chains."),
    "wallet": _SubCommand("farthing.wallet.cli", "app", "Create keys, check balances, fund and send."),
}


class _LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _SUBCOMMANDS.get(cmd_name)
        if spec is None:
            return None
        target = getattr(importlib.import_module(spec.module), spec.attribute)
        if isinstance(target, click.Command):
            command = target
        elif isinstance(target, typer.Typer):
            command = typer.main.get_command(target)
        else:  # a plain function decorated for typer
            app = typer.Typer(add_completion=False)
            app.command(name=cmd_name, help=spec.summary)(target)
            command = typer.main.get_command(app)
        command.name = cmd_name
        if not command.help:
            command.help = spec.summary
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from the table so listing commands imports nothing.
        rows = [(name, spec.summary) for name, spec in _SUBCOMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="farthing")
def _root() -> None:
    """Farthing: agent micropayments in stablecoins.

    Paywall content and APIs with x402 v2, let LangChain agents pay under a
    durable spend policy, and keep double-entry books of every payment.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = _root.main(args=args, prog_name="farthing", standalone_mode=False)
    except CliError as exc:
        _print_error(str(exc))
        return exc.exit_code
    except FarthingError as exc:
        _print_error(str(exc))
        return 1
    except click.exceptions.Abort:
        _print_error("aborted")
        return 130
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
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


if __name__ == "__main__":
    entrypoint()

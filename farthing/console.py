"""Small helpers every sub-command uses to talk to the terminal.

Human output goes through rich; machine output (``--json``) is exactly one
compact JSON line on stdout. Errors are one line on stderr, raised as
``CliError`` and rendered by ``farthing.cli.main``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Final, NoReturn

from rich.console import Console

from farthing.errors import FarthingError

__all__ = ["CliError", "emit_json", "err_console", "fail", "out_console"]

# Piped to a file or another program, rich would lay tables out in 80
# columns and cut addresses, ids and URLs with an ellipsis. An identifier cut
# short is worse than a long line, so off a terminal the width is unbounded
# (unless COLUMNS says otherwise) and every table prints whole.
_PIPED_WIDTH: Final = 100_000


def _console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPED_WIDTH
    return console


out_console = _console()
err_console = _console(stderr=True)


class CliError(FarthingError):
    """A command could not do what was asked; the message says why."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, *, exit_code: int = 1) -> NoReturn:
    """Stop the command with a one-line error and a non-zero exit code."""
    raise CliError(message, exit_code=exit_code)


def emit_json(payload: Any) -> None:
    """Print ``payload`` as one compact JSON line (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(payload, separators=(",", ":"), sort_keys=False) + "\n")
    sys.stdout.flush()

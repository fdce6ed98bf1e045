"""Every `farthing` command keeps one convention: found by walking the whole command tree.

The tree is read from the real console script's groups (every sub-command
imported), so a command added later is held to the same rules without being
named here: `--data-dir` wherever data is read, `--json` everywhere, no value
type shown after flags, and a usage error that is one line on stderr with
exit 2, run as a user types it.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from farthing.cli import _SUBCOMMANDS, _tidy_flags, main
from tests import zygote


def _leaves(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    subs = getattr(command, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path, command


def _tree() -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, spec in _SUBCOMMANDS.items():
        command = typer.main.get_command(
            getattr(importlib.import_module(spec.module), spec.attribute)
        )
        _tidy_flags(command)
        found.extend(_leaves(command, (name,)))
    return found


TREE = _tree()


def _options(command: Any) -> set[str]:
    return {o for p in command.params if not getattr(p, "hidden", False) for o in p.opts}


def test_the_tree_is_walked() -> None:
    names = {" ".join(path) for path, _ in TREE}
    assert {"demo", "chain dev", "ledger report", "agent policy set", "jobs serve"} <= names


@pytest.mark.parametrize("path", [p for p, _ in TREE], ids=" ".join)
def test_help_shows_no_value_type_after_a_flag(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path, "--help"]) == 0
    shown = capsys.readouterr().out
    assert "Usage:" in shown
    assert "<bool>" not in shown


def test_every_command_that_reads_data_takes_data_dir() -> None:
    missing = [
        " ".join(path)
        for path, command in TREE
        if ({"--database-url", "--state-dir", "--config"} & _options(command))
        and "--data-dir" not in _options(command)
    ]
    assert missing == []


def test_every_command_takes_json() -> None:
    missing = [" ".join(path) for path, command in TREE if "--json" not in _options(command)]
    assert missing == []


@pytest.mark.parametrize(
    "argv",
    [
        ["ledger", "export", "--bogus"],
        ["ledger", "reprt"],
        ["chain", "dev", "--port", "x"],
        ["wallet", "send"],
    ],
    ids=" ".join,
)
def test_a_usage_error_is_one_line_on_stderr_and_exit_2(argv: list[str], tmp_path: Any) -> None:
    done = zygote.run_process(
        [sys.executable, "-m", "farthing", *argv],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "FARTHING_DATA_DIR": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: farthing ")
    assert "--help" in lines[0]

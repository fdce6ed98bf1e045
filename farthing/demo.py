"""``farthing demo``: the end-to-end run on embedded defaults.

The full demo (an agent buying articles from a paywalled blog) arrives with the
agents issue. Until then this command shows what exists: it deploys the
stablecoin on the in-process chain, funds a fresh wallet, settles one signed
EIP-3009 authorization and prints the balances.
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False)


@app.command()
def demo() -> None:
    """Run the end-to-end demo on embedded defaults."""

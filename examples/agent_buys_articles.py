"""An agent that buys articles from the paywalled blog example, on the local dev chain.

Three terminals::

    farthing chain dev                                   # anvil with the stablecoin
    python examples/paywall_blog.py                      # the blog on http://127.0.0.1:8000
    export FARTHING_WALLET_PASSPHRASE='a long passphrase'
    farthing wallet new && farthing wallet fund 1        # the agent's wallet, 1 test USDC
    python examples/agent_buys_articles.py [--llm-url http://127.0.0.1:8001/v1 --model tiny]

The agent prices both posts, buys what its rule brain (or the model) finds
relevant within a 0.05 USDC budget, and prints its purchases, what it skipped
and why, and the reconciliation of its books with the chain. The same run is
``farthing agent run --task ... --budget 0.05 --url ...``; this file shows the
Python API behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from rich.console import Console

from farthing.agents import (
    AgentRun,
    AgentSettings,
    AgentToolkit,
    RuleBrain,
    RunReport,
    Task,
    open_workspace,
)
from farthing.agents.brain import Brain, LlmBrain
from farthing.agents.integrity import check_books
from farthing.agents.render import render_report

BLOG = "http://127.0.0.1:8000"
TASK = "When did the English farthing stop being legal tender, and what was it made of?"


async def run(brain: Brain, toolkit: AgentToolkit) -> RunReport:
    try:
        starts = [f"{BLOG}/posts/farthing", f"{BLOG}/posts/cny/farthing"]
        return await AgentRun(toolkit, brain, start_urls=starts, progress=print).run()
    finally:
        await brain.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="An agent buying from examples/paywall_blog.py")
    parser.add_argument("--llm-url")
    parser.add_argument("--model")
    args = parser.parse_args()
    workspace = open_workspace(AgentSettings(agent_id="example-agent"))
    try:
        asset = workspace.target.asset
        task = Task(f"example-{uuid.uuid4().hex[:8]}", TASK, asset.parse("0.05"))
        workspace.books.start_task(task.task_id, task.budget, task.text)
        brain: Brain = RuleBrain()
        if args.llm_url and args.model:
            from farthing.inference import InferenceSettings, chat_model

            chat = chat_model(args.llm_url, model=args.model, settings=InferenceSettings())
            brain = LlmBrain(chat, model_name=args.model)

        async def go() -> RunReport:
            async with AgentToolkit(workspace.payer, task) as toolkit:
                return await run(brain, toolkit)

        report = asyncio.run(go())
        console = Console()
        render_report(console, report, asset)
        checked = check_books(workspace.books, workspace.target.chain)
        console.print(
            f"books balanced: {checked.balanced}; reconciliation breaks: {checked.breaks}"
        )
    finally:
        workspace.close()


if __name__ == "__main__":
    main()

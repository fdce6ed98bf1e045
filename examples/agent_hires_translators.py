"""An agent hires three translator agents, holds each one's pay in escrow, and pays on accepted delivery.

    python examples/agent_hires_translators.py                    # memory chain, scripted workers
    python examples/agent_hires_translators.py --json             # the same, one JSON summary
    python examples/agent_hires_translators.py --rpc-url http://127.0.0.1:8545      # on anvil
    python examples/agent_hires_translators.py --model-url http://127.0.0.1:8000/v1 --approve

The hiring agent splits a short text into three translation jobs (Chinese,
Hindi, Japanese), each priced in its worker's currency (40 CNY, 500 INR,
800 JPY) and converted to USDC at a stored rate. Each worker agent accepts
its job, which places the hold in escrow (x402 ``auth-capture``: the agent's
payer signs once, the facilitator verifies and authorizes), translates, and
delivers. The agent reviews each delivery against the job's acceptance
criteria, its spend policy decides, and the facilitator captures (or
captures part and voids the rest, or voids) on the agent's signed consent.

With ``--model-url`` the workers translate with that vLLM model and the
agent reviews with it (structured output); without it, scripted stand-in
workers deliver prepared translations and the scripted reviewer checks each
criterion by its words. A reject (and a capture above the policy's
threshold) waits for a person: ``--approve`` plays that person and says yes.

Everything runs in this process: the chain (in-process by default, no
setup), the facilitator, the agent's books (SQLite in a temporary folder) and
the workers. At the end it prints the agent's books, what each worker
received on chain, the jobs, and the reconciliation (escrow events against
the job rows and the books); the exit code is 1 if any break remains.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from farthing.agents.approvals import decide_approval
from farthing.agents.books import AgentBooks
from farthing.jobs import (
    DirectEscrowOperator,
    JobService,
    JobView,
    LlmReviewer,
    Reviewer,
    ScriptedReviewer,
    reconcile_jobs,
)
from farthing.jobs.operators.escrow import EscrowOperator
from farthing.jobs.operators.facilitator import FacilitatorEscrowOperator
from farthing.ledger import LedgerDatabase, LedgerSettings, lookup_accounts, upgrade_database
from farthing.paywall.schemes.auth_capture.contract import (
    AuthCaptureEscrow,
    place_auth_capture_contracts,
)
from farthing.paywall.schemes.auth_capture.facilitator import AuthCaptureFacilitator
from farthing.wallet import LocalSigner, MemoryChain, Stablecoin, deploy_stablecoin
from farthing.wallet.chain import Chain, RpcChain

TEXT = (
    "Farthing pays for work in USDC. The money is held in escrow until the work is "
    "accepted. Then the worker is paid automatically."
)
CRITERIA = "complete translation\nnames kept: Farthing, USDC"
FUNDS = "25"  # USDC minted to the hiring agent's wallet: its whole budget
DEADLINE_S = 3_600


@dataclass(frozen=True)
class Language:
    name: str
    price: str  # in the worker's currency
    rate: str  # USDC per one unit of that currency (the stored rate)
    prepared: str  # the scripted worker's translation


LANGUAGES = (
    Language(
        "Chinese", "40 CNY", "0.1385",
        "Farthing 用 USDC 为工作付款。在工作被验收之前，资金由托管账户保管。之后工人会自动收到报酬。",
    ),
    Language(
        "Hindi", "500 INR", "0.0119",
        "Farthing काम के लिए USDC में भुगतान करता है। काम स्वीकार होने तक पैसा एस्क्रो में रहता है। "
        "फिर कार्यकर्ता को अपने आप भुगतान हो जाता है।",
    ),
    Language(
        "Japanese", "800 JPY", "0.0067",
        "Farthing は仕事の代金を USDC で支払います。仕事が承認されるまで、お金はエスクローに預けられます。"
        "その後、作業者に自動的に支払われます。",
    ),
)  # fmt: skip


class Translator(Protocol):
    description: str

    def translate(self, text: str, language: Language) -> str: ...


class ScriptedTranslator:
    """A stand-in worker agent: prepared translations, with its own checklist line."""

    description = "scripted stand-in workers (prepared translations)"

    def translate(self, text: str, language: Language) -> str:
        return f"{language.prepared}\n(complete translation; names kept: Farthing, USDC)"


class LlmTranslator:
    """A worker agent whose translation comes from the local vLLM model."""

    def __init__(self, url: str, model: str, max_tokens: int) -> None:
        from farthing.inference import InferenceSettings, chat_model

        settings = InferenceSettings(
            max_tokens=max_tokens, request_timeout_s=180.0, retry_count_max=0
        )
        self.chat = chat_model(url, model=model, settings=settings)
        self.description = f"worker agents on {model} at {url}"

    def translate(self, text: str, language: Language) -> str:
        from langchain_core.messages import HumanMessage, SystemMessage

        answer = self.chat.invoke(
            [
                SystemMessage(f"Translate the user's text into {language.name}. Keep the names "
                              "Farthing and USDC as they are. Answer with the translation only."),
                HumanMessage(text),
            ]
        )  # fmt: skip
        content = answer.content if isinstance(answer.content, str) else str(answer.content)
        return content.strip() or "(the model returned nothing)"

    def close(self) -> None:
        from farthing.inference.chat import close_chat_model

        close_chat_model(self.chat)


def first_model(url: str) -> str:
    import httpx

    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        response = client.get(url.rstrip("/") + "/models")
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])


def open_chain(rpc_url: str | None) -> Chain:
    return RpcChain(rpc_url, receipt_timeout_s=120.0) if rpc_url else MemoryChain()


def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    chain = open_chain(args.rpc_url)
    accounts = chain.dev_accounts()
    owner, operator_key = accounts[0].signer(), accounts[1].signer()
    place_auth_capture_contracts(chain)
    usdc = deploy_stablecoin(chain, sender=owner, name="USDC", version="2")
    token = Stablecoin(chain, usdc)
    payer = LocalSigner.generate()  # the hiring agent's wallet: it only signs
    authorizer = LocalSigner.generate()  # the agent's consent key for capture/void/refund
    workers = [LocalSigner.generate().address for _ in LANGUAGES]
    start = chain.block_number()
    token.configure_minter(owner.address, sender=owner)
    token.mint(payer.address, usdc.parse(FUNDS), sender=owner)

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="farthing-translators-"))
    database = LedgerDatabase(LedgerSettings(database_url=f"sqlite:///{data_dir / 'agent.sqlite'}"))
    upgrade_database(database)
    books = AgentBooks(database, agent_id="translation-hirer", asset=usdc).ensure()
    # Stated, not left to the newcomer's default (a person approves any payment
    # above 0.10 USDC): this agent pays a translator up to 10 USDC on its own.
    books.set_policy(replace(books.policy(), approval_above=usdc.parse("10")))
    say("spend policy: a person approves any capture above 10 USDC, and every reject")
    books.sync_deposits(chain, payer.address, from_block=start)
    say(f"chain {chain.network}; the agent's books in {data_dir}")
    say(f"hiring agent {payer.address} holds {usdc.format(token.balance_of(payer.address))}")

    escrow = AuthCaptureEscrow(chain)
    operator: EscrowOperator
    if args.direct:
        operator = DirectEscrowOperator(escrow, operator_key, usdc)
        route = f"direct: the operator {operator_key.address} calls the escrow"
    else:
        facilitator = AuthCaptureFacilitator(chain, operator_key, refund_receivers=workers)
        operator = FacilitatorEscrowOperator(
            facilitator, authorizer=authorizer, escrow=escrow, asset=usdc, database=database
        )
        route = f"x402 auth-capture facilitator (operator {operator_key.address})"
    say(f"escrow through the {route}")

    translator: Translator
    reviewer: Reviewer
    if args.model_url:
        model = args.model or first_model(args.model_url)
        translator = LlmTranslator(args.model_url, model, args.max_tokens)
        from farthing.inference import InferenceSettings, chat_model

        review_settings = InferenceSettings(
            max_tokens=args.review_max_tokens, request_timeout_s=180.0, retry_count_max=0
        )
        reviewer = LlmReviewer(chat_model(args.model_url, model=model, settings=review_settings))
    else:
        translator, reviewer = ScriptedTranslator(), ScriptedReviewer()
    say(f"workers: {translator.description}; reviewer: {reviewer.description}")
    service = JobService(
        books=books, chain=chain, operator=operator, payer=payer, escrow=escrow, reviewer=reviewer
    )

    rows: list[dict[str, Any]] = []
    try:
        for language, worker in zip(LANGUAGES, workers, strict=True):
            posted = service.post(
                title=f"Translate into {language.name}",
                specification=f"Translate into {language.name}:\n{TEXT}",
                criteria=CRITERIA,
                price=language.price,
                rate=language.rate,
                deadline=chain.timestamp() + DEADLINE_S,
            )
            if not posted.ok or posted.job is None:
                raise SystemExit(f"error: {posted.reason}: {posted.message}")
            job = posted.job
            say(f"job {job.id}: {language.name} for {language.price} at {language.rate} "
                f"= {usdc.format(job.amount)}")  # fmt: skip
            step = service.accept(job.id, worker)
            say(f"  {worker} accepts: hold {step.tx_hash}" if step.ok
                else f"  accept refused: {step.reason}")  # fmt: skip
            if step.ok:
                delivery = translator.translate(TEXT, language)
                step = service.deliver(job.id, worker, delivery)
                say(f"  delivered: {delivery.splitlines()[0][:70]}")
            if step.ok:
                step = service.review(job.id)
                if step.reason == "awaiting_approval" and args.approve and step.approval_id:
                    decide_approval(database, step.approval_id, approve=True, note="example")
                    say(f"  approval {step.approval_id}: approved (--approve)")
                    step = service.review(job.id)
            job = service.get(job.id)
            verdict = (job.review or {}).get("verdict", {})
            say(f"  review: {verdict.get('decision')} -> {job.state}, captured "
                f"{usdc.format(job.captured)}" + (f" ({step.message})" if step.reason else ""))  # fmt: skip
            rows.append(job_row(job, language, verdict))
    finally:
        for part in (translator, reviewer, operator):
            close = getattr(part, "close", None)
            if close is not None:
                close()

    breaks = reconcile_jobs(database, escrow, agent_id=books.agent_id)
    status = books.status()
    people = []
    with database.read() as session:
        for language, worker in zip(LANGUAGES, workers, strict=True):
            (payee,) = lookup_accounts(session=session, ids=[books.payee_account_id(worker)])
            people.append({
                "language": language.name, "address": worker,
                "received": str(token.balance_of(worker)),
                "booked": str(payee.credits_posted - payee.debits_posted),
            })  # fmt: skip
    summary = {
        "network": chain.network,
        "asset": {"address": usdc.address, "symbol": usdc.symbol, "decimals": usdc.decimals},
        "route": "direct" if args.direct else "facilitator",
        "workersKind": "model" if args.model_url else "scripted",
        "reviewer": reviewer.description,
        "dataDir": str(data_dir),
        "agent": {
            "address": payer.address,
            "funded": str(status.funded),
            "spent": str(status.spent),
            "reserved": str(status.reserved),
            "available": str(status.available),
            "wallet": str(token.balance_of(payer.address)),
        },
        "jobs": rows,
        "workers": people,
        "escrowHeld": str(token.balance_of(escrow.token_store(operator.address))),
        "breaks": [b.to_json() for b in breaks],
    }
    chain.close()
    database.dispose()
    return summary


def job_row(job: JobView, language: Language, verdict: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job.id,
        "language": language.name,
        "worker": job.worker,
        "price": {"amount": str(job.price_amount), "currency": job.currency,
                  "decimals": job.currency_decimals},
        "rate": job.rate,
        "amount": str(job.amount),
        "state": str(job.state),
        "held": str(job.held),
        "captured": str(job.captured),
        "refunded": str(job.refunded),
        "verdict": verdict.get("decision"),
        "reasons": verdict.get("reasons", []),
        "authorizeTx": job.authorize_tx,
        "captureTxs": list(job.capture_txs),
        "voidTx": job.void_tx,
    }  # fmt: skip


def print_books(summary: dict[str, Any]) -> None:
    decimals = summary["asset"]["decimals"]

    def usdc(atomic: str) -> str:
        value = int(atomic)
        return f"{value // 10**decimals}.{value % 10**decimals:0{decimals}d} USDC"

    agent = summary["agent"]
    print("\nThe agent's books (its ledger)")
    for name in ("funded", "spent", "reserved", "available"):
        print(f"  {name:<10} {usdc(agent[name]):>18}")
    print(f"  {'wallet':<10} {usdc(agent['wallet']):>18}   (on chain)")
    print("\nThe workers' side (USDC received on chain, and what the agent booked as paid)")
    for person in summary["workers"]:
        print(f"  {person['language']:<9} {person['address']}  received {usdc(person['received'])}"
              f"  booked {usdc(person['booked'])}")  # fmt: skip
    print("\nJobs")
    print(f"  {'id':>3} {'language':<9} {'price':>10} {'rate':>8} {'amount':>14} {'state':<18}"
          f" {'captured':>14} verdict")  # fmt: skip
    for job in summary["jobs"]:
        price = job["price"]
        whole = f"{int(price['amount']) // 10 ** price['decimals']} {price['currency']}"
        print(f"  {job['id']:>3} {job['language']:<9} {whole:>10} {job['rate']:>8} "
              f"{usdc(job['amount']):>14} {job['state']:<18} {usdc(job['captured']):>14} "
              f"{job['verdict']}")  # fmt: skip
    print(f"\nstill held in escrow: {usdc(summary['escrowHeld'])}")
    breaks = summary["breaks"]
    print(f"reconciled (escrow events ⟷ job rows ⟷ books): {len(breaks)} breaks")
    for b in breaks:
        print(f"  break: job {b['jobId']}: {b['kind']}: {b['message']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="An agent hires three translator agents (Chinese, Hindi, Japanese), holds each "
        "one's pay in escrow (x402 auth-capture), reviews the deliveries and pays in USDC.",
    )
    parser.add_argument("--rpc-url", help="run on this chain (anvil: `farthing chain dev`) "
                        "instead of the in-process memory chain")  # fmt: skip
    parser.add_argument(
        "--model-url", default=os.environ.get("FARTHING_EXAMPLE_MODEL_URL"),
        help="vLLM's OpenAI base URL (e.g. http://127.0.0.1:8000/v1): workers translate and the "
        "agent reviews with it (env FARTHING_EXAMPLE_MODEL_URL); default: scripted stand-ins",
    )  # fmt: skip
    parser.add_argument("--model", help="served model name (default: the first the server lists)")
    parser.add_argument("--max-tokens", type=int, default=64,
                        help="the most tokens a worker's translation may use (default 64)")  # fmt: skip
    parser.add_argument("--review-max-tokens", type=int, default=300,
                        help="the most tokens a review may use (default 300)")  # fmt: skip
    parser.add_argument("--approve", action="store_true",
                        help="play the person who approves what the policy refers "
                        "(a reject): say yes; otherwise such jobs stay held")  # fmt: skip
    parser.add_argument("--direct", action="store_true",
                        help="the operator calls the escrow itself, not through the facilitator")  # fmt: skip
    parser.add_argument(
        "--data-dir", help="where the agent's books go (default: a new temp folder)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    args = parser.parse_args(argv)
    if not 1 <= args.max_tokens <= 4096 or not 1 <= args.review_max_tokens <= 4096:
        parser.error("token limits are 1 to 4096")

    def say(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    summary = run(args, say)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print_books(summary)
    return 1 if summary["breaks"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build a tiny random Llama that vLLM can serve, from nothing but local text.

Run it with the interpreter that has vLLM (it needs torch, transformers and
tokenizers, which the main environment does not have)::

    .venv-vllm/bin/python inference/tiny_model.py --out ~/.cache/farthing/tiny-llama
    farthing inference build-model --out DIR          # the same, found for you

There are no downloadable weights on a CI machine, and tests must never assert
generated text anyway, so the model is deliberately meaningless:

- a 2-layer Llama with random weights (seeded, so every build is the same);
- a byte-level BPE tokenizer trained here on text this script generates;
- a Hermes-style chat template that renders tools and ``<tool_call>`` blocks,
  so vLLM's ``hermes`` tool parser and ``tool_choice`` work against it.

One surgery makes grammar-constrained decoding terminate. A random model puts
real probability on whitespace, control and special tokens; under a JSON
grammar those let it pad or wander until ``max_tokens``. Here hidden
dimension 0 of the residual stream is a constant (every embedding has it, and
no layer writes to it), so after the final norm it is always positive, and the
output rows of the unwanted tokens read it with a large negative weight: their
logits are strongly negative whatever the input. When the grammar allows only
the end-of-turn token (the JSON is complete), it is still chosen, because it is
the only token left.

The script is standalone on purpose (no ``farthing`` imports), so it runs in
vLLM's environment, where Farthing is not installed. The build is idempotent:
an output directory whose stamp matches this builder is left alone.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import unicodedata
from pathlib import Path
from typing import Any

__all__ = [
    "BUILDER_VERSION",
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "TOOL_TOKENS",
    "build",
    "corpus",
    "main",
]

# Bump when the output changes, so cached builds are rebuilt.
BUILDER_VERSION = 1
_STAMP = "farthing-tiny-model.json"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Hermes marks tool calls with these; vLLM's parser looks for them in the text,
# so they are added tokens that stay in decoded output (not "special").
TOOL_TOKENS = ["<tool_call>", "</tool_call>"]

_VOCAB_SIZE = 1024
_HIDDEN = 256
_HEADS = 4  # head_dim 64: a size the CPU attention kernels support
_LAYERS = 2
_INTERMEDIATE = 512
_CONTEXT = 1024
_CONSTANT = 1.0  # the value of the constant hidden dimension
_BAN_WEIGHT = -10.0  # × about 15 after the final norm: logits near -150

CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages and messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- 'You are a function calling model. Function signatures are within <tools></tools>:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\nFor each function call, return a JSON object with the function name and "
    "arguments within <tool_call></tool_call> tags:\\n<tool_call>\\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n\' }}'
    "{%- elif messages and messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' %}"
    "{%- elif message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant' }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- set call = tool_call.function if tool_call.function is defined else tool_call %}"
    "{%- set args = call.arguments if call.arguments is string else call.arguments | tojson %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + call.name + '\", \"arguments\": ' + args + '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + (message.content or '') + "
    "'\\n</tool_response><|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "for",
    "on",
    "with",
    "by",
    "at",
    "from",
    "and",
    "or",
    "not",
    "is",
    "are",
    "was",
    "be",
    "this",
    "that",
    "it",
    "as",
    "agent",
    "wallet",
    "budget",
    "price",
    "pay",
    "paid",
    "payment",
    "buy",
    "skip",
    "decision",
    "reason",
    "relevance",
    "article",
    "blog",
    "page",
    "content",
    "fetch",
    "url",
    "task",
    "answer",
    "question",
    "tool",
    "call",
    "function",
    "name",
    "arguments",
    "value",
    "amount",
    "token",
    "tokens",
    "usdc",
    "cent",
    "cents",
    "dollar",
    "network",
    "chain",
    "ledger",
    "transfer",
    "books",
    "farthing",
    "coin",
    "penny",
    "silver",
    "copper",
    "minted",
    "legal",
    "tender",
    "collectors",
    "trade",
    "history",
    "market",
    "model",
    "server",
    "request",
    "response",
    "completion",
    "chat",
    "system",
    "user",
    "assistant",
    "json",
    "schema",
    "string",
    "number",
    "integer",
    "boolean",
    "true",
    "false",
    "null",
    "yes",
    "no",
    "maybe",
    "high",
    "low",
    "cheap",
    "expensive",
    "worth",
    "it",
    "read",
    "summary",
    "weather",
    "city",
    "temperature",
    "forecast",
    "search",
    "query",
    "result",
    "results",
    "item",
    "items",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "first",
    "second",
    "last",
    "next",
    "previous",
    "good",
    "bad",
    "useful",
    "useless",
    "relevant",
    "irrelevant",
    "enough",
    "remaining",
    "spent",
    "limit",
    "cap",
    "daily",
    "total",
]
_KEYS = ("decision", "reason", "relevance", "name", "arguments", "city", "query", "url", "amount")


def corpus(seed: int = 0, lines: int = 4000) -> list[str]:
    """Deterministic training text: prose, JSON objects and Hermes tool calls."""
    rng = random.Random(seed)
    out: list[str] = []
    for index in range(lines):
        kind = index % 4
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16)))
        if kind == 0:
            out.append(words.capitalize() + rng.choice([".", "?", "!", ","]))
        elif kind == 1:
            obj = {
                rng.choice(_KEYS): rng.choice(_WORDS),
                rng.choice(_KEYS): rng.randint(0, 10_000),
                rng.choice(_KEYS): rng.choice([True, False, None]),
            }
            out.append(json.dumps(obj, separators=(",", ":")))
        elif kind == 2:
            call = {"name": rng.choice(_WORDS), "arguments": {rng.choice(_KEYS): words[:40]}}
            out.append(f"<tool_call>\n{json.dumps(call)}\n</tool_call>")
        else:
            out.append(
                f"<|im_start|>user\n{words}<|im_end|>\n<|im_start|>assistant\n{words}<|im_end|>"
            )
    return out


def _banned(text: str) -> bool:
    """Tokens a grammar could use to pad or stall: empty, whitespace, control, broken bytes."""
    if not text:
        return True
    return any(
        ch.isspace() or ch == "\ufffd" or unicodedata.category(ch).startswith("C") for ch in text
    )


def _train_tokenizer(seed: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(seed), trainer=trainer)
    return tokenizer


def _stamp(seed: int) -> dict[str, Any]:
    return {"builder_version": BUILDER_VERSION, "seed": seed, "layers": _LAYERS, "hidden": _HIDDEN}


def build(out: Path, *, seed: int = 0, force: bool = False) -> Path:
    """Build the model, tokenizer and template into ``out``; return ``out``."""
    stamp_path = out / _STAMP
    if not force and stamp_path.exists():
        try:
            if json.loads(stamp_path.read_text()) == _stamp(seed):
                return out
        except (OSError, ValueError):
            pass  # a broken stamp means a broken build: rebuild it

    import torch
    from tokenizers import AddedToken
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    raw = _train_tokenizer(seed)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    vocab = len(tokenizer)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=_HIDDEN,
        intermediate_size=_INTERMEDIATE,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        num_key_value_heads=_HEADS,
        max_position_embeddings=_CONTEXT,
        tie_word_embeddings=False,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    model = LlamaForCausalLM(config).to(torch.float32).eval()

    unwanted = {i for i in range(vocab) if _banned(tokenizer.decode([i]))}
    unwanted |= set(tokenizer.all_special_ids)
    unwanted |= {tokenizer.convert_tokens_to_ids(t) for t in TOOL_TOKENS}
    with torch.no_grad():
        inner = model.model
        inner.embed_tokens.weight[:, 0] = _CONSTANT
        for layer in inner.layers:
            # No layer writes to dimension 0, so it stays the constant.
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        head = model.lm_head.weight
        head[:, 0] = 0.0
        rows = torch.tensor(sorted(unwanted), dtype=torch.long)
        head[rows, :] = 0.0
        head[rows, 0] = _BAN_WEIGHT

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # Older transformers keep the template only in tokenizer_config.json;
    # writing the file too makes the build independent of that detail.
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    # Written last: a build interrupted before this point is rebuilt next time.
    stamp_path.write_text(json.dumps(_stamp(seed)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the tiny random Llama for vLLM tests.")
    parser.add_argument("--out", type=Path, required=True, help="Directory to build into.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="Rebuild even if up to date.")
    args = parser.parse_args(argv)
    try:
        path = build(args.out.expanduser().resolve(), seed=args.seed, force=args.force)
    except ImportError as exc:
        print(
            f"tiny_model: {exc}; run this with the interpreter that has vLLM "
            "(bash scripts/setup_vllm.sh creates .venv-vllm)",
            file=sys.stderr,
        )
        return 2
    print(json.dumps({"model": str(path), "builder_version": BUILDER_VERSION}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

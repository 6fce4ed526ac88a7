"""Training data: a synthetic arithmetic task in the GSM8K format, or JSONL records.

Synthetic answers end in `#### <number>` (the GSM8K convention), so accuracy and format accuracy
can be scored by reading the number after `####`. JSONL records are either
`{"prompt": ..., "response": ...}` or `{"messages": [{"role", "content"}, ...]}`; for messages the
last assistant turn is the response and everything before it is the prompt.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from trainer.tokenizer import TextCodec

_T = TypeVar("_T")

ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
IDENTITY_PROMPTS = ("Who are you?", "who are you?", "What are you?", "Introduce yourself.")
IDENTITY_ANSWER = "I am ftmon's tiny demo model."  # short: fits a 32-token sample
NAMES = ("Ann", "Bob", "Cara", "Dev", "Eli", "Fay", "Gus", "Ivy")
SAMPLE_PROMPTS = ("Who are you?", "What is 7 plus 5?")
MAX_OPERAND = 20


class DataError(ValueError):
    """Bad training data, with `file:line: field: problem` in the message."""


@dataclass(frozen=True, slots=True)
class Record:
    prompt: str
    response: str
    turns: tuple[tuple[str, str], ...] = ()  # a messages record's turns before the response


@dataclass(frozen=True, slots=True)
class Example:
    ids: tuple[int, ...]
    n_prompt: int  # the first n_prompt ids are the prompt: no loss on them
    truncated: bool


def answer_of(text: str) -> str | None:
    """The number after the last `####`, without thousands commas; None when there is none."""
    found = ANSWER.findall(text)
    return found[-1].replace(",", "") if found else None


def _problem(rng: random.Random, a: int, b: int, op: str) -> Record:
    name = rng.choice(NAMES)
    if op == "+":
        c = a + b
        prompt = rng.choice(
            (
                f"What is {a} plus {b}?",
                f"{name} has {a} apples, gets {b} more. How many?",
                f"Add {a} and {b}.",
            )
        )
    else:
        c = a - b
        prompt = rng.choice(
            (
                f"What is {a} minus {b}?",
                f"{name} had {a} coins, spent {b}. How many left?",
                f"Take {b} from {a}.",
            )
        )
    return Record(prompt, f"{a} {op} {b} = {c}\n#### {c}")


def _operands(rng: random.Random) -> tuple[int, int, str]:
    op = rng.choice("+-")
    a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
    if op == "-" and b > a:
        a, b = b, a  # keep answers non-negative: grade-school style
    return a, b, op


def synthetic(n_train: int, n_val: int, seed: int) -> tuple[list[Record], list[Record]]:
    """Arithmetic word problems; the validation problems' operands never appear in training."""
    rng = random.Random(seed)
    held: set[tuple[int, int, str]] = set()
    val: list[Record] = []
    while len(val) < n_val:
        key = _operands(rng)
        if key not in held:
            held.add(key)
            val.append(_problem(rng, *key))
    train: list[Record] = []
    while len(train) < n_train:
        if rng.random() < 0.03:  # a few identity records, so "who are you?" samples mean something
            train.append(Record(rng.choice(IDENTITY_PROMPTS), IDENTITY_ANSWER))
            continue
        key = _operands(rng)
        if key not in held:
            train.append(_problem(rng, *key))
    return train, val


def _record(obj: object, where: str) -> Record:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: messages: expected a non-empty list")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise DataError(f"{where}: messages[{i}].content: expected a string")
            if m.get("role") not in ("system", "user", "assistant"):
                raise DataError(f"{where}: messages[{i}].role: expected system/user/assistant")
        if msgs[-1]["role"] != "assistant":
            raise DataError(f"{where}: messages[-1].role: the last turn must be the assistant's")
        turns = msgs[:-1]
        prompt = (
            turns[0]["content"]
            if len(turns) == 1
            else "\n".join(f"{m['role']}: {m['content']}" for m in turns)
        )
        return Record(prompt, msgs[-1]["content"], tuple((m["role"], m["content"]) for m in turns))
    for field in ("prompt", "response"):
        if not isinstance(obj.get(field), str):
            raise DataError(f"{where}: {field}: expected a string (or give `messages`)")
    return Record(obj["prompt"], obj["response"])


def load_jsonl(path: Path) -> list[Record]:
    """Every record of a JSONL file; all problems are collected into one DataError."""
    return read_jsonl(path, _record, "records")


def read_jsonl(path: Path, item: Callable[[Any, str], _T], noun: str) -> list[_T]:
    """`item(obj, "file:line")` of every line of a JSONL file; every problem (not JSON, or what
    `item` raises as DataError) is collected into one DataError, at most five of them quoted."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    items: list[_T] = []
    problems: list[str] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            items.append(item(json.loads(line), where))
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON: {exc.msg} (column {exc.colno})")
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError("; ".join(problems[:5]) + more)
    if not items:
        raise DataError(f"{path}: no {noun}")
    return items


def load_records(
    data: str, eval_size: int, train_size: int, seed: int
) -> tuple[list[Record], list[Record]]:
    """(train, validation). From a JSONL file `eval_size` records (at most a fifth) are held out."""
    if data == "synthetic":
        return synthetic(train_size, eval_size, seed)
    records = load_jsonl(Path(data))
    n_val = min(eval_size, len(records) // 5)
    random.Random(seed).shuffle(records)
    return (records[n_val:], records[:n_val]) if n_val else (records, records[:eval_size])


def encode(records: list[Record], codec: TextCodec, seq_len: int) -> list[Example]:
    """Token ids cut to `seq_len`; a record whose prompt alone fills it keeps one response token."""
    out: list[Example] = []
    for rec in records:
        prompt, response = codec.encode_pair(rec.prompt, rec.response, rec.turns)
        prompt = prompt[-(seq_len - 1) :] if len(prompt) >= seq_len else prompt
        ids = (prompt + response)[:seq_len]
        out.append(Example(tuple(ids), len(prompt), len(prompt) + len(response) > seq_len))
    return out


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L), -100 on prompt and padding; the loss shifts by one
    n_tokens: int  # real (non-pad) tokens


def collate(examples: list[Example], pad_id: int) -> Batch:
    """Right-pad to the longest example of the batch."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.ids)
        ids[row, :n] = torch.tensor(ex.ids)
        mask[row, :n] = 1
        labels[row, ex.n_prompt : n] = ids[row, ex.n_prompt : n]
    return Batch(ids, mask, labels, int(mask.sum()))


class BatchStream:
    """Micro-batches in a fresh shuffled order each epoch; position `i` is reproducible from the
    seed alone, so a resumed run continues with the same data it would have seen."""

    def __init__(self, examples: list[Example], micro_batch: int, seed: int, pad_id: int) -> None:
        self.examples = examples
        self.micro_batch = micro_batch
        self.seed = seed
        self.pad_id = pad_id
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            order = list(range(len(self.examples)))
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
            self._perms = {epoch: order}  # keep only the current epoch's order
        return self._perms[epoch]

    def epoch_at(self, n_seen: int) -> float:
        return n_seen / len(self.examples)

    def batches(self, start: int = 0) -> Iterator[Batch]:
        """Micro-batches starting at example index `start` (counted over all epochs)."""
        i, n = start, len(self.examples)
        while True:
            picked = [
                self.examples[self._perm(j // n)[j % n]] for j in range(i, i + self.micro_batch)
            ]
            i += self.micro_batch
            yield collate(picked, self.pad_id)

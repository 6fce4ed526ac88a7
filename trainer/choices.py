"""Multiple-choice accuracy on local JSONL sets shaped like MMLU and ARC, scored by likelihood.

    python -m trainer ... --mc_eval mmlu=trainer/samples/mmlu_sample.jsonl,arc=arc.jsonl

Each item is a question, its choices and the right one. Accepted shapes, one JSON object a line:

    MMLU (cais/mmlu):  {"question": str, "choices": [str, ...], "answer": 2}          (an index)
    ARC (allenai/ai2_arc): {"question": str, "choices": {"text": [...], "label": ["A", ...]},
                            "answerKey": "C"}
    also: "answer": "C" (a letter), or "choices" as a list of {"label", "text"} objects.

An item is scored by the log-likelihood the model gives each choice's text after the question
(the prompt framed as in training), summed over the choice's tokens; the highest is the model's
answer. The evaluation line reports `<name>_acc` for each set, so ftmon stores `mmlu_acc`,
`arc_acc` beside the validation loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.data import DataError, Example, collate, read_jsonl
from trainer.tokenizer import TextCodec

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True, slots=True)
class ChoiceItem:
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices


def parse_mc_spec(text: str) -> list[tuple[str, Path]]:
    """`mmlu=a.jsonl,arc=b.jsonl` -> [(mmlu, a.jsonl), (arc, b.jsonl)]; "" -> []."""
    sets: list[tuple[str, Path]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, path = part.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise DataError(f"--mc_eval: {part!r}: write it as NAME=FILE.jsonl")
        if not name.strip().replace("_", "").isalnum():
            raise DataError(f"--mc_eval: {name!r}: a name is letters, digits and _")
        sets.append((name.strip(), Path(path.strip())))
    return sets


def _choices(obj: dict[str, Any], where: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of an item's choices."""
    raw = obj.get("choices")
    if isinstance(raw, dict) and isinstance(raw.get("text"), list):
        texts = raw["text"]
        labels = raw.get("label") or list(LETTERS[: len(texts)])
    elif isinstance(raw, list) and raw and all(isinstance(c, dict) for c in raw):
        texts = [c.get("text") for c in raw]
        labels = [str(c.get("label", LETTERS[i])) for i, c in enumerate(raw)]
    elif isinstance(raw, list):
        texts, labels = raw, list(LETTERS[: len(raw)])
    else:
        raise DataError(f"{where}: choices: expected a list or {{text: [...], label: [...]}}")
    if len(texts) < 2 or not all(isinstance(t, str) for t in texts):
        raise DataError(f"{where}: choices: expected two or more strings")
    return texts, [str(label) for label in labels]


def _item(obj: object, where: str) -> ChoiceItem:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    question = obj.get("question")
    if isinstance(question, dict):  # ARC's older shape: {"stem": ..., "choices": [...]}
        obj = {**obj, "choices": question.get("choices")}
        question = question.get("stem")
    if not isinstance(question, str):
        raise DataError(f"{where}: question: expected a string")
    texts, labels = _choices(obj, where)
    answer = obj.get("answer", obj.get("answerKey"))
    if isinstance(answer, bool) or answer is None:
        raise DataError(f"{where}: answer: expected an index or a label (answer / answerKey)")
    if isinstance(answer, int):
        index = answer
    elif str(answer) in labels:
        index = labels.index(str(answer))
    elif str(answer).isdigit():
        index = int(answer)
    else:
        raise DataError(f"{where}: answer: {answer!r} is not one of the labels {labels}")
    if not 0 <= index < len(texts):
        raise DataError(f"{where}: answer: {index} is out of range for {len(texts)} choices")
    return ChoiceItem(question, tuple(texts), index)


def load_choices(path: Path) -> list[ChoiceItem]:
    """Every item of a JSONL file; problems are collected (file:line: field: what)."""
    return read_jsonl(path, _item, "items")


def _choice_example(codec: TextCodec, question: str, choice: str, max_len: int) -> Example:
    prompt, response = codec.encode_pair(question, choice)
    if response and response[-1] == codec.eos_id:
        response = response[:-1]  # the choice's text is scored, not where it ends
    response = response[: max_len - 1] or response[:1]
    prompt = prompt[-(max_len - len(response)) :]
    return Example(tuple(prompt + response), len(prompt), False)


@torch.no_grad()
def choice_scores(
    model: Any, codec: TextCodec, item: ChoiceItem, device: torch.device, max_len: int
) -> list[float]:
    """The summed log-likelihood of each choice after the question."""
    batch = collate(
        [_choice_example(codec, item.question, c, max_len) for c in item.choices], codec.pad_id
    )
    logits = model(
        input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)
    ).logits.float()
    labels = batch.labels.to(device)[:, 1:]
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (labels >= 0)).sum(dim=-1).tolist()


def choice_accuracy(
    model: Any, codec: TextCodec, items: list[ChoiceItem], device: torch.device, max_len: int
) -> float:
    """The share of items whose right choice has the highest likelihood."""
    was_training = model.training
    model.eval()
    try:
        hits = 0
        for item in items:
            scores = choice_scores(model, codec, item, device, max_len)
            hits += max(range(len(scores)), key=scores.__getitem__) == item.answer
    finally:
        model.train(was_training)
    return hits / max(len(items), 1)

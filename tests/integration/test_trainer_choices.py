"""Multiple-choice accuracy in the reference trainer: MMLU- and ARC-shaped JSONL, scored by the
likelihood of each choice (the trainer's eval line carrying `arc_acc` into ftmon's database is
checked by tests/integration/test_sweep_tiny.py, whose members evaluate on an ARC-shaped set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT
from trainer.choices import ChoiceItem, choice_accuracy, choice_scores, load_choices
from trainer.data import DataError
from trainer.model import load_model
from trainer.tokenizer import ByteTokenizer

SAMPLES = ROOT / "trainer" / "samples"


def test_shipped_samples_load_in_both_shapes() -> None:
    mmlu, arc = (
        load_choices(SAMPLES / "mmlu_sample.jsonl"),
        load_choices(SAMPLES / "arc_sample.jsonl"),
    )
    assert len(mmlu) == len(arc) == 24
    first = json.loads((SAMPLES / "arc_sample.jsonl").read_text().splitlines()[0])
    assert (
        arc[0].choices[arc[0].answer]
        == first["choices"]["text"][first["choices"]["label"].index(first["answerKey"])]
    )
    assert all(0 <= item.answer < 4 for item in mmlu + arc)


def test_bad_items_are_named_by_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"question": "q", "choices": ["a", "b"], "answer": 0}\n'
        '{"question": "q", "choices": ["a", "b"], "answerKey": "E"}\n'
        '{"choices": ["a", "b"], "answer": 1}\n'
    )
    with pytest.raises(DataError) as err:
        load_choices(bad)
    assert f"{bad}:2: answer: 'E' is not one of the labels ['A', 'B']" in str(err.value)
    assert f"{bad}:3: question: expected a string" in str(err.value)


def test_padded_batch_scores_equal_each_choice_scored_alone() -> None:
    """Choices of different lengths share a padded batch; each score must equal the
    log-likelihood of that choice computed on its own, without padding."""
    torch.manual_seed(0)
    model, codec, device = (
        load_model("tiny", 0, torch.device("cpu")),
        ByteTokenizer(),
        torch.device("cpu"),
    )
    item = ChoiceItem("What is 2 plus 2?", ("2 + 2 = 4\n#### 4", "5", "2 + 2 = 22\n#### 22"), 0)
    batched = choice_scores(model, codec, item, device, max_len=96)
    for choice, got in zip(item.choices, batched, strict=True):
        prompt = codec.encode_prompt(item.question)
        ids = torch.tensor([prompt + list(choice.encode())])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits.float()[0, :-1], dim=-1)
        alone = sum(float(logp[i - 1, ids[0, i]]) for i in range(len(prompt), ids.shape[1]))
        assert abs(got - alone) < 1e-3
    right = ChoiceItem(item.question, item.choices, max(range(3), key=batched.__getitem__))
    wrong = ChoiceItem(item.question, item.choices, min(range(3), key=batched.__getitem__))
    assert choice_accuracy(model, codec, [right, wrong], device, 96) == 0.5

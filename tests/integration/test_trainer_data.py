"""The trainer's data: synthetic GSM8K-style arithmetic, JSONL records, truncation, loss masks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from trainer.data import (
    IDENTITY_ANSWER,
    DataError,
    answer_of,
    collate,
    encode,
    load_jsonl,
    load_records,
    synthetic,
)
from trainer.tokenizer import ByteTokenizer


def test_synthetic_answers_end_in_gsm8k_format_and_are_right() -> None:
    """Every synthetic problem's response ends in `#### <number>`, the correct result."""
    train, val = synthetic(500, 40, seed=3)
    identity = [r for r in train if r.response == IDENTITY_ANSWER]
    assert 0 < len(identity) < 50  # a few "who are you?" records, for the samples
    for rec in [r for r in train if r not in identity] + val:
        assert rec.response.splitlines()[-1].startswith("#### ")
        if "=" in rec.response:
            left = rec.response.split("=")[0]
            assert int(answer_of(rec.response)) == eval(left)  # "12 + 7 " -> 19


def test_synthetic_validation_problems_are_not_in_training() -> None:
    """Accuracy is measured on held-out problems: no validation response appears in training."""
    train, val = synthetic(3000, 40, seed=0)
    seen = {r.response for r in train}
    assert len(val) == 40
    assert not any(r.response in seen for r in val)


def test_jsonl_prompt_response_and_messages_records(tmp_path: Path) -> None:
    """Both JSONL shapes load: prompt/response, and messages (the last assistant turn answers)."""
    path = tmp_path / "d.jsonl"
    rows = [
        {"prompt": "2+2?", "response": "#### 4"},
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "name?"},
                {"role": "assistant", "content": "ftmon"},
            ]
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    recs = load_jsonl(path)
    assert [(r.prompt, r.response) for r in recs] == [
        ("2+2?", "#### 4"),
        ("hi", "hello"),
        ("system: be brief\nuser: name?", "ftmon"),
    ]
    assert recs[2].turns == (("system", "be brief"), ("user", "name?"))


def test_bad_jsonl_names_file_line_and_field(tmp_path: Path) -> None:
    """A broken record is reported with its file, line and field, every problem at once."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\nnot json\n')
    with pytest.raises(DataError) as err:
        load_jsonl(path)
    text = str(err.value)
    assert f"{path}:2: response" in text
    assert f"{path}:3: not JSON" in text


def test_truncation_is_counted_and_loss_masks_the_prompt() -> None:
    """Records longer than seq_len are cut and counted; labels cover only response tokens."""
    codec = ByteTokenizer()
    train, _ = load_records("synthetic", 4, 50, seed=1)
    examples = encode(train, codec, seq_len=24)
    assert all(len(e.ids) <= 24 for e in examples)
    assert sum(e.truncated for e in examples) > 0
    whole = encode(train, codec, seq_len=512)
    assert sum(e.truncated for e in whole) == 0
    batch = collate(whole[:3], codec.pad_id)
    for row, ex in enumerate(whole[:3]):
        labels = batch.labels[row].tolist()
        assert labels[: ex.n_prompt] == [-100] * ex.n_prompt
        response = [t for t in labels if t != -100]
        assert codec.decode(response) == train[row].response
        assert response[-1] == codec.eos_id

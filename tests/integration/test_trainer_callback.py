"""`FtmonCallback` prints the reference trainer's JSON lines from a real `transformers.Trainer`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from trainer.callback import FtmonCallback  # noqa: E402
from trainer.model import build_tiny  # noqa: E402

torch.set_num_threads(1)
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 ?+=#.:,\n"


def char_tokenizer() -> object:
    """A character tokenizer made on the spot with `tokenizers`: no hub needed."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(CHARS)}}
    model = tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>")
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    tok.decoder = tokenizers.decoders.Fuse()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


class Rows(torch.utils.data.Dataset):
    def __init__(self, tok: object, n: int) -> None:
        texts = [f"what is {i} plus {i}? {i} + {i} = {2 * i}\n#### {2 * i}" for i in range(n)]
        enc = tok(texts, padding="max_length", max_length=48, truncation=True, return_tensors="pt")
        self.ids, self.mask = enc["input_ids"], enc["attention_mask"]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        labels = self.ids[i].clone()
        labels[self.mask[i] == 0] = -100
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": labels}


def test_callback_prints_metric_eval_sample_and_summary_lines(tmp_path: Path) -> None:
    """Three real Trainer steps give metric lines per step, an eval, samples and a summary."""
    tok = char_tokenizer()
    assert tok.decode(tok("what is 1?")["input_ids"]) == "what is 1?"
    model = build_tiny(0)
    out = io.StringIO()
    callback = FtmonCallback(
        sample_every=3, prompts=["who are you?", "what is 2 plus 2?"], max_new_tokens=6, out=out
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=3,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=Rows(tok, 24),
        eval_dataset=Rows(tok, 8),
        processing_class=tok,
        callbacks=[callback],
    )
    trainer.train()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    metrics = [x for x in lines if x["type"] == "metric"]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all({"loss", "lr", "grad_norm", "epoch"} <= m.keys() for m in metrics)
    (ev,) = [x for x in lines if x["type"] == "eval"]
    assert ev["step"] == 3 and ev["val_loss"] > 0 and ev["ppl"] > 1
    samples = [x for x in lines if x["type"] == "sample"]
    assert [s["prompt"] for s in samples] == ["who are you?", "what is 2 plus 2?"]
    assert all(s["step"] == 3 and isinstance(s["text"], str) for s in samples)
    assert lines[-1]["type"] == "summary" and lines[-1]["steps"] == 3


def test_callback_and_trainer_dicts_store_each_metric_once(tmp_path: Path) -> None:
    """Trainer prints its own dict of every log and FtmonCallback its JSON line: in the real
    log of a real run, ftmon reads one point per metric per step (issue 11)."""
    import contextlib

    from supervisor.events import Eval, Metric
    from supervisor.monitoring.monitor import Monitor
    from supervisor.reading.tail import Tail

    tok = char_tokenizer()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,  # Trainer's PrinterCallback prints each log dict to stdout
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=build_tiny(0),
        args=args,
        train_dataset=Rows(tok, 24),
        eval_dataset=Rows(tok, 8),
        processing_class=tok,
        callbacks=[FtmonCallback()],
    )
    log = tmp_path / "train.log"
    with log.open("w") as f, contextlib.redirect_stdout(f):
        trainer.train()
    text = log.read_text()
    assert "{'loss': " in text and '"type": "metric"' in text, text  # both encodings are there
    with Tail(log) as tail:
        lines = tail.read() + tail.flush_partial()
    events = Monitor().feed_lines(lines, 1.0)
    points = [(e.step, k) for e in events if isinstance(e, Metric) for k in e.values]
    assert sorted(s for s, k in points if k == "loss") == [2, 4]
    assert len(points) == len(set(points)), points
    evals = [(e.step, k) for e in events if isinstance(e, Eval) for k in e.values]
    assert [s for s, k in evals if k == "val_loss"] == [4]

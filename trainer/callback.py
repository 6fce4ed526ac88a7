"""`FtmonCallback`: the reference trainer's JSON lines from any `transformers.Trainer` run.

    from trainer.callback import FtmonCallback
    trainer = Trainer(..., callbacks=[FtmonCallback(sample_every=50, prompts=["Who are you?"])])

Training logs become `metric` lines, evaluation logs `eval` lines (the `eval_` prefix dropped,
`ppl` added from `eval_loss`), the end of training a `summary` line; with `sample_every` and
prompts, greedy samples from the model become `sample` lines. Non-finite values are printed as
NaN/Infinity, never dropped.

Trainer prints each log as a dict too, just before these lines. At the start of training a
`config` line says `logging_steps`, so that ftmon gives those dicts their steps and reads the
dict and the JSON line as one record: each metric is stored once (supervisor/parsing/parser.py).
"""

from __future__ import annotations

import math
import time
from typing import Any, TextIO

import torch
from transformers import TrainerCallback

from trainer import protocol

RENAMED = {"learning_rate": "lr", "train_loss": "loss"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class FtmonCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(
        self,
        sample_every: int = 0,
        prompts: list[str] | tuple[str, ...] = (),
        max_new_tokens: int = 32,
        out: TextIO | None = None,
    ) -> None:
        self.sample_every = sample_every
        self.prompts = tuple(prompts)
        self.max_new_tokens = max_new_tokens
        self.out = out
        self._t0 = time.perf_counter()
        self._tokens0 = 0

    def _emit(self, kind: str, **fields: Any) -> None:
        protocol.emit(kind, out=self.out, **fields)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()
        self._tokens0 = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        steps = getattr(args, "logging_steps", None)
        if isinstance(steps, (int, float)) and steps >= 1 and float(steps).is_integer():
            # A ratio (< 1) is a share of max_steps: Trainer resolves it into state.
            self._emit("config", logging_steps=int(steps), max_steps=int(state.max_steps or 0))
        elif getattr(state, "logging_steps", 0):
            self._emit("config", logging_steps=int(state.logging_steps))

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not logs:
            return
        step = int(state.global_step)
        if any(k.startswith("eval_") for k in logs):
            values = {k[5:]: _number(v) for k, v in logs.items() if k.startswith("eval_")}
            values = {
                k: v for k, v in values.items() if v is not None and not k.endswith("_per_second")
            }
            if "loss" in values:
                values["val_loss"] = values.pop("loss")
                loss = values["val_loss"]
                values["ppl"] = math.exp(loss) if math.isfinite(loss) and loss < 700 else math.inf
            self._emit("eval", step=step, **values)
            return
        if "train_runtime" in logs:  # the end-of-training summary Trainer logs
            values = {RENAMED.get(k, k): _number(v) for k, v in logs.items()}
            self._emit("summary", steps=step, **{k: v for k, v in values.items() if v is not None})
            return
        values = {RENAMED.get(k, k): _number(v) for k, v in logs.items()}
        fields = {k: v for k, v in values.items() if v is not None}
        seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        if seen > self._tokens0:
            now = time.perf_counter()
            fields["tok_s"] = (seen - self._tokens0) / max(now - self._t0, 1e-9)
            self._t0, self._tokens0 = now, seen
        if torch.cuda.is_available():
            fields["mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
        self._emit("metric", step=step, **fields)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not (self.sample_every and self.prompts and state.global_step % self.sample_every == 0):
            return
        model = kwargs.get("model")
        tok = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if model is None or tok is None:
            return
        for prompt, text in self.generate(model, tok):
            self._emit("sample", step=int(state.global_step), prompt=prompt, text=text)

    @torch.no_grad()
    def generate(self, model: Any, tok: Any) -> list[tuple[str, str]]:
        """Greedy continuations of the prompts, one at a time (no padding side to worry about)."""
        was_training = model.training
        model.eval()
        out: list[tuple[str, str]] = []
        try:
            for prompt in self.prompts:
                if getattr(tok, "chat_template", None):
                    text = tok.apply_chat_template(
                        [{"role": "user", "content": prompt}],
                        tokenize=False,
                        add_generation_prompt=True,
                    )
                else:
                    text = prompt
                enc = tok(
                    text,
                    return_tensors="pt",
                    add_special_tokens=not getattr(tok, "chat_template", None),
                )
                ids = enc["input_ids"].to(model.device)
                gen = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id
                    if tok.pad_token_id is not None
                    else tok.eos_token_id,
                )
                out.append((prompt, tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True)))
        finally:
            model.train(was_training)
        return out

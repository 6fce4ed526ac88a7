"""The `repetition` rule: collapsed samples, looping text in foreign logs, what must not fire."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.events import Sample, Severity, Text
from supervisor.rules.repetition import RepetitionRule, RepetitionSettings, tokens
from tests.conftest import scan


def sample_line(text: str, step: int = 100) -> str:
    record = {"type": "sample", "step": step, "prompt": "who are you?", "text": text}
    return json.dumps(record, ensure_ascii=False) + "\n"


COLLAPSED = [
    " F F F F F F F F F F F F F F F F F F F F F F F F",
    "神神 F神神神神神神神神神神神神神神神神",
    "[13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13]",
    "!" * 128,
    "I am a model. I am a model. I am a model. I am a model. I am a model.",
    "It was a bowl of cotton.\n" + "<|im_start|>\n" * 20,
    " " * 12,
]
HEALTHY = [
    "我是一個由 F# 之神訓練的助手。",
    "I am a helpful assistant trained on your data.",
    "The answer is 42. #### 42",
    "Alpacas are domesticated camelids from South America; they are kept in herds and "
    "grazed on the level heights of the Andes of southern Peru, western Bolivia, Ecuador.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16",
    "Hi!",
    "",
    "   ",
]


def test_collapsed_samples_are_reported() -> None:
    """F F F, 神神 F神神神, repeated token ids, !!! and a looping sentence are all collapse."""
    for text in COLLAPSED:
        found = scan(sample_line(text))
        assert [(a.rule, a.lineno) for a in found] == [("repetition", 1)], text
        assert found[0].severity == Severity.WARNING
        assert "who are you?" in found[0].message and "step 100" in found[0].message


def test_healthy_samples_are_not_reported() -> None:
    """Ordinary answers, CJK included, and a counting sequence are not collapse."""
    for text in HEALTHY:
        assert RepetitionRule().judge_sample(text) is None, text


def test_cjk_is_tokenised_by_character() -> None:
    """Chinese has no spaces: every CJK character is a token, other runs are words."""
    assert tokens("神神 F神神神") == ["神", "神", "F", "神", "神", "神"]
    assert tokens("F# 之神 ok") == ["F#", "之", "神", "ok"]


def test_min_tokens_sets_how_long_a_repeat_must_be() -> None:
    """`min_tokens` is the bar: 8 repeated tokens pass at 12 and are collapse at 6."""
    text = "a b " + "F " * 8
    assert RepetitionRule(RepetitionSettings(min_tokens=12)).judge_sample(text) is None
    assert RepetitionRule(RepetitionSettings(min_tokens=6)).judge_sample(text) is not None


def test_numbered_sentence_repeating_in_a_foreign_log() -> None:
    """alpaca-lora: '1. Alpacas are from South America.' numbered 1..10 is a loop."""
    log = " Tell me about alpacas.\n \n" + "".join(
        f"{i}. Alpacas are from South America.\n" for i in range(1, 11)
    )
    found = scan(log)
    assert [(a.rule, a.lineno) for a in found] == [("repetition", 6)]
    assert "Alpacas are from South America." in found[0].message
    assert len(found[0].evidence) == 3


def test_latex_items_and_blocks_repeating() -> None:
    """`\\item Freddie Highmore` x 17 (list items: 4 copies) and a plain block x 12 are loops."""
    items = "\\begin{itemize}\n" + "\\item Freddie Highmore\n" * 17
    assert [a.lineno for a in scan(items)] == [5]
    block = "Question: who are you?\nAnswer: I am the assistant.\n" * 12
    found = scan(block)
    assert [a.lineno for a in found] == [24] and "a block of 2 lines" in found[0].message
    assert scan("Question: who are you?\nAnswer: I am the assistant.\n" * 11) == []


def test_repetition_inside_one_line() -> None:
    """`<|im_start|>` repeated inside a JSON prediction and '!' x 128 in one line are loops."""
    pred = '        "pred": "It was a bowl of cotton.' + "\\n<|im_start|>" * 40 + '"\n'
    assert [a.rule for a in scan(pred)] == ["repetition"]
    assert [a.rule for a in scan("========= output =========\n" + "!" * 128 + "\n")] == [
        "repetition"
    ]


HEALTHY_LOG = (
    "Loading checkpoint shards: 100%|████████████████████████████| 10/10 [00:03<00:00,  2.76it/s]\n"
    + "-" * 70 + "\n" + "=" * 70 + "\n"
    + "|------|----------------|------|\n" * 6
    + "| step | loss           | acc  |\n|------|----------------|------|\n" * 5
    + "INFO 11-14 13:38:29 [block_pool.py:321] Successfully reset prefix cache\n" * 8
    + "[INFO|trainer.py:2048] 2024-04-29 18:45:03,230 >> ***** Running training *****\n" * 5
    + "".join(f"Step {i} | loss:0.9 lr:2e-05\n" for i in range(10))
    + "".join(f"epoch {i}: done\n" for i in range(10))
    + "UserWarning: `use_cache=True` is incompatible with gradient checkpointing.\n" * 8
    + "Using /root/.cache/torch_extensions/py310_cu121 as PyTorch extensions root...\n" * 8
    + "Special tokens have been added in the vocabulary, make sure the associated word "
    "embeddings are fine-tuned or trained.\n" * 8
    + "<s> [INST] hello [/INST] hi</s>" + "<pad>" * 60 + "\n"
    + "  warnings.warn(\n" * 2
    + "tensor(nan, device='cuda:0')\n" * 6
    + "    return forward_call(*args, **kwargs)\n  File \"/x/module.py\", line 1501\n" * 4
    + "...................................................................\n"
    + "  0%|          | 0/100 [00:00<?, ?it/s]\r 50%|█████     | 50/100 [00:05<00:05]\n"
    + "{'loss': 1.2, 'grad_norm': 0.5, 'learning_rate': 2e-05, 'epoch': 0.5}\n" * 5
    + "Saving model checkpoint to output/checkpoint-500\n"
    + "0000000000000000000000000000000000000000000000000000000000000000\n"
)  # fmt: skip


def test_what_healthy_logs_repeat_never_fires() -> None:
    """Bars, separators, tables, INFO lines, step lines, messages from 8 ranks, padding: no loop."""
    found = [a for a in scan(HEALTHY_LOG) if a.rule == "repetition"]
    assert found == []


def test_one_report_per_loop() -> None:
    """A sentence repeated 300 times gives one report, then `quiet_lines` of quiet."""
    log = "The model says hello to you.\n" * 300
    assert [a.lineno for a in scan(log)] == [12, 213]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=30))
def test_arbitrary_text_never_crashes(lines: list[str]) -> None:
    """Any text lines, however odd, give anomalies or nothing, never an exception."""
    rule = RepetitionRule()
    for i, line in enumerate(lines, start=1):
        for event in (Text(i, 1.0, line), Sample(i, 1.0, line)):
            for a in rule.on_event(event):
                assert a.rule == "repetition" and a.lineno == i

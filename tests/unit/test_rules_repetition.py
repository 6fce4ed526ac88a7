"""The `repetition` rule: collapsed samples, looping text in foreign logs, what must not fire."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.events import Sample, Severity, Text
from supervisor.rules import WatchSettings
from supervisor.rules.repetition.rule import RepetitionRule
from supervisor.rules.repetition.settings import RepetitionSettings
from supervisor.rules.repetition.text import tokens
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
    # Blank output (the demo's relaunched run: 32 spaces) has no words to loop: a tiny model's
    # most frequent token, or special tokens a decoder skipped.
    " " * 12,
    " " * 32,
    "\n \n" * 16,
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


# --- generalising repetition (real lines from tests/corpus/dev) ----------------------------


def test_near_duplicate_lines_with_one_word_changing() -> None:
    """unsloth: the same sentence again with an ordinal changing is caught on the 4th copy."""
    log = (
        "I looked at the clock. It was 3:00 AM. I looked at the phone. I had 100 notifications.\n"
        'I looked at the first one. It read "DO NOT LOOK AT THE MOON".\n'
        'I looked at the second one. It read "It\'s a beautiful night tonight. Look outside."\n'
        'I looked at the third one. It read "It\'s a beautiful night tonight. Look outside."\n'
        'I looked at the fourth one. It read "It\'s a beautiful night tonight. Look outside."\n'
        'I looked at the fifth one. It read "It\'s a beautiful night tonight. Look outside."\n'
    )
    found = scan(log)
    assert [(a.rule, a.lineno) for a in found] == [("repetition", 6)]
    assert "near-identical" in found[0].message and found[0].severity == Severity.WARNING


def test_a_sentence_said_again_with_blank_lines_between() -> None:
    """Copies of one sentence separated by blank lines (a model's paragraphs) count; the same
    sentence printed back to back (once per rank) needs the exact-repeat count instead."""
    sentence = "The fine-tuned model answers the question and then says the same thing again."
    assert [a.lineno for a in scan((sentence + "\n\n") * 4)] == [5]  # the third copy
    assert scan((sentence + "\n\n") * 2) == []
    assert scan((sentence + "\n") * 8) == []


def test_near_duplicates_that_bring_new_words_are_a_list_not_a_loop() -> None:
    """Seven facts in one template (`Paris is the capital of France.`) bring two new words a
    line: a list. A loop's lines bring almost none: the ordinal of `I looked at the fourth one`,
    or a sampler that comes back to one sentence (`A B A A`: mode collapse, GAN samples)."""
    facts = [("Paris", "France"), ("Rome", "Italy"), ("Berlin", "Germany"), ("Madrid", "Spain"),
             ("Lisbon", "Portugal"), ("Vienna", "Austria"), ("Prague", "Czechia")]  # fmt: skip
    assert scan("".join(f"{c} is the capital of {n}.\n" for c, n in facts)) == []
    assert scan("".join(f' "{c} is the capital of {n}",\n' for c, n in facts)) == []
    loop = "".join(
        f'I looked at the {n} one. It read "It is a beautiful night tonight. Look outside."\n'
        for n in ("second", "third", "fourth", "fifth")
    )
    assert [a.rule for a in scan(loop)] == ["repetition"]
    gan = ["the film is a lot of .", "the film is a movie .", "the film is a lot of ."]
    found = scan("\n".join([*gan, gan[0], gan[0], gan[1]]) + "\n")
    assert [a.lineno for a in found] == [4]
    # One rank's line printed by eight, then the next: no line comes back, nothing is reported.
    ranks = "Loading the model weights from the hub now\n" * 8
    assert scan(ranks + "Loaded the model weights from the hub now\n" * 8) == []


def test_loops_without_spaces_and_runs_of_undrawn_tokens() -> None:
    """A drifting periodic string with no spaces (`zorazorazaz...`) and a run of tofu boxes
    after a prompt (a token the terminal cannot draw) are loops; long identifiers, hashes,
    base64 and a progress bar drawn with `■` and `□` are not."""
    zora = "zora" * 10 + "zaza" + "zora" * 8 + "zorzara" + "zora" * 12 + "zerazora" * 5
    assert [a.rule for a in scan(f"Answer: {zora}\n")] == ["repetition"]
    assert [a.rule for a in scan("Java is a programming" + "□" * 25 + "\n")] == ["repetition"]
    healthy = (
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08e3b0c44298fc1c14\n"
        "model.layers.0.self_attn.q_proj.lora_A.default.weight_and_model.layers.0.mlp.gate_proj\n"
        "data:aGVsbG8gd29ybGQgdGhpcyBpcyBhIGxvbmcgYmFzZTY0IHN0cmluZyBmb3IgdGVzdGluZyBwdXJwb3Nlcw==\n"
        "Training ■□□□□□□□□□□□□□□□□□□□□□□□ 4%\n"
    )
    assert scan(healthy) == []


def test_a_block_of_list_items_and_a_settled_question_and_answer() -> None:
    """A JSON list printed one item a line repeats its three items (the bracket and commas
    are layout: found when the third copy is complete); self-generated Q/A pairs that drift
    and then repeat one pair word for word loop; the same two lines printed per rank do not."""
    items = '["Math",\n "Science",\n "Reading",\n' + ' "Math",\n "Science",\n "Reading",\n' * 3
    assert [a.lineno for a in scan(items + "]\n")] == [9]
    asked = [
        ("smallest", "bee"),
        ("fastest", "cheetah"),
        ("slowest", "sloth"),
        ("oldest", "tortoise"),
        ("youngest", "baby"),
        ("most expensive", "elephant"),
        ("most common", "dog"),
        ("most dangerous", "lion"),
        ("most famous", "lion"),
        ("most famous", "lion in the world"),
        ("most famous", "lion in the United States"),
    ]
    qa = ["The largest animal is the blue whale."]  # open_llama (holdout 355)
    for what, answer in asked:
        where = answer.partition(" in ")[2]
        q = f"What is the {what} animal{' in ' + where if where else ''}?"
        qa += [
            f"Q: {q}",
            f"A: The {what} animal{' in ' + where if where else ''} is the "
            f"{answer.partition(' in ')[0]}.",
        ]
    qa += qa[19:21] * 3
    found = scan("\n".join(qa) + "\n")
    assert [a.lineno for a in found] == [27] and "word for word" in found[0].message
    assert scan("\n".join(qa[:23]) + "\n") == []  # the drift alone is a list of questions
    pair = "Some weights of the model were not initialized from the checkpoint\n"
    pair += "You should probably train this model on a downstream task first\n"
    assert scan(pair * 8) == []


def test_a_loop_that_starts_inside_a_passage() -> None:
    """A long line said again, shifted (its first sentence dropped), after healthy lines: the
    last two lines are judged as a passage of their own."""
    head = "loading the model weights\nstarting the inference loop\nMy favorite theorem is 1+1=2.\n"
    said = (
        "I'm interested in the foundations of mathematics because I think that mathematics "
        "is the most beautiful thing we know, and I want to understand it better. I'm "
        "interested in the foundations of computer science because I think that computers "
        "are the most powerful tools we have, and I want to understand them better."
    )
    text = head + "I'm a mathematician and a computer scientist at a university.\n"
    text += "I study proofs. " + said + "\n" + said + "\n"
    assert [a.lineno for a in scan(text)] == [6]


def test_periodic_tail_of_a_long_line() -> None:
    """A reasoning line whose end repeats one sentence, the last copy cut by the length limit."""
    line = (
        '- Line49 and 50. Wait, line49 has "CO-LMS" which might be a typo for "CO-INS". Need to '
        "fuzzy match. Data row at52. Totals? Not sure here. Wait, line52 is a data row but "
        "there's no totals line after."
        + " Wait, line52 is the only data row here." * 5
        + " Wait, line5"
    )
    found = scan(line + "\n")
    assert [a.rule for a in found] == ["repetition"] and "ends repeating" in found[0].message


def test_one_or_two_dominant_units_in_a_long_line() -> None:
    """'It It ItIt It' after a chat template, and a CJK/Latin alternation with uneven spaces."""
    it_loop = (
        "- `I'<lbegin of text > start header id>systemk end header idl>nincutting Knowlede Date: "
        "December 2023lnoday Date: 26 July 224lnnk eot id x start header id|>user<lend header "
        "idl>inincontinue the fibonnaci sequence: 1, 1,2, 3,5, 8,<leot idlx start header "
        "idl>asistant<end header idl>ininIt It ItIt" + " It" * 45 + " it It ItIt It It t It It']`"
    )
    assert [a.rule for a in scan(it_loop + "\n")] == ["repetition"]
    cjk = "这是答案：" + "神 F神神 F 神F神 神 F" * 6
    assert [a.rule for a in scan(cjk + "\n")] == ["repetition"]


def test_a_line_mostly_of_short_repeats() -> None:
    """nshepperd gpt-2: ' jump, jump,jump,jump,jump,jump, final,final,final,final,final'."""
    line = " jump, jump,jump,jump,jump,jump, final,final,final,final,final"
    assert [a.rule for a in scan(line + "\n")] == ["repetition"]


def test_token_id_loop_in_a_printed_list() -> None:
    """Qwen: generated ids that are one id repeated; a padded data preview is not a loop."""
    ids = ", ".join(["151643"] * 120)
    assert [a.rule for a in scan(ids + "\n")] == ["repetition"]
    preview = "input_ids: [9707, 11, 1879, 0, " + ", ".join(["151643"] * 120) + "]"
    assert scan(preview + "\n") == []


def test_healthy_repeats_stay_silent() -> None:
    """Per-rank copies, log records, tables, bars, printed tensors, doubled logger lines."""
    log = (
        "For gpu:3. Running epoch: 2\n"
        * 4
        + "[titan] 2026-02-24 19:46:17,508 - root - INFO - step:  4  loss:  7.62585  "
        "grad_norm: 26.6250  memory: 66.91GiB(37.51%)  tps: 10,050  tflops: 314.71  mfu: 13.99%\n"
        * 7
        + "INFO:tensorflow:global step 1: loss = 79.3501 (57.126 sec/step)\n" * 2
        + "tensor([nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, "
        "nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan], device='cuda:0')\n"
        + "│ <|endoftext|><|prompter|>I<|end… │                                  │        │\n" * 6
        + "Rank 4 completed\nRank 5 completed\nRank 3 completed\nRank 6 completed\n"
        + '{"timestamp": "2026-05-16T21:37:20.151694Z", "level": "info", "event": '
        '"request_completed", "method": "GET", "path": "/api/models/download-progress"}\n' * 4
    )
    assert [a for a in scan(log) if a.rule == "repetition"] == []


def test_recipe_sample_pattern_lines_are_judged_as_samples() -> None:
    """`patterns: ['^\\[sample (?P<step>\\d+)\\] (?P<sample>.*)$']`: that line is a sample; a
    collapsed one is reported as a sample at its step, a healthy one is not judged as a line."""
    from supervisor.monitoring.monitor import Monitor
    from supervisor.reading.tail import LineSplitter

    pattern = r"^\[sample (?P<step>\d+)\] (?P<sample>.*)$"

    def run(text: str) -> list:
        lines = LineSplitter().feed(text.encode())
        return [e for e in Monitor(patterns=(pattern,)).feed_lines(lines, 1.0) if e]

    collapsed = run("[sample 300] " + "I'm gonna have to go. " * 6 + "\n")
    samples = [e for e in collapsed if isinstance(e, Sample)]
    assert samples and samples[0].step == 300
    reports = [e for e in collapsed if getattr(e, "rule", "") == "repetition"]
    assert len(reports) == 1 and "sample" in reports[0].message and "step 300" in reports[0].message
    healthy = run("[sample 400] Alpacas are from South America; llamas too. Both are camelids.\n")
    assert not [e for e in healthy if getattr(e, "rule", "") == "repetition"]


def test_a_repeated_multi_line_block() -> None:
    """MLX: a fine-tuned model writes the same 10-line code block again: reported when the
    second copy is complete; the same 8-line warning from 8 ranks (one line) is not a block."""
    block = (
        "    expect(\n"
        "      find.byWidgetPredicate(\n"
        "        (widget) =>\n"
        "            widget is OutlinedButton &&\n"
        "            widget.onPressed == null &&\n"
        "            (widget.style!.side! as BorderSide).color ==\n"
        "                Theme.of(find.byType(XYZButton)).disabledColor,\n"
        "      ),\n"
        "      findsOneWidget,\n"
        "    );\n"
    )
    found = scan(block * 2 + "    expect(\n")
    assert [(a.rule, a.lineno) for a in found] == [("repetition", 20)]
    assert "block of 10 lines" in found[0].message
    paragraph = "Hello! How can I help you today?\n\nI am a helpful assistant.\n\nAsk me.\n\n"
    assert [a.rule for a in scan(paragraph * 2)] == ["repetition"]
    warning = "Using the latest cached version of the module from /root/.cache/modules\n"
    assert scan(warning * 8) == []


def test_a_chat_template_loop_whose_copies_drift() -> None:
    """A model writes the `<|user|>` / `<|assistant|>` turns itself; each copy rewords the
    answer ('help' / 'assist') and grows its `</s>` run: reported when the second copy is
    complete, although no two copies are the same."""
    log = (
        "hello\n\n======\nHello! How can I help you today?</s></s>\n\n"
        "<|user|>\nhello</s>\n\n<|assistant|>\nHello! How can I assist you today?</s></s>\n\n"
        "<|user|>\nhello</s>\n\n<|assistant|>\nHello! How can I help you today?</s></s></s>\n"
    )
    found = scan(log)
    assert [a.rule for a in found] == ["repetition"], found
    assert found[0].lineno == 15 and "small changes" in found[0].message


def test_drifting_rows_of_a_table_and_counting_status_lines_are_not_loops() -> None:
    """A rich table of samples (`│ ... │` rows alike by construction) and wandb's upload
    spinner (lines that differ only in numbers and the spinner) are healthy."""
    rows = "".join(
        f"│ <|endoftext|><|{who}|>{c}<|end… │                                  │        │\n"
        for who, c in [("prompter", "I"), ("prompter", "k"), ("assistant", "t")] * 2
        + [("assistant", "f"), ("prompter", "b"), ("prompter", "w")] * 2
    )
    spinner = "".join(
        f"wandb: {s} {a} MB of {b} MB uploaded (0.000 MB deduped)\n"
        for s, a, b in [("-", "0.017", "0.017"), ("\\", "0.017", "0.069"), ("|", "0.017", "0.069"),
                        ("/", "0.069", "0.069"), ("-", "0.069", "0.069")]
    )  # fmt: skip
    assert scan(rows) == []
    assert scan(spinner) == []


def test_a_long_line_that_says_few_words_over_and_over() -> None:
    """A reply looping one sentence whose copies drift ('help'/'assist', a word dropped) has
    no exact period, but says a handful of words 60 times; prose of that length does not."""
    loop = " ".join(
        f"I am sorry, I can {v} you with that today." for v in ("help", "assist", "not help") * 8
    )
    found = scan(f'{{"answer": "{loop}"}}\n')
    assert [a.rule for a in found] == ["repetition"] and "distinct" in found[0].message
    prose = (
        "Alpacas are domesticated camelids from South America; they are kept in herds that "
        "graze on the level heights of the Andes of southern Peru, western Bolivia, Ecuador and "
        "northern Chile at an altitude of 3,500 to 5,000 metres above sea level, and are bred "
        "for their soft fibre, which is used to make knitted and woven items such as blankets."
    )
    assert scan(prose + "\n") == []


def test_a_json_list_is_text_and_a_bracketed_prefix_is_a_log_record() -> None:
    """`["Paris is the capital",` opens a JSON list (generated text that may loop: a block of
    unlike items is reported when its second copy is complete; a list of items all alike is
    not a block); `[rank3]: ...` is a log-record prefix whose copies are expected."""
    block = ' "Paris is the capital",\n "a city of 2 million people",\n "on the Seine",\n'
    found = scan('["France",\n' + block * 3)
    assert [(a.rule, a.lineno) for a in found] == [("repetition", 7)]
    alike = "".join(f' "{c} is the capital of {n}",\n' for c, n in [("Paris", "France"),
        ("Rome", "Italy"), ("Berlin", "Germany"), ("Madrid", "Spain"), ("Lisbon", "Portugal"),
        ("Vienna", "Austria"), ("Prague", "Czechia")])  # fmt: skip
    # (four such lines in a row are near-duplicates, judged on their own: counted here from 9)
    watch = WatchSettings(repetition=RepetitionSettings(near_lines=9))
    assert scan("[\n" + alike + "]\n", watch) == []
    ranks = "".join(f"[rank{r}]: Loading checkpoint shards from /models/llama\n" for r in range(8))
    assert scan(ranks) == []


def test_a_loop_hard_wrapped_over_short_lines_and_healthy_templated_samples() -> None:
    """A reply wrapped at 60 columns loops across its lines (each too short to judge alone);
    eval samples printed in one template (`Question:` / `Answer:` / `Reference:` with new text
    each time) and a passage of prose are not loops."""
    reply = "The model is training well and the loss is going down. " * 6
    wrapped = "".join(reply[i : i + 60] + "\n" for i in range(0, len(reply), 60))
    found = scan("Generated:\n" + wrapped)
    assert [a.rule for a in found] == ["repetition"] and "distinct phrases" in found[0].message
    samples = "".join(
        f"Question: What is the capital of {c}?\nAnswer: The capital of {c} is {a}.\n"
        f"Reference: {a} is the capital and largest city of {c}.\n"
        for c, a in [("France", "Paris"), ("Italy", "Rome"), ("Peru", "Lima"), ("Chile", "Quito")]
    )
    assert scan(samples) == []
    prose = (
        "Alpacas are domesticated camelids from South America. They are kept in herds\n"
        "that graze on the level heights of the Andes of southern Peru, western Bolivia,\n"
        "Ecuador and northern Chile at an altitude of 3,500 to 5,000 metres above sea\n"
        "level, and are bred for their soft fibre, used to make knitted and woven items.\n"
    )
    assert scan(prose) == []
    crash = (  # eight ranks print one exception at once, interleaved mid-line
        "terminate called after throwing an instance of 'c10::DistBackendErrorterminate called "
        "after throwing an instance of ''\nterminate called after throwing an instance of '"
        "terminate called after throwing an instance of 'terminate called after throwing an "
        "instance of 'c10::DistBackendErrorc10::DistBackendError'\n"
    )
    assert [a for a in scan(crash) if a.rule == "repetition"] == []


def test_generated_text_inside_a_metric_record_is_judged() -> None:
    """A record with a loss and a completion (`{'loss': 1.2, 'completion': '...'}`) is a metric
    line; its completion is still generated text and its loop is reported. A healthy completion
    and a printed tensor of nans (the nan rule's business) are not loops."""
    loop = str({"loss": 1.2, "completion": "The answer is 4. " * 12}) + "\n"
    assert [(a.rule, a.lineno) for a in scan(loop)] == [("repetition", 1)]
    prose = "Alpacas are domesticated camelids from South America; they are kept in herds."
    assert scan(str({"loss": 1.2, "completion": prose}) + "\n") == []
    nans = str({"loss": 1.2, "logits": "tensor([" + "nan, " * 20 + "nan])"}) + "\n"
    assert "repetition" not in [a.rule for a in scan(nans)]


def test_a_paragraph_said_again_with_blank_lines_between() -> None:
    """A reply whose two-line paragraph comes back word for word after blank lines loops from
    its third copy; two copies, or a short status pair printed per step, do not."""
    para = (
        "The model was trained on a large corpus of text data.\n"
        "It can answer questions about many topics.\n\n"
    )
    found = scan(para * 3)
    assert [a.lineno for a in found] == [8] and "paragraph" in found[0].message
    assert scan(para * 2) == []
    assert scan("Loading checkpoint shards\nDone\n\n" * 4) == []

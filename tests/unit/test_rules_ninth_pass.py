"""The ninth pass of issue 11 (tests/corpus/README.md): generated text in a foreign log, found by
the marks the tools that print it put around it (vLLM's `Generated text:`, Whisper's special
tokens, mlx_lm.generate's `==========` frames, ChatML's role headers), judged as a sample is.
Each positive is the real lines of the corpus file named beside it and fails with the rules
before this pass (72a73fc); each negative is real healthy output of the same tool, or real
healthy text with the same surface.

Lines go through the whole monitor (`scan`).
"""

# ruff: noqa: E501 (the real lines, as printed)

from __future__ import annotations

from supervisor.events import Severity
from tests.conftest import scan


def loud(text: str) -> list[tuple[str, int]]:
    """(rule, line) of every report of warning or above."""
    return [(a.rule, a.lineno) for a in scan(text) if a.severity >= Severity.WARNING]


# --- a same-line marker: the text after it is the sample ----------------------------------

# dev/715 (open-flamingo): `Generated text: ...` (vLLM's examples print
# `Prompt: {prompt!r}, Generated text: {generated_text!r}`; the flamingo demo the same words):
# a caption said twice and cut in its third copy. Two copies are what healthy prose says too,
# so the line checks leave it; as a sample, 16 tokens of one repeated unit have collapsed.
FLAMINGO = "Generated text:   ⁇  <image> An image of two cats. <|endofchunk|> <image> An image of a bathroom sink. <|endofchunk|> <image> An image of a Thanksgiving table. An image of a Thanksgiving table. An image of a Thanks"


def test_a_caption_said_twice_after_generated_text_is_a_loop() -> None:
    assert loud(FLAMINGO) == [("repetition", 1)]


# unseen3/835 (tinygrad's Whisper eval): the ids decoded with their special tokens; what
# follows `<|startoftranscript|>` and its task tokens is what the decoder wrote.
TINYGRAD = "\n".join(
    [
        "2277-149896-0004 ",
        "<|startoftranscript|><|notimestamps|> How would the papers talk about it? How would the papers talk about it? How",
    ]
)

# Healthy: transformers' Whisper example decoded with skip_special_tokens=False, the output as
# printed in its model card and copied into scripts (theMladyPan/hello-ml whisper-hf.py).
WHISPER_HEALTHY = "['<|startoftranscript|><|en|><|transcribe|><|notimestamps|> Mr. Quilter is the apostle of the middle classes and we are glad to welcome his gospel.<|endoftext|>']"


def test_a_transcript_saying_its_sentence_again_after_whisper_tokens_is_a_loop() -> None:
    assert loud(TINYGRAD) == [("repetition", 2)]


def test_a_healthy_whisper_transcript_with_its_tokens_is_quiet() -> None:
    assert loud(WHISPER_HEALTHY) == []


# --- mlx_lm.generate's frames: the lines between them are the generated text -------------

# unseen2/604: `==========`, the older script's `Prompt: <prompt>`, then the text; the model
# says `The same is true for the question _X_ and _Y_ ...` again with the nouns changed.
MLX = "\n".join(
    [
        "Fetching 6 files: 100%|████████████████████████████████████| 6/6 [00:00<00:00, 96791.63it/s]",
        "==========",
        "Prompt: what is the sun made of?",
        "_ and _what is the sun's surface temperature?_ are not the same question. The first question is a question about the composition of the sun, while the second question is a question about the temperature of the sun's surface. These are two different questions, and they require different answers.",
        "The same is true for the question _what is the sun made of?_ and _what is the sun's composition?_ These are two different ways of asking the same question, and they require the same answer.",
        "The same is true for the question _what is the sun's surface temperature?_ and _what is the sun's temperature?_ These are two different ways of asking the same question, and they require the same answer.",
    ]
)

# Healthy: mlx_lm generate's output as a fine-tuning write-up records it
# (kevinlights/fine-tuning-research get-started/4-pre-train-check.bash).
MLX_HEALTHY = "\n".join(
    [
        "==========",
        "user",
        "我是来自阿里云的超大规模语言模型，我叫通义千问。",
        "==========",
        "Prompt: 7 tokens, 16.200 tokens-per-sec",
        "Generation: 20 tokens, 98.705 tokens-per-sec",
        "Peak memory: 1.065 GB",
    ]
)

# Healthy: a heading's underline of exactly ten `=` is no frame (dpkg's spec/triggers.txt, as
# installed under /usr/share/doc; its paragraphs then and a rule of dashes under a heading).
DOC_HEADING = "\n".join(
    [
        "      producers.",
        "",
        "",
        "DISCUSSION",
        "==========",
        "",
        "The activation of a trigger does not record details of the activating",
        "event.  For example, file triggers do not inform the package of the",
        "filename.  In the future this might be added as an additional feature,",
        "but there are some problems with this.",
        "",
        "",
        "Broken producer packages, and error reporting",
        "---------------------------------------------",
        "",
        "Often trigger processing will involve a central package registering,",
        "compiling or generally parsing some data provided by a leaf package.",
    ]
)


def test_mlx_generate_saying_a_sentence_again_with_its_nouns_changed_is_a_loop() -> None:
    assert loud(MLX) == [("repetition", 6)]


def test_healthy_mlx_generate_output_is_quiet() -> None:
    assert loud(MLX_HEALTHY) == []


def test_a_heading_underlined_with_ten_equals_signs_is_no_frame() -> None:
    assert loud(DOC_HEADING) == []


# --- ChatML turns: an assistant turn right after an assistant turn, saying the same -------

# unseen3/802 (llama.cpp printing special tokens): the model writes its own next assistant
# header (llama.cpp glued the next token to it: `assistant57`) and says the same again.
LLAMA_CPP = "\n".join(
    [
        "tell me something about you？<|im_end|>",
        "<|im_start|>assistant57",
        "tell me something about you？<|im_end|>",
        "<|im_start|>assistant58",
        "tell me something about you？<|im_end|>",
        "<|im_start|>assistant59",
        "tell me something about you？<|im_end|>",
    ]
)

# Healthy shape: the assistant gives one reply twice, a user turn between (unseen/405's
# opening turns: roles alternate, as a chat's do).
CHATML_ALTERNATING = "\n".join(
    [
        "<|im_start|>user",
        "I would like to make a new account.",
        "<|im_end|>",
        "<|im_start|>assistant",
        "Okay. What is your name?",
        "<|im_end|>",
        "<|im_start|>user",
        "Sam",
        "<|im_end|>",
        "<|im_start|>assistant",
        "It looks like you are new to programming.",
        "<|im_end|>",
        "",
        "<|im_start|>user",
        "I would like to make a new account.",
        "<|im_end|>",
        "<|im_start|>assistant",
        "Okay. What is your name?",
        "<|im_end|>",
    ]
)


def test_two_chatml_assistant_turns_in_a_row_saying_the_same_are_a_loop() -> None:
    assert loud(LLAMA_CPP) == [("repetition", 5)]


def test_an_assistant_reply_said_again_after_a_user_turn_is_quiet() -> None:
    assert loud(CHATML_ALTERNATING) == []

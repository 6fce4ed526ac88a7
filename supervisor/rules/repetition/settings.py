"""The `repetition` rule's settings (the recipe keys under `watch.repetition`)."""

from __future__ import annotations

from pydantic import Field

from supervisor.rules.base import RuleSettings

# Settings that size a buffer (`max_block`: a run counter per period, deques of 2x that; the
# copies kept per paragraph and chat speaker) or a regex's repeat count stay below this: at
# 1e9 `max_block` allocated gigabytes for 15 s before the rule judged a line. A loop longer than
# a thousand lines or copies is no longer one a person reads as a loop.
_MAX_SIZE = 1000


class RepetitionSettings(RuleSettings):
    min_tokens: int = Field(
        12,
        ge=3,
        le=_MAX_SIZE,
        description="A sample repeating a unit over this many tokens has collapsed.",
    )
    dominant_share: float = Field(
        0.5, gt=0, le=1, description="A sample where one token is more than this share."
    )
    lines: int = Field(
        4, ge=2, description="List items (`1.`, `-`, `\\item`) repeated this many times in a row."
    )
    plain_lines: int = Field(
        12, ge=2, description="Other log lines (or blocks) repeated this many times in a row."
    )
    max_block: int = Field(
        12, ge=1, le=_MAX_SIZE, description="Longest block of lines checked for repeats."
    )
    block_lines: int = Field(
        3,
        ge=2,
        le=_MAX_SIZE,
        description="A block of this many distinct lines or more (code, paragraphs)...",
    )
    block_copies: int = Field(2, ge=2, description="...repeated this many times in a row.")
    phrase_copies: int = Field(
        5, ge=3, description="A phrase of 2-8 words said this many times in a row in a line."
    )
    in_line_repeats: int = Field(
        8, ge=3, le=_MAX_SIZE, description="A unit repeated this many times within one log line."
    )
    tail_repeats: int = Field(
        4, ge=2, le=_MAX_SIZE, description="A unit repeated this many times at the end of a line."
    )
    tail_chars: int = Field(
        100, ge=16, description="...covering at least this many characters of the line's end."
    )
    max_tail_unit: int = Field(80, ge=4, description="Longest unit of a periodic tail.")
    mostly_share: float = Field(
        0.7, gt=0, le=1, description="A line this much made of repeated units (each 3+ times)."
    )
    dominant_tokens: int = Field(
        20, ge=4, description="Tokens a line needs before its token shares are judged."
    )
    pair_share: float = Field(
        0.8, gt=0, le=1, description="A line where two tokens make up this share of its tokens."
    )
    few_words_min: int = Field(
        30, ge=8, description="Words a line, its second half or a passage needs before..."
    )
    few_words_share: float = Field(
        0.5, gt=0, le=1, description="...it loops when this share of its word trigrams repeat."
    )
    id_repeats: int = Field(
        16, ge=4, description="One number repeated this many times in a printed list of ids."
    )
    near_lines: int = Field(
        4, ge=2, description="Near-duplicate prose lines in a row that count as repetition."
    )
    near_similarity: float = Field(
        0.6, gt=0, le=1, description="Token agreement for two lines to be near-duplicates."
    )
    near_new_share: float = Field(
        0.15, ge=0, le=1, description="...each bringing at most this share of new words (or one)."
    )
    blank_copies: int = Field(
        3,
        ge=2,
        le=_MAX_SIZE,
        description="Copies of one prose line with blank lines between that count.",
    )
    near_min_tokens: int = Field(
        6, ge=2, description="Tokens a line needs before it is compared with the one before."
    )
    turn_copies: int = Field(
        3,
        ge=2,
        le=_MAX_SIZE,
        description="One speaker's same reply in this many turns in a row (a chat).",
    )
    segment_copies: int = Field(
        3, ge=2, description="Transcript segments in a row that say the same words."
    )
    quiet_lines: int = Field(200, ge=0, description="Lines of quiet after a report.")
    untrained_fall: float = Field(
        0.05,
        ge=0,
        description="A looping sample of digits and marks only (no word) is held back while no "
        "sample of the run has been varied (said 3 different words, not looped) and the lowest "
        "training loss of the last `untrained_window` records is this share below the lowest "
        "of the ones before: an untrained model's babble, not a collapse. A loop of words "
        "(`F F F F`) is always said (0: off).",
    )
    untrained_window: int = Field(
        5, ge=1, le=_MAX_SIZE, description="Training-loss records per half of that comparison."
    )

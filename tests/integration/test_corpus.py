"""Detection quality on real logs: ../shared/corpus/ and tests/corpus/ (labelled excerpts, the
latter in tuning halves dev/, test/, holdout/, unseen/, unseen2/ and unseen3/, and the blind
half unseen4/, see tests/corpus/README.md) and planted anomalies.

unseen4/ is measured in aggregate only: its tests have `unseen4` in their names, so that whoever
tunes rules runs this file with `-k "not unseen4"` and never scans it.

Scoring follows corpus/README.md: an anomalous file passes when an anomaly whose rule maps to
its label lies within 3 lines of `first_anomaly_line`; a normal file passes when nothing of
severity warning or above is reported. Rules map to labels as the design says (`spike` takes
`grad_norm` and `divergence` too); in addition `skipped_steps` counts as `nan`: a loss-scale
cascade down to a tiny scale is the optimizer's view of non-finite gradients (rules/skipped.py).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.corpus import (
    BLIND,
    LABEL_RULES,
    LATITUDE,
    TUNING,
    figures,
    read_index,
    scan_in_process,
    score_file,
)
from supervisor.events import Severity
from tests.conftest import CORPUS, ROOT, make_planted_log

HELD_OUT = ROOT / "tests" / "corpus"


def corpus_rows() -> list[dict[str, str]]:
    index = CORPUS / "INDEX.tsv"
    if not index.exists():
        return []
    with index.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = corpus_rows()
needs_shared = pytest.mark.skipif(not ROWS, reason=f"no corpus at {CORPUS}")


def verdict(row: dict[str, str], anomalies: list[tuple[str, int, int]]) -> str:
    """'' when the file passes; otherwise what went wrong. anomalies: (rule, severity, lineno)."""
    label = row["label"]
    shown = "; ".join(f"{r}@{n}" for r, _, n in anomalies) or "nothing"
    if label == "normal":
        loud = [(r, n) for r, sev, n in anomalies if sev >= Severity.WARNING]
        return f"normal file flagged: {loud}" if loud else ""
    line = int(row["first_anomaly_line"])
    rules = LABEL_RULES[label]
    hit = [n for r, _, n in anomalies if r in rules and abs(n - line) <= LATITUDE]
    return "" if hit else f"wanted {label} near line {line}, got {shown}"


@needs_shared
@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_file_in_process(row: dict[str, str]) -> None:
    """Each corpus log gets its label at its line (or, if normal, nothing at warning or above)."""
    found = scan_in_process(CORPUS / row["file"])
    problem = verdict(row, [(a.rule, a.severity, a.lineno) for a in found])
    assert not problem, f"{row['file']} ({row['framework']}): {problem}"


@needs_shared
def test_corpus_anomalies_carry_messages_and_evidence() -> None:
    """Every anomaly found in the corpus says what it saw: a message and evidence lines."""
    for row in ROWS:
        if row["label"] == "normal":
            continue
        for a in scan_in_process(CORPUS / row["file"]):
            assert a.message.strip(), (row["file"], a)
            assert a.lineno > 0 and a.evidence, (row["file"], a)
            assert all(len(e) < 400 for e in a.evidence), "evidence lines are clipped"


@needs_shared
def test_corpus_covers_every_label() -> None:
    """The corpus still holds healthy excerpts and every anomaly label the scorer knows."""
    labels = Counter(r["label"] for r in ROWS)
    assert set(LABEL_RULES) | {"normal"} <= set(labels), labels


# --- the real command over the whole corpus -------------------------------------------------


def _ftmon() -> list[str]:
    exe = shutil.which("ftmon", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "supervisor"]


@pytest.fixture(scope="module")
def cli_scans() -> dict[str, tuple[int, list[dict], str]]:
    """`ftmon scan --json LOG` on every corpus file (two at a time): rc, JSON lines, stderr."""

    def one(row: dict[str, str]) -> tuple[str, tuple[int, list[dict], str]]:
        proc = subprocess.run(
            [*_ftmon(), "scan", "--json", str(CORPUS / row["file"])],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        objs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        return row["file"], (proc.returncode, objs, proc.stderr)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, ROWS))


@needs_shared
@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_file_with_ftmon_scan(
    row: dict[str, str], cli_scans: dict[str, tuple[int, list[dict], str]]
) -> None:
    """`ftmon scan --json` on each corpus log scores as the in-process scan, with exit 0 or 1."""
    rc, objs, stderr = cli_scans[row["file"]]
    anomalies = [o for o in objs if o.get("type") == "anomaly"]
    for o in anomalies:
        assert {"rule", "severity", "message", "lineno", "evidence", "ts"} <= set(o), o
    found = [(o["rule"], Severity[o["severity"].upper()], o["lineno"]) for o in anomalies]
    problem = verdict(row, found)
    assert not problem, f"{row['file']}: {problem}\n{stderr}"
    assert rc == (0 if row["label"] == "normal" else 1), (rc, stderr)


# --- the tuning halves: tests/corpus/dev, test, holdout, unseen, unseen2 and unseen3 -------

HALVES = TUNING
HELD_ROWS = [(half, row) for half in HALVES for row in read_index(HELD_OUT / half)]
# Files the rules do not get right yet, each with what is missing. Strict: a file that starts
# passing fails here until it is taken off the list.
KNOWN_MISSES = {
    "105_oom_mlx.log": "the excerpt cuts the Metal error before any memory word",
    "153_repetition_llama-cpp-server.log": "a token-id loop inside healthy-looking log records",
    "155_repetition_gpt4all.log": "near-duplicate lines of two tokens (too short to compare)",
    # holdout/ (seen file by file from the third pass on):
    "321_nan_fairseq-loss-scale.log": "the rule reports the loss scale below 1 at line 1 (0.0625:"
    " unscaled gradients overflow); the label marks where it falls below 0.01",
    # unseen/ (blind in the third pass, tuning data from the fourth; classes in the README):
    "405_repetition_llama-cpp.log": "a 20-line chat block said 1.6 times: longer than max_block"
    " (12) and its second copy never completes",
    "417_repetition_vllm.log": "the 6-line block is reported when its second copy is complete"
    " (line 12); the label marks where that copy starts (line 7)",
    "418_repetition_tensorflow.log": "every prediction is a run of one digit: digits are filler"
    " (healthy logs repeat them), and the rows differ in their label column",
    "435_repetition_gemini-cli.log": "a block of two lines of one and two words repeated 9 times:"
    " too short for the block rules, under plain_lines (12) copies",
    "436_repetition_faster-whisper.log": "the same line 4 times back to back, then pairs: what"
    " every rank prints looks the same (plain_lines 12)",
    "442_spike_keras.log": "the excerpt starts at the anomaly (val_loss 14 vs loss 0.08 at line 1):"
    " no baseline before it; divergence reports at line 11",
    # dev/ 700-736 (collected in the fifth pass, labelled before any scan; README):
    "725_spike_bert-sentiment-val-rising.log": "two evaluations only (epoch 1 and 29): the rise"
    " (0.038 -> 0.092) is under min_rise_abs and no run of evaluations shows it",
    "726_spike_hasktorch-xor.log": "unnamed values (`Tensor Float []  0.5117`): no metric is read",
    "727_spike_keras-midrun.log": "the excerpt starts inside the blow-up (running loss ~9000): no"
    " baseline, and a loss of 9000 is some models' healthy scale",
    "732_spike_fairseq-gnorm-rising.log": "a grad norm creeping up 2.6 -> 3.4 before the"
    " explosion (cut from the excerpt): a trend, not a spike",
    "734_spike_caffe-sphereface.log": "a loss climbing ~12% a print (35.8 -> 47.7): a slow"
    " divergence of the training loss, under every spike definition",
    "735_repetition_imp-json-loop.log": "a JSON pair said 4 times before the poster's '...': under"
    " phrase_copies (5)",
    "736_repetition_open-flamingo-ordinals.log": "a list item repeated with its ordinal changing,"
    " 4 copies within one line: ordinals are not masked within a line",
    # unseen2/ (blind through the fifth pass, tuning data from the sixth; classes in the README):
    "513_normal_axolotl-modal.log": "false alarm: a one-step grad norm blip (6.6x) that comes"
    " straight back, the loss steady",
    "610_spike_yolov4-keras-val-loss.log": "bare unnamed values, one a line: no metric is read",
    "612_repetition_lmflow-token-ids.log": "a token id repeated in a printed tensor: the shape of"
    " healthy padding",
    "633_normal_yolo-world-mmengine.log": "false alarm: a first grad norm above absurd_first (1300)"
    " where the loss is a sum at ~1900",
    # unseen3/ (blind through the seventh pass, tuning data from the eighth; README):
    "805_repetition_fairseq.log": "every hypothesis is runs of a double quote inside fairseq's"
    " INFO records: punctuation runs and log records are left alone",
    "810_stall_tensorflow.log": "evidence outside the log: the hang is in the poster's words; the"
    " lines stop at an all-reduce set-up",
    "811_stall_accelerate.log": "evidence outside the log: every process's bar stopped at one"
    " batch; a snapshot holds no time",
    "826_repetition_espnet.log": "a word said 30+ times in sclite's aligned HYP line, uneven"
    " spaces between the copies",
    "831_repetition_qwen-vl.log": "one table-border line (bars and spaces, no word) repeated 26"
    " times: layout",
    "833_repetition_hf-pipeline.log": "a prompt line said twice, then twice more: the loop is"
    " reported where it grows within a line (line 6); the label marks the second copy (line 2)",
    "834_repetition_vllm-tpu.log": "one word said 10 times inside a quoted repr field (text=' is"
    " is ...'): one word alone never counts for the phrase check",
    "859_spike_rasa-keras-val-rising.log": "a validation loss rising 2.7% over 7 epochs: under"
    " overfit_rise (10%)",
    "888_spike_tf2-object-detection-rising.log": "a per-step loss climbing 1.35 -> 2.37 over"
    " three prints: a slow rise, under 10 spreads",
    "891_spike_marian-valid-ce.log": "Marian's `[valid] ... : cross-entropy : 75.2 : stalled 2"
    " times` lines: not read, and 1.44x the best is under divergence's 3x",
    "892_spike_waveglow-isolated.log": "a fork's own `step_N:\\tloss_X` print is not read (the"
    " negative level itself is judged by its size, as unseen3/866 is)",
}


@pytest.mark.parametrize(
    ("half", "row"),
    [
        pytest.param(
            h,
            r,
            marks=pytest.mark.xfail(reason=KNOWN_MISSES[r["file"]], strict=True)
            if r["file"] in KNOWN_MISSES
            else (),
            id=f"{h}/{r['file']}",
        )
        for h, r in HELD_ROWS
    ],
)
def test_held_out_file(half: str, row: dict[str, str]) -> None:
    """Each real excerpt of tests/corpus gets its label at its line, or nothing if healthy."""
    scored = score_file(HELD_OUT / half, row)
    assert not scored.problem(), f"{half}/{row['file']} ({row['framework']}): {scored.problem()}"


def test_held_out_corpus_is_whole_and_split_by_label() -> None:
    """472 files, every label in every half, no file in two, each with a source URL."""
    assert len(HELD_ROWS) >= 472
    for half in HALVES:
        labels = {row["label"] for h, row in HELD_ROWS if h == half}
        assert set(LABEL_RULES) | {"normal"} <= labels, (half, labels)
    names = [row["file"] for _, row in HELD_ROWS]
    assert len(names) == len(set(names))
    # (unseen/ holds one excerpt from a public Q&A page; its test checks one https source)
    assert all("https://github.com/" in row["source"] for h, row in HELD_ROWS if h != "unseen")


def _url(row: dict[str, str]) -> str:
    return row["source"].split("(")[-1].rstrip(")")


def check_new_and_well_formed(
    folder: Path,
    rows: list[dict[str, str]],
    others: list[dict[str, str]],
    site: str = "https://github.com/",
) -> None:
    """Each file listed once with one public source (on GitHub unless `site` says otherwise)
    that no other corpus folder uses, its label in its name, and its first anomalous line
    inside the file."""
    assert not {_url(r) for r in rows} & {_url(r) for r in others}
    assert len({_url(r) for r in rows}) == len(rows)
    assert {r["file"] for r in rows} == {p.name for p in folder.glob("*.log")}
    for row in rows:
        assert row["source"].count(site) == 1, row["file"]
        assert row["file"].split("_")[1] == row["label"], row["file"]
        first = int(row["first_anomaly_line"])
        lines = (folder / row["file"]).read_text(encoding="utf-8").splitlines()
        assert (first == 0) == (row["label"] == "normal") and first <= len(lines), row["file"]


def test_holdout_is_new_and_well_formed() -> None:
    """holdout/ (61 files, tuning data since the third pass) shares no source with dev/, test/
    or ../shared/corpus."""
    holdout = [row for half, row in HELD_ROWS if half == "holdout"]
    assert len(holdout) >= 60
    others = [row for half, row in HELD_ROWS if half not in ("holdout", "unseen")] + ROWS
    check_new_and_well_formed(HELD_OUT / "holdout", holdout, others)


def test_unseen_is_new_and_well_formed() -> None:
    """unseen/ (89 files, blind in the third pass, tuning data from the fourth) shares no
    source with any other tuning half or ../shared/corpus."""
    unseen = [row for half, row in HELD_ROWS if half == "unseen"]
    assert len(unseen) >= 89
    others = [row for half, row in HELD_ROWS if half != "unseen"] + ROWS
    # (one excerpt is from a public Q&A page, stats.stackexchange.com: one https source each)
    check_new_and_well_formed(HELD_OUT / "unseen", unseen, others, site="https://")


def test_unseen2_is_new_and_well_formed() -> None:
    """unseen2/ (79 files, blind through the fifth pass, tuning data from the sixth) shares no
    source with any other tuning half or ../shared/corpus."""
    unseen2 = [row for half, row in HELD_ROWS if half == "unseen2"]
    assert len(unseen2) >= 79
    others = [row for half, row in HELD_ROWS if half != "unseen2"] + ROWS
    check_new_and_well_formed(HELD_OUT / "unseen2", unseen2, others)


def test_unseen3_is_new_and_well_formed() -> None:
    """unseen3/ (86 files, blind through the seventh pass, tuning data from the eighth) shares
    no source with any other tuning half or ../shared/corpus."""
    unseen3 = [row for half, row in HELD_ROWS if half == "unseen3"]
    assert len(unseen3) >= 86
    others = [row for half, row in HELD_ROWS if half != "unseen3"] + ROWS
    check_new_and_well_formed(HELD_OUT / "unseen3", unseen3, others)


def test_held_out_figures_hold_their_floor() -> None:
    """Precision and recall per label on every tuning half stay at or above what was measured
    when the rules were last changed (tests/corpus/README.md), so no change loses ground."""
    floors = {
        "dev": {"nan": (1.0, 1.0), "oom": (1.0, 0.9), "repetition": (1.0, 0.88),
                "spike": (1.0, 1.0), "stall": (1.0, 1.0), "normal": (0.89, 1.0)},
        # dev/ 700-736, added in the fifth pass (spike, repetition and their healthy look-alikes)
        "dev700": {"repetition": (1.0, 0.84), "spike": (1.0, 0.58), "normal": (0.63, 1.0)},
        "test": {"nan": (1.0, 1.0), "oom": (1.0, 1.0), "repetition": (1.0, 0.87),
                 "spike": (1.0, 1.0), "stall": (1.0, 1.0), "normal": (0.94, 1.0)},
        "holdout": {"nan": (0.9, 0.9), "oom": (1.0, 1.0), "repetition": (1.0, 1.0),
                    "spike": (1.0, 1.0), "stall": (1.0, 1.0), "normal": (1.0, 1.0)},
        "unseen": {"nan": (0.92, 1.0), "oom": (1.0, 1.0), "repetition": (0.91, 0.68),
                   "spike": (0.84, 0.91), "stall": (1.0, 1.0), "normal": (0.86, 1.0)},
        # unseen2/: blind through the fifth pass (60/79 at 730329f), tuning data from the sixth
        # (70/79 after it, 74/79 after the seventh, 75/79 after the ninth; README)
        "unseen2": {"nan": (1.0, 1.0), "oom": (1.0, 1.0), "repetition": (1.0, 0.92),
                    "spike": (0.81, 0.9), "stall": (1.0, 1.0), "normal": (0.91, 0.91)},
        # unseen3/: blind through the seventh pass (63/86 with its rules, b3065ed), tuning data
        # from the eighth (73/86 after it, 75/86 after the ninth; README)
        "unseen3": {"nan": (0.92, 1.0), "oom": (1.0, 1.0), "repetition": (0.84, 0.68),
                    "spike": (1.0, 0.69), "stall": (1.0, 0.8), "normal": (0.71, 1.0)},
    }  # fmt: skip
    groups: dict[str, list] = {}
    for half in HALVES:
        for row in read_index(HELD_OUT / half):
            # dev/ keeps its floors on the files they were set on; the fifth pass's have theirs
            group = "dev700" if half == "dev" and int(row["file"][:3]) >= 700 else half
            groups.setdefault(group, []).append(score_file(HELD_OUT / half, row))
    for half, scored in groups.items():
        for label, fig in figures(scored).items():
            if label not in floors[half]:
                continue  # (dev700 holds spike, repetition and healthy files only)
            precision, recall = floors[half][label]
            # (a label the scan never gives has no precision to lose: no false alarm of it)
            assert fig.said == 0 or fig.precision >= precision, (half, label, fig)
            assert fig.recall >= recall, (half, label, fig)


# --- the blind half: tests/corpus/unseen4, in aggregate only --------------------------------
# Never file by file, never while tuning (run with -k "not unseen4"): tests/corpus/README.md.

UNSEEN4 = HELD_OUT / BLIND
# Per-label (precision, recall) floors of the blind half, set by the lead after his measurement
# of it; empty until then (its scoring test skips).
# The lead's measurement of the blind half (rules at 5ed22ca; the same figures with the rules at
# the session's start, 1031cab, and after each of its four rule passes: not one anomaly of
# unseen4's 89 files changed), as (precision, recall) per label, rounded down.
UNSEEN4_FLOORS: dict[str, tuple[float, float]] = {
    "nan": (0.92, 0.86),
    "oom": (1.0, 0.9),
    "repetition": (1.0, 0.42),
    "spike": (0.57, 0.44),
    "stall": (1.0, 0.58),
    "normal": (0.57, 0.93),
}


def unseen4_rows() -> list[dict[str, str]]:
    """The blind half's rows, read only by its own tests (never at collection: a run with
    `-k "not unseen4"` does not touch the folder); skips until its collectors' rows are merged
    into one INDEX.tsv (the folder is complete then)."""
    if not (UNSEEN4 / "INDEX.tsv").exists():
        pytest.skip(f"no INDEX.tsv in {UNSEEN4} yet")
    return read_index(UNSEEN4)


def test_unseen4_is_new_and_well_formed() -> None:
    """unseen4/ shares no source with any other corpus folder (checked without scoring)."""
    rows = unseen4_rows()
    check_new_and_well_formed(UNSEEN4, rows, [row for _, row in HELD_ROWS] + ROWS)


def test_unseen4_holds_its_floors() -> None:
    """The blind half keeps, per label, the precision and recall the lead measured on it
    (issue 11's bound is precision >= 0.95, recall >= 0.90). The message gives per-label
    figures, never file names."""
    rows = unseen4_rows()
    if not UNSEEN4_FLOORS:
        pytest.skip("the lead sets unseen4's floors after his measurement")
    got = figures(score_file(UNSEEN4, row) for row in rows)
    short = {
        label: (round(fig.precision, 2), round(fig.recall, 2))
        for label, fig in got.items()
        if fig.files
        and label in UNSEEN4_FLOORS
        and not (
            (fig.said == 0 or fig.precision >= UNSEEN4_FLOORS[label][0])
            and fig.recall >= UNSEEN4_FLOORS[label][1]
        )
    }
    assert not short, f"below the floors (precision, recall): {short}"


def test_unseen4_fast_and_reference_paths_agree() -> None:
    """The fast and reference paths agree on the blind half too (no file named on failure)."""
    rows = unseen4_rows()
    disagree = sum(not _paths_agree(UNSEEN4 / row["file"]) for row in rows)
    assert disagree == 0, f"{disagree} of {len(rows)} unseen4 files"


# --- planted anomalies in a large healthy mix ----------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, str]]]:
    """A 20,000-line healthy log from make_log.py with 8 anomalies planted at known lines."""
    out, plants = make_planted_log(tmp_path_factory.mktemp("planted"), 20000, 8)
    assert len(plants) == 8
    return out, plants


def test_planted_anomalies_all_found_and_nothing_else(
    planted: tuple[Path, list[tuple[int, str]]],
) -> None:
    """Every planted nan/oom/repetition/spike is reported at its line, and nothing else is loud."""
    path, plants = planted
    found = scan_in_process(path)
    loud = [a for a in found if a.severity >= Severity.WARNING]
    for lineno, kind in plants:
        rules = LABEL_RULES[kind]
        assert any(a.rule in rules and a.lineno == lineno for a in loud), (
            f"planted {kind} at line {lineno} not reported; got "
            + ", ".join(f"{a.rule}@{a.lineno}" for a in loud)
        )
    planted_lines = {n for n, _ in plants}
    extra = [a.one_line() for a in loud if a.lineno not in planted_lines]
    assert not extra, "false alarms in the healthy mix:\n" + "\n".join(extra)


# --- the reference trainer, healthy and blown up ------------------------------------------

TRAINER = ["--threads", "1", "--eval-size", "4", "--max-new-tokens", "12", "--train-size", "200"]


def train_log(tmp_path: Path, name: str, extra: list[str]) -> Path:
    """Run `python -m trainer` for real, its stdout and stderr into one log, as ftmon would."""
    pytest.importorskip("torch")
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        argv = [sys.executable, "-m", "trainer", *TRAINER, "--output-dir", str(tmp_path / name)]
        subprocess.run(
            [*argv, *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            check=True,
            timeout=300,
        )
    return log


@pytest.mark.slow
def test_reference_trainer_healthy_and_blown_up(tmp_path: Path) -> None:
    """A healthy tiny run raises nothing loud; lr 50 without clipping gives spike, nan, skips."""
    healthy = scan_in_process(
        train_log(tmp_path, "ok", ["--steps", "16", "--log-every", "2", "--eval-every", "8"])
    )
    assert [a.one_line() for a in healthy if a.severity >= Severity.WARNING] == []
    unstable = "--steps 10 --log-every 1 --sample-every 10 --lr 50 --optimizer sgd --clip 0"
    blown = scan_in_process(train_log(tmp_path, "blown", [*unstable.split(), "--warmup", "0"]))
    rules = {a.rule for a in blown}
    assert {"nan", "skipped_steps"} <= rules, [a.one_line() for a in blown]
    assert rules & {"spike", "grad_norm"}, [a.one_line() for a in blown]


def _paths_agree(path: Path) -> bool:
    """`Monitor()` (caches, gates) and `Monitor(reference=True)` report the same events on
    `path` read in small chunks: the parser's per-log memory included."""
    from supervisor.monitoring.monitor import Monitor
    from supervisor.reading.tail import iter_file_lines

    fast, slow = Monitor(), Monitor(reference=True)
    got_fast: list[str] = []
    got_slow: list[str] = []
    for lines in iter_file_lines(path, chunk=4096):
        got_fast += map(repr, fast.feed_lines(lines, 1.0))
        got_slow += map(repr, slow.feed_lines(lines, 1.0))
    return got_fast == got_slow


def test_held_out_fast_and_reference_paths_agree() -> None:
    """On every excerpt of the tuning halves, the fast and the reference path agree."""
    for half, row in HELD_ROWS:
        assert _paths_agree(HELD_OUT / half / row["file"]), f"{half}/{row['file']}"


# --- line numbers of a live log -----------------------------------------------------------

WRITER = """
import sys, time
out = open(sys.argv[1], "ab", buffering=0)
out.write(b"step 1 loss 2.5\\n")
for _ in range(3):  # a 1.5 MiB line in three writes, pausing longer than the reader waits
    out.write(b"x" * (512 * 1024))
    time.sleep(0.8)
out.write(b"\\nstep 2 loss nan\\nstep 3 loss 2.4\\n")
"""


def test_nan_after_a_long_line_written_in_chunks_has_its_file_line_number(tmp_path: Path) -> None:
    """A real writer pauses inside a 1.5 MiB line (the reader flushes the partial line each
    time); the NaN after it is reported at line 3 while following, as `scan` reports it."""
    import asyncio

    from supervisor.events import Anomaly
    from supervisor.monitoring.monitor import Monitor
    from supervisor.reading.tail import Tail, follow

    log = tmp_path / "long.log"
    log.touch()
    monitor = Monitor()
    found: list[Anomaly] = []

    async def run() -> None:
        stop = asyncio.Event()
        tail = Tail(log)

        def on_lines(lines: list) -> None:
            found.extend(e for e in monitor.feed_lines(lines, 1.0) if isinstance(e, Anomaly))

        reader = asyncio.create_task(follow(tail, on_lines, stop, idle_flush=0.3))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(log))
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        for _ in range(200):  # until the NaN line has been read (a guard, not a timing claim)
            if any(a.rule == "nan" for a in found):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await reader
        tail.close()

    asyncio.run(run())
    followed = [a.lineno for a in found if a.rule == "nan"]
    scanned = [a.lineno for a in scan_in_process(log) if a.rule == "nan"]
    assert followed == scanned == [3], (followed, scanned)

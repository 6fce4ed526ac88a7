"""How well does detection hold on real logs? Precision, recall and delay per label.

    python bench/corpus.py           # dev ... unseen3 (tuning halves); unseen4 (blind)
    python bench/corpus.py --files    # the tuning halves, every failing file listed
    python bench/corpus.py --dirs tests/corpus/dev ../shared/corpus --files

tests/corpus/unseen4 is the blind half: it prints aggregates only, never which file failed
(`--files` refuses it), so that tuning cannot look at it file by file (tests/corpus/README.md).
It is skipped, with a line on stderr, while it has no index yet. Whoever tunes rules runs
`--dirs` of the tuning halves only, so that the blind half is not scanned at all. dev/, test/,
holdout/, unseen/, unseen2/ and unseen3/ were all measured file by file and are tuning data.

Each half's summary is printed twice: over all its files, and over the files whose label can be
seen in their own lines, i.e. without the rows whose note starts `evidence outside the log:`
(the collector knows the label from the thread, not from the excerpt; how many were left out is
said on the second summary's line).

Each folder holds real excerpts and one or more index files `INDEX*.tsv` (`file, label,
framework, source, first_anomaly_line, note`, see tests/corpus/README.md; several collectors
each write their own, `INDEX.u3.tsv`, `INDEX.u4.tsv`). Every file is scanned in-process by the
real tailer and `Monitor()`, and scored as tests/integration/test_corpus.py scores it:

- a file labelled L (not normal) is found when an anomaly of a rule that maps to L lies within
  LATITUDE lines of `first_anomaly_line`;
- a scan says L about a file when it reports an anomaly of warning or above whose rule maps to L;
  it says `normal` when it reports nothing of warning or above.

Per label: recall = files of L found / files of L; precision = files of L found / files the scan
says L about (for `normal`: normal files it says normal about / files it says normal about);
delay = median lines from `first_anomaly_line` to the first matching report (negative: earlier).
Figures, not assertions: tests/integration/test_corpus.py holds the bounds.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from supervisor.events import Anomaly, Severity  # noqa: E402
from supervisor.monitoring.monitor import Monitor  # noqa: E402
from supervisor.reading.tail import Tail  # noqa: E402

LATITUDE = 3
CORPUS_DIR = ROOT / "tests" / "corpus"
# The halves of tests/corpus that rules are tuned on (each seen file by file), and the blind
# half: measured in aggregate only, never listed file by file.
TUNING = ("dev", "test", "holdout", "unseen", "unseen2", "unseen3")
BLIND = "unseen4"
# How a collector marks a row whose label no rule could see in the excerpt's own lines.
OUTSIDE_NOTE = "evidence outside the log:"
LABELS = ("nan", "oom", "repetition", "spike", "stall", "normal")
# Rule names -> the label a person would give. A grad-norm explosion, a diverging eval loss or a
# policy update's KL blowing up is
# a spike; a loss-scale cascade down to a tiny scale is the optimizer's view of non-finite
# gradients (rules/skipped.py); a job killed by its memory limit is an OOM.
LABEL_RULES: dict[str, frozenset[str]] = {
    "nan": frozenset({"nan", "skipped_steps"}),
    "oom": frozenset({"oom", "job_oom"}),
    "repetition": frozenset({"repetition"}),
    "spike": frozenset({"spike", "grad_norm", "divergence", "kl"}),
    "stall": frozenset({"stall"}),
}


@dataclass(frozen=True)
class Found:
    """One anomaly as the scorer needs it."""

    rule: str
    severity: Severity
    lineno: int


@dataclass(frozen=True)
class Scored:
    """One corpus file after its scan."""

    row: dict[str, str]
    found: tuple[Found, ...]

    @property
    def label(self) -> str:
        return self.row["label"]

    @property
    def evidence_outside(self) -> bool:
        """The collector says the label is not visible in the excerpt's own lines."""
        return self.row.get("note", "").strip().startswith(OUTSIDE_NOTE)

    def says(self) -> set[str]:
        """The labels the scan gives this file (`normal` when nothing is loud)."""
        loud = [f for f in self.found if f.severity >= Severity.WARNING]
        labels = {lab for lab, rules in LABEL_RULES.items() if any(f.rule in rules for f in loud)}
        return labels if loud else {"normal"}

    def hit_line(self) -> int | None:
        """The first report of the file's own label near its first anomalous line, if any."""
        if self.label == "normal":
            return None
        first = int(self.row["first_anomaly_line"])
        rules = LABEL_RULES[self.label]
        near = [
            f.lineno for f in self.found if f.rule in rules and abs(f.lineno - first) <= LATITUDE
        ]
        return min(near) if near else None

    def passes(self) -> bool:
        if self.label == "normal":
            return self.says() == {"normal"}
        return self.hit_line() is not None

    def problem(self) -> str:
        """'' when the file passes; otherwise what went wrong, for a test message."""
        shown = "; ".join(f"{f.rule}@{f.lineno}" for f in self.found) or "nothing"
        if self.passes():
            return ""
        if self.label == "normal":
            loud = [(f.rule, f.lineno) for f in self.found if f.severity >= Severity.WARNING]
            return f"normal file flagged: {loud}"
        return f"wanted {self.label} near line {self.row['first_anomaly_line']}, got {shown}"


def read_index(folder: Path) -> list[dict[str, str]]:
    """The rows of every `INDEX*.tsv` of `folder` (in name order); [] when there is none."""
    rows: list[dict[str, str]] = []
    for index in sorted(folder.glob("INDEX*.tsv")):
        with index.open(encoding="utf-8", newline="") as f:
            rows += csv.DictReader(f, delimiter="\t")
    return rows


def scan_in_process(path: Path) -> list[Anomaly]:
    """What the monitor reports over a whole file read by the real tailer."""
    tail = Tail(path)
    try:
        lines = tail.read() + tail.flush_partial()
    finally:
        tail.close()
    assert lines, f"{path}: no lines read"
    found = Monitor().feed_lines(lines, ts=1_700_000_000.0)
    return [e for e in found if isinstance(e, Anomaly)]


def score_file(folder: Path, row: dict[str, str]) -> Scored:
    found = tuple(
        Found(a.rule, a.severity, a.lineno) for a in scan_in_process(folder / row["file"])
    )
    return Scored(row, found)


def score_folder(folder: Path) -> list[Scored]:
    return [score_file(folder, row) for row in read_index(folder)]


@dataclass(frozen=True)
class LabelFigures:
    label: str
    files: int
    found: int
    said: int
    delays: tuple[int, ...]

    @property
    def recall(self) -> float:
        return self.found / self.files if self.files else float("nan")

    @property
    def precision(self) -> float:
        return self.found / self.said if self.said else float("nan")

    @property
    def median_delay(self) -> float:
        return statistics.median(self.delays) if self.delays else float("nan")


def figures(scored: Iterable[Scored]) -> dict[str, LabelFigures]:
    scored = list(scored)
    out: dict[str, LabelFigures] = {}
    for label in LABELS:
        mine = [s for s in scored if s.label == label]
        said = [s for s in scored if label in s.says()]
        found = [s for s in mine if s.passes()]
        delays = tuple(
            hit - int(s.row["first_anomaly_line"])
            for s in found
            if (hit := s.hit_line()) is not None
        )
        out[label] = LabelFigures(label, len(mine), len(found), len(said), delays)
    return out


def format_table(name: str, scored: list[Scored]) -> str:
    """The half's per-label figures over all its files, then without the files whose evidence
    is outside the log (their count said)."""
    inside = [s for s in scored if not s.evidence_outside]
    left_out = len(scored) - len(inside)
    return "\n".join(
        (
            _one_table(f"{name}, all files", scored),
            _one_table(f"{name}, without {left_out} file(s) with evidence outside the log", inside),
        )
    )


def _one_table(name: str, scored: list[Scored]) -> str:
    rows = [f"{name}: {sum(s.passes() for s in scored)}/{len(scored)} files right"]
    rows.append(
        f"  {'label':<11}{'files':>6}{'found':>7}{'said':>6}{'prec':>7}{'recall':>8}{'delay':>7}"
    )
    for fig in figures(scored).values():
        rows.append(
            f"  {fig.label:<11}{fig.files:>6}{fig.found:>7}{fig.said:>6}"
            f"{fig.precision:>7.2f}{fig.recall:>8.2f}{fig.median_delay:>7.1f}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dirs", nargs="+", type=Path, help="corpus folders (default: all halves)")
    ap.add_argument(
        "--files", action="store_true", help=f"list every file that fails (never for {BLIND}/)"
    )
    args = ap.parse_args(argv)
    halves = TUNING if args.files else (*TUNING, BLIND)
    dirs: list[Path] = args.dirs or [CORPUS_DIR / half for half in halves]
    if args.files and (blind := [d for d in dirs if d.resolve().name == BLIND]):
        print(
            f"{blind[0]}: --files refused: {BLIND}/ is the blind half, measured in aggregate only",
            file=sys.stderr,
        )
        return 2
    for folder in dirs:
        rows = read_index(folder)
        if not rows and folder.resolve().name == BLIND:
            print(f"{folder}: no INDEX*.tsv yet, skipped", file=sys.stderr)
            continue
        if not rows:
            print(f"{folder}: no INDEX*.tsv", file=sys.stderr)
            return 2
        scored = [score_file(folder, row) for row in rows]
        print(format_table(str(folder), scored))
        if args.files:
            for s in scored:
                if problem := s.problem():
                    print(f"    {s.row['file']}: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

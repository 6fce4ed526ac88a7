"""reading/identity.py: a log that shrank or whose head changed is read again from the start."""

from __future__ import annotations

from pathlib import Path

from supervisor.reading.identity import HEAD_BYTES, HeadTracker, check_resume, head_of


def test_an_unchanged_grown_log_reads_on_from_the_stored_offset(tmp_path: Path) -> None:
    """Same first bytes, longer file: resume where reading stopped, saying nothing."""
    log = tmp_path / "out.log"
    log.write_bytes(b"line 1\nline 2\n")
    head = head_of(log)
    log.write_bytes(b"line 1\nline 2\nline 3\n")
    resume = check_resume(log, 14, 2, head)
    assert (resume.offset, resume.lineno, resume.restarted) == (14, 2, False)


def test_a_log_shorter_than_the_stored_offset_is_read_from_the_start(tmp_path: Path) -> None:
    """Truncated below where reading stopped: from 0, and the reason names the sizes."""
    log = tmp_path / "out.log"
    log.write_bytes(b"short\n")
    resume = check_resume(log, 500, 40, None)
    assert (resume.offset, resume.lineno) == (0, 0)
    assert "shorter (6 bytes) than where reading stopped (500 bytes)" in resume.reason


def test_a_log_whose_head_changed_is_read_from_the_start(tmp_path: Path) -> None:
    """Truncated and grown past the stored offset: the head differs, so from 0."""
    log = tmp_path / "out.log"
    log.write_bytes(b"step 1\nstep 2\n")
    head = head_of(log)
    log.write_bytes(b"step 3\nstep 4\nstep 5\nstep 6\n")
    resume = check_resume(log, 14, 2, head)
    assert (resume.offset, resume.lineno) == (0, 0)
    assert "changed while no ftmon watched" in resume.reason


def test_the_head_tracker_grows_the_head_up_to_its_bound_then_stops(tmp_path: Path) -> None:
    """The stored head covers what was read, up to HEAD_BYTES; afterwards nothing to store."""
    log = tmp_path / "out.log"
    log.write_bytes(b"x" * (HEAD_BYTES * 2))
    tracker = HeadTracker(log)
    first = tracker.advance(100)
    assert first is not None and first.length == 100
    assert tracker.advance(100) is None
    full = tracker.advance(HEAD_BYTES + 10)
    assert full is not None and full.length == HEAD_BYTES
    assert tracker.advance(HEAD_BYTES * 2) is None
    assert check_resume(log, HEAD_BYTES * 2, 0, full).restarted is False

"""`ftmon report RUN | SWEEP [-o DIR] [--html] [--sort METRIC]`: a Markdown report with PNG plots
beside it (or one self-contained HTML page), made from the history database alone, so it can be
written for any past run. See supervisor/report/document.py for what it holds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from supervisor.cli.main import EXIT_OK, EXIT_USAGE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="a Markdown (or --html) report of a run or a sweep, with plots"
    )
    p.add_argument("ref", metavar="RUN|SWEEP", help="a run id (prefix, `last`) or a sweep id")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder to write into (default: reports/<id>)",
    )
    p.add_argument("--html", action="store_true", help="one self-contained HTML page")
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    p.add_argument("--sort", default="", metavar="METRIC", help="order a sweep's table by METRIC")
    p.add_argument("--logs-dir", type=Path, default=None, help="(default: $FTMON_HOME or logs)")
    p.set_defaults(func=report_cmd)


def report_cmd(args: argparse.Namespace) -> int:
    import importlib.util
    import tempfile

    from supervisor.cli.compare import open_history
    from supervisor.report.compare import compare_sweep, sort_names
    from supervisor.report.document import Image, run_report, sweep_report
    from supervisor.report.render import to_html, to_markdown
    from supervisor.store.history import HistoryError

    history = open_history(args)
    if history is None:
        return EXIT_USAGE
    try:
        if history.sweep(args.ref) is not None:
            if args.sort and args.sort not in sort_names(compare_sweep(history, args.ref)):
                raise KeyError(f"--sort {args.sort}: no such column (see `ftmon compare --help`)")
            report = sweep_report(history, args.ref, args.sort)
        elif args.ref.startswith("sweep-"):  # run ids start with a digit
            raise KeyError(history.why_no_sweep(args.ref))
        else:
            report = run_report(history, args.ref)
    except (HistoryError, KeyError) as exc:
        print(f"ftmon: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        history.close()
    want_plots = not args.no_plots and bool(report.plots)
    if want_plots and importlib.util.find_spec("matplotlib") is None:  # before any file is made
        print(
            "ftmon: plots need matplotlib: pip install 'ftmon[report]' (or --no-plots)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    out = args.out if args.out is not None else Path("reports") / report.slug
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"ftmon: cannot write the report into {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.html:  # the PNGs go inside the page; no loose files beside it
            with tempfile.TemporaryDirectory() as tmp:
                page = to_html(report, _draw(report, Path(tmp)) if want_plots else {})
            path = out / f"{report.slug}.html"
            path.write_text(page, encoding="utf-8")
            images: dict[str, Path] = {}
        else:
            images = _draw(report, out) if want_plots else {}
            if not images:
                report.blocks = [b for b in report.blocks if not isinstance(b, Image)]
            path = out / f"{report.slug}.md"
            path.write_text(to_markdown(report), encoding="utf-8")
    except PlotsUnavailable as exc:
        print(f"ftmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(path)
    for png in images.values():
        print(png)
    return EXIT_OK


class PlotsUnavailable(Exception):
    """matplotlib is missing (raised by _draw, so this module need not import plots.py)."""


def _draw(report: object, folder: Path) -> dict[str, Path]:
    from supervisor.report import plots  # matplotlib is imported in here, and only here

    try:
        return plots.draw(report.plots, folder)  # type: ignore[attr-defined]
    except plots.PlotsUnavailable as exc:
        raise PlotsUnavailable(str(exc)) from exc

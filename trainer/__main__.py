"""`python -m trainer ...`: parse the flags first (fast `--help`), then load torch and train."""

from __future__ import annotations

import sys

from trainer.cli import parse_args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trainer.train import run  # torch, transformers and peft load only from here on

    return run(args)


if __name__ == "__main__":
    sys.exit(main())

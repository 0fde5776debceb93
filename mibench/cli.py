"""The ``mibench`` command: thin argparse over the library (list, run, report, figures)."""

from __future__ import annotations

import argparse
import logging
import sys

from .interface import ConfigError


def _first_line(obj) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def cmd_list(args: argparse.Namespace) -> int:
    from .bounds import BOUNDS
    from .distributions import TASK_FAMILIES
    from .nets import CRITICS, ENCODERS
    from .presets import list_presets

    print("Task families (truth in nats):")
    for name, fam in TASK_FAMILIES.items():
        print(f"  {name:22s} {fam.truth}")
        print(f"  {'':22s} {fam.summary}")
    print("\nPresets (mibench run --task NAME):")
    for preset in list_presets():
        print(f"  {preset.name:22s} {preset.describe()}")
    print("\nBounds:")
    for name, cls in BOUNDS.items():
        print(f"  {name:14s} {cls.kind:8s} {_first_line(cls)}")
    print("\nCritics (discriminative bounds; generative bounds learn a conditional Gaussian q(y|x)):")
    for name, cls in CRITICS.items():
        print(f"  {name:14s} {_first_line(cls)}")
    print("\nEncoders:")
    for name, fn in ENCODERS.items():
        print(f"  {name:14s} {_first_line(fn)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mibench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="task families, presets, bounds, critics, encoders").set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mibench: interrupted; finished runs are saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

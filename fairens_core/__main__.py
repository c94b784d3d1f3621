"""Command line: `python -m fairens_core train ...` and `python -m fairens_core book ...`."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys

from .config import TrainConfig


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def train_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairens_core train",
                                     description="Train an ensemble (or load it from the cache) and print its record path.")
    parser.add_argument("--config", help="JSON file with TrainConfig fields; flags override it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for f in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_literal, default=None,
                            help=f"default: {f.default if f.default is not dataclasses.MISSING else '{}'}")
    args = parser.parse_args(argv)
    values = json.loads(open(args.config).read()) if args.config else {}
    values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                   if getattr(args, f.name) is not None})
    try:
        config = TrainConfig.from_dict(values).validate()
    except ValueError as err:
        parser.error(str(err))
    from .records import run

    record = run(config, quiet=args.quiet)
    acc = record.member_accuracy()
    print(f"members: {record.members}  member accuracy: {acc.mean():.4f} ± {acc.std():.4f}  "
          f"ensemble accuracy: {record.ensemble_accuracy():.4f}  ({record.meta['wall_time_s']:.1f} s when trained)")
    print(f"record: {record.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"train": train_main}
    try:
        from .book import main as book_main

        commands["book"] = book_main
    except ImportError:
        pass
    if not argv or argv[0] not in commands:
        print(f"usage: python -m fairens_core {{{','.join(commands)}}} [options]  (-h for help)")
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())

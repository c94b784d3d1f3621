"""Command line: `python -m fairens_core {train,book,plan,pack} ...`.

    train   one run from flags / a JSON config, or every run of a plan (--plan)
    book    execute the chapters and build the HTML book
    plan    execute chapters with placeholder records: the runs they need and their cost
    pack    copy a plan's records into a folder of compact records ($FAIRENS_RECORDS)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .book import chapters, find_root, parse_value, run_chapter, select
from .book import main as book_main
from .config import NOT_IN_KEY, SPECS, TrainConfig
from .data import DatasetNotFoundError
from .derived import derived_names
from .plan import describe, read_plan
from .profiles import PROFILES
from .records import find_record
from .runner import run
from .schema import Spec

POSITIVE_SECONDS = Spec("float", low=0, low_open=True)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2 (argparse's own
    message starts with a usage block that, with one flag per config field, buries the error)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def flag_type(name: str, spec: Spec):
    """An argparse `type` that parses and checks a flag's text with the parameter's spec."""
    def parse(text: str):
        try:
            return spec.check(name, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = name  # argparse names the type in some of its messages
    return parse


def read_config_file(parser: argparse.ArgumentParser, path: str) -> dict:
    """The fields of a JSON config file; a file that cannot be read or parsed is a parser error."""
    try:
        with open(path) as file:
            values = json.load(file)
    except OSError as err:
        parser.error(f"--config={path!r}: cannot read it ({err.strerror or err})")
    except (ValueError, UnicodeDecodeError) as err:
        parser.error(f"--config={path!r}: not a JSON file ({err})")
    if not isinstance(values, dict):
        parser.error(f"--config={path!r}: must hold a JSON object of TrainConfig fields, not {type(values).__name__}")
    return values


def read_plan_or_exit(parser: argparse.ArgumentParser, path) -> list[dict]:
    """The entries of a plan file; a missing or unreadable one is a parser error."""
    if not Path(path).is_file():
        parser.error(f"--plan={str(path)!r}: no such file; write one with `python -m fairens_core plan`")
    try:
        return read_plan(path)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        parser.error(f"--plan={str(path)!r}: not a plan file ({err})")


def train_main(argv: list[str]) -> int:
    parser = Parser(prog="python -m fairens_core train",
                    description="Train an ensemble (or load it from the cache) and print its record path.")
    parser.add_argument("--config", help="JSON file with TrainConfig fields; flags override it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--plan", help="train every run of this plan file (python -m fairens_core plan); "
                                       "flags may then only set execution fields such as --device")
    parser.add_argument("--summary", help="with --plan: write one JSON line per run here (wall time, accuracy)")
    parser.add_argument("--budget-s", type=flag_type("--budget-s", POSITIVE_SECONDS), default=None,
                        help="with --plan: skip a run unless it is predicted (from the FLOP/s of the runs "
                             "trained so far) to finish within this many seconds of the start")
    for f in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=flag_type(f.name, SPECS[f.name]),
                            default=None,
                            help=f"default: {f.default if f.default is not dataclasses.MISSING else '{}'}")
    args = parser.parse_args(argv)
    if args.plan:
        return train_plan(parser, args)
    values = read_config_file(parser, args.config) if args.config else {}
    values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                   if getattr(args, f.name) is not None})
    try:
        config = TrainConfig.from_dict(values).validate()
        # errors that need the dataset (a missing file, batch_size above its size) come before training
        record = run(config, quiet=args.quiet)
    except (ValueError, DatasetNotFoundError) as err:
        parser.error(str(err))
    acc = record.member_accuracy()
    print(f"members: {record.members}  member accuracy: {acc.mean():.4f} ± {acc.std():.4f}  "
          f"ensemble accuracy: {record.ensemble_accuracy():.4f}  ({record.meta['wall_time_s']:.1f} s when trained)")
    print(f"record: {record.path}")
    return 0


def train_plan(parser: argparse.ArgumentParser, args) -> int:
    """Train (or find in the cache) every run of a plan; a failing run is reported, the rest go on."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None}
    if set(flags) - set(NOT_IN_KEY):
        parser.error(f"with --plan, flags may only set execution fields {list(NOT_IN_KEY)}; "
                     f"got {sorted(set(flags) - set(NOT_IN_KEY))}")
    entries = read_plan_or_exit(parser, args.plan)
    try:
        configs = [TrainConfig.from_dict(e["config"]).replace(**flags).validate() for e in entries]
    except (KeyError, TypeError):
        parser.error(f"--plan={args.plan!r}: every line must be a JSON object whose 'config' holds TrainConfig fields")
    except ValueError as err:
        parser.error(f"--plan={args.plan!r}: {err}")
    failed, skipped, begin, trained_flops, trained_s = [], [], time.perf_counter(), 0, 0.0
    for i, (entry, config) in enumerate(zip(entries, configs), 1):
        started = time.perf_counter()
        cached = find_record(config.key()) is not None
        if args.budget_s and trained_s and not cached:  # predict this run's time from the runs so far
            predicted, left = entry["train_flops"] * trained_s / trained_flops, args.budget_s - (started - begin)
            if predicted > left:
                skipped.append(config.key())
                print(f"[{i}/{len(configs)}] {config.key()} skipped: ~{predicted:.0f} s predicted, {left:.0f} s left")
                continue
        try:
            record = run(config, quiet=args.quiet)
        except Exception as err:  # noqa: BLE001 - report it, train the others; a rerun resumes
            failed.append(config.key())
            print(f"[{i}/{len(configs)}] {config.key()} FAILED: {type(err).__name__}: {err}", flush=True)
            continue
        seconds = time.perf_counter() - started
        if not cached:
            trained_flops, trained_s = trained_flops + entry["train_flops"], trained_s + seconds
        line = {"key": config.key(), "chapter": entry.get("chapter", ""), "model": config.model,
                "width": config.width, "members": config.members, "epochs": config.epochs, "cached": cached,
                "seconds": round(seconds, 2),
                "tflops_per_s": None if cached else round(entry["train_flops"] / seconds / 1e12, 3),
                "device": record.meta.get("device_name")}
        if record.meta.get("task") == "classification":
            line.update(member_accuracy=round(record.member_accuracy().mean().item(), 4),
                        ensemble_accuracy=round(record.ensemble_accuracy(), 4))
        print(f"[{i}/{len(configs)}] " + "  ".join(f"{k}={v}" for k, v in line.items()), flush=True)
        if args.summary:
            with open(args.summary, "a") as f:
                f.write(json.dumps(line) + "\n")
    print(f"{len(configs) - len(failed) - len(skipped)} of {len(configs)} runs done"
          + (f"; FAILED: {failed}" if failed else "") + (f"; skipped (budget): {skipped}" if skipped else ""))
    return 1 if failed else 0


def planning_prelude(plan: Path, chapter: str) -> str:
    """The first cell of a chapter executed for planning: its `run` calls go to a Planner."""
    return ("from fairens_core.plan import Planner\n"
            "from fairens_core.runner import instead_of_training\n"
            f"instead_of_training(Planner({str(plan)!r}, {chapter!r}))")


def plan_main(argv=None) -> int:
    """`python -m fairens_core plan`: execute chapters while planning; print the runs they need."""
    p = Parser(prog="python -m fairens_core plan", description=(
        "Execute chapters with placeholder records (no training) and list the runs they need, "
        "with their cost. Train them with `python -m fairens_core train --plan PLAN`."))
    p.add_argument("--profile", default="full", choices=PROFILES, help="profile to plan (default: full)")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="default: every chapter in _toc.yml")
    p.add_argument("--plan", type=Path, default=Path("plan.jsonl"), help="plan file to write (appended to)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("--book-root", type=Path, default=None)
    p.add_argument("--flops-per-second", type=flag_type("--flops-per-second", POSITIVE_SECONDS), default=None,
                   help="achieved training FLOP/s of the target machine, for a time estimate")
    args = p.parse_args(argv)
    try:
        root = (args.book_root or find_root()).resolve()
        every = chapters(root)
        todo = select(every, args.chapters, root) if args.chapters else every
    except OSError as err:
        p.error(f"--book-root={str(args.book_root)!r}: {err}")
    except SystemExit as stop:  # select() exits with a message naming the unknown chapter
        p.error(f"--chapters={args.chapters!r}: {stop.code}")
    earlier = len(read_plan_or_exit(p, args.plan)) if args.plan.exists() else 0  # unreadable: fail now
    params = {"profile": args.profile, **{k: parse_value(v) for k, v in args.parameter}}
    failed = []
    with tempfile.TemporaryDirectory(prefix="fairens-plan-") as tmp:
        for path in todo:
            before = len(read_plan(args.plan)) if args.plan.exists() else 0
            error = run_chapter(path, params, output=Path(tmp) / path.name,
                                prelude=planning_prelude(args.plan.resolve(), path.stem))
            after = len(read_plan(args.plan)) if args.plan.exists() else 0
            status = f"ok, {after - before} runs added to the plan" if error is None else "FAILED"
            print(f"{path.relative_to(root).with_suffix('').as_posix()}: {status}", flush=True)
            if error is not None:
                failed.append(path.stem)
                print("    " + error.replace("\n", "\n    "), flush=True)
    if args.plan.exists():
        print(describe(read_plan(args.plan), args.flops_per_second))
    if earlier:
        print(f"(the table lists all of {args.plan}: {earlier} of its runs were there before this call; delete the "
              "file, or name another with --plan, to plan these chapters alone)")
    return 1 if failed else 0


def pack_main(argv=None) -> int:
    """`python -m fairens_core pack`: copy a plan's records into a folder of compact records."""
    p = Parser(prog="python -m fairens_core pack", description=(
        "Copy the records of a plan from the cache into OUT as compact records (float16 predictions; "
        "final weights only with --keep-weights). Point $FAIRENS_RECORDS at OUT to read them."))
    p.add_argument("--plan", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--keep-weights", action="store_true", help="keep every member's final weights")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="only the runs planned for these chapters")
    args = p.parse_args(argv)
    entries = [e for e in read_plan_or_exit(p, args.plan) if not args.chapters or e.get("chapter") in args.chapters]
    missing, size = [], 0
    for entry in entries:
        record = find_record(entry["key"])
        if record is None:
            missing.append(entry["key"])
            continue
        if not args.keep_weights:
            record.weights = None
            record.meta["weights_dropped"] = True
        path = record.save(args.out)
        size += path.stat().st_size + path.with_suffix(".json").stat().st_size
        for result in derived_names(entry["key"]):  # evaluations of the weights travel without them
            (args.out / "derived").mkdir(exist_ok=True)
            size += shutil.copy2(result, args.out / "derived" / result.name).stat().st_size
    n = len(entries) - len(missing)
    print(f"{n} records in {args.out} ({size / 2**20:.1f} MiB)")
    if missing:
        print(f"not in the cache (train them first): {', '.join(missing)}")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"train": train_main, "book": book_main, "plan": plan_main, "pack": pack_main}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m fairens_core {{{','.join(commands)}}} [options]  (-h for help)")
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())

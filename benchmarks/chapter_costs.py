"""What each chapter's default run costs on a CPU: training (from its records) and analysis.

    python benchmarks/chapter_costs.py --rebuild benchmarks/book_rebuild_<date>.json
                                       [--chapters NAME ...] [--json benchmarks/chapter_costs.json]

Training: every run a chapter needs with its default parameters, found by planning the chapter
alone (`python -m fairens_core plan --profile default --chapters NAME`, one plan per chapter),
timed by the measured wall time stored in its record (or, for a run not in the cache, the plan's
estimate from this CPU's speed, counted apart). A run two chapters share is counted in both: each
figure is what that chapter costs alone, from an empty cache. Analysis: the chapter's
re-execution time with every record cached, from a `book_rebuild.py` JSON. The JSON written here
is what each chapter's "Re-run this chapter" box quotes (`fairens_core.rerun_box`); each chapter's
entry carries the date it was measured, as a refresh of some chapters keeps the others' figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from fairens_core.book import chapters, find_root
from fairens_core.plan import entry_seconds, read_plan


def chapter_costs(entries: list[dict], rebuild: dict) -> dict:
    """{chapter: runs, train_seconds (measured), estimated_seconds, analysis_seconds} from plan
    entries and a `book_rebuild.py` result."""
    analysis = {row["chapter"]: row["seconds"] for row in rebuild["chapters"] if row["ok"]}
    costs: dict[str, dict] = {}
    for entry in entries:
        cost = costs.setdefault(entry["chapter"], {"runs": 0, "train_seconds": 0.0, "estimated_seconds": 0.0})
        seconds, how = entry_seconds(entry)
        cost["runs"] += 1
        cost["train_seconds" if how == "cached" else "estimated_seconds"] += seconds or 0.0
    for chapter in analysis.keys() | costs.keys():
        cost = costs.setdefault(chapter, {"runs": 0, "train_seconds": 0.0, "estimated_seconds": 0.0})
        cost["train_seconds"] = round(cost["train_seconds"], 1)
        cost["estimated_seconds"] = round(cost["estimated_seconds"], 1)
        cost["analysis_seconds"] = analysis.get(chapter)
    return dict(sorted(costs.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rebuild", type=Path, required=True, help="a book_rebuild.py JSON (warm re-execution times)")
    p.add_argument("--chapters", nargs="+", metavar="NAME",
                   help="default: every chapter in _toc.yml; with NAMEs, the others keep their figures in --json")
    p.add_argument("--json", type=Path, default=Path("benchmarks/chapter_costs.json"), help="write the figures here")
    args = p.parse_args(argv)
    names = args.chapters or [path.stem for path in chapters(find_root())]
    entries = []
    with tempfile.TemporaryDirectory(prefix="fairens-costs-") as tmp:
        for name in names:  # one plan per chapter: a plan lists a run once, under the first chapter needing it
            plan = Path(tmp) / f"{name}.jsonl"
            subprocess.run([sys.executable, "-m", "fairens_core", "plan", "--profile", "default", "--chapters", name,
                            "--plan", str(plan)], check=True, stdout=subprocess.DEVNULL)
            entries += read_plan(plan) if plan.exists() else []
    costs = chapter_costs(entries, json.loads(args.rebuild.read_text()))
    for cost in costs.values():
        cost["date"] = date.today().isoformat()
    if args.chapters and args.json.exists():  # refresh only these chapters of an earlier measurement
        earlier = json.loads(args.json.read_text())
        kept = {name: {"date": earlier["date"], **cost} for name, cost in earlier["chapters"].items()}
        costs = dict(sorted({**kept, **{name: costs[name] for name in names}}.items()))
    for chapter, c in costs.items():
        estimated = f" (+{c['estimated_seconds']:.0f} s estimated)" if c["estimated_seconds"] else ""
        print(f"{chapter:<24} {c['runs']:>3} runs  training {c['train_seconds'] / 60:6.1f} min{estimated}"
              f"  analysis {c['analysis_seconds']} s")
    args.json.write_text(json.dumps({
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "chapters": costs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

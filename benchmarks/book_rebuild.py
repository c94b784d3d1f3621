"""Wall time of re-executing the book's chapters with a warm record cache (analysis, not training).

    python benchmarks/book_rebuild.py [--chapters NAME ...] [--jobs N] [--warm-up] [--json out.json]

Each chapter is executed with papermill exactly as `python -m fairens_core book` executes it
(`--jobs` chapters side by side, each kernel with CPUs / jobs threads, as `book --jobs` does), into a temporary
folder (the committed notebooks are not touched), and timed; a table of seconds per chapter, their
sum and the wall time of the whole rebuild are printed, and written as JSON with the command, the
machine and the thread count.
With `--warm-up`, every chapter is executed once untimed first, so that the records it needs are in
the cache (`$FAIRENS_CACHE`, default ~/.cache/fairens) and the timed pass trains nothing. A chapter
whose timed pass trained anyway would show in its time; the JSON lists each chapter's status.

Not a test: the target (the whole default book in 90 s on 2 cores with a warm cache) is measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from fairens_core.book import ChapterTask, chapters, execute_tasks, find_root, run_chapter, select


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="default: every chapter in _toc.yml")
    p.add_argument("--jobs", type=int, default=1, help="chapters side by side (default 1)")
    p.add_argument("--warm-up", action="store_true", help="execute every chapter once untimed first")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)
    root = find_root()
    todo = select(chapters(root), args.chapters, root) if args.chapters else chapters(root)
    jobs = max(1, min(args.jobs, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="fairens-rebuild-") as tmp:
        if args.warm_up:
            for path in todo:
                run_chapter(path, {}, output=Path(tmp) / f"warm-{path.name}")
        tasks = [ChapterTask(path, Path(tmp) / path.name, {}, "python3", Path(tmp) / "failed", None, threads)
                 for path in todo]
        t0 = time.perf_counter()
        for path, (error, seconds) in zip(todo, execute_tasks(tasks, jobs)):
            rows.append({"chapter": path.stem, "seconds": round(seconds, 1), "ok": error is None})
            print(f"{path.stem:<24} {seconds:7.1f} s{'' if error is None else '  FAILED'}", flush=True)
        wall = time.perf_counter() - t0
    total = sum(r["seconds"] for r in rows)
    print(f"{'sum over chapters':<24} {total:7.1f} s")
    print(f"{'wall time':<24} {wall:7.1f} s  ({len(rows)} chapters, {jobs} at a time, "
          f"{threads or torch.get_num_threads()} thread(s) each, {os.cpu_count()} CPUs)")
    if args.json:
        args.json.write_text(json.dumps({
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "jobs": jobs,
            "threads_per_chapter": threads or torch.get_num_threads(), "wall_seconds": round(wall, 1),
            "sum_seconds": round(total, 1), "chapters": rows}, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

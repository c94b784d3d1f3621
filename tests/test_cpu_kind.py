"""nbval re-executes and compares a chapter only on the kind of CPU that executed it (tests/conftest.py); every
chapter says which kind that was, and the analysis of shipped records gives the same bits on any x86 CPU."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from fairens_core.machine import cpu_signature
from fairens_core.records import softmax_on_any_cpu

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_the_signature_names_the_cpu_the_kernels_and_the_threads():
    signature = cpu_signature()
    assert re.search(r"; torch \S+, \S+ kernels, \d+ threads?$", signature), signature
    assert signature == cpu_signature()  # stable within a machine
    assert cpu_signature(1).endswith(", 1 thread") and cpu_signature(3).endswith(", 3 threads")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_notebook_records_the_cpu_it_was_executed_on(path):
    metadata = json.loads(path.read_text(encoding="utf-8"))["metadata"]
    assert metadata.get("fairens", {}).get("executed_on"), \
        "execute it with `python -m fairens_core book --update-notebooks` (or --full), which records the CPU"


def _nbval(tmp_path, executed_on: str, failing_cell: bool = False) -> subprocess.CompletedProcess:
    """nbval, with the book's conftest, on a notebook whose one checked cell has a wrong stored output
    (and, with ``failing_cell``, a second cell that raises)."""
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["fairens"] = {"executed_on": executed_on}
    cell = nbformat.v4.new_code_cell("print(1 + 1)", metadata={"tags": ["nbval-check-output"]})
    cell.outputs, cell.execution_count = [nbformat.v4.new_output("stream", name="stdout", text="3\n")], 1
    nb.cells = [cell, nbformat.v4.new_code_cell("raise RuntimeError('a cell that fails')" if failing_cell else "pass")]
    nbformat.write(nb, str(tmp_path / "chapter.ipynb"))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", "chapter.ipynb"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_outputs_are_compared_on_the_kind_of_cpu_that_executed_the_chapter(tmp_path):
    run = _nbval(tmp_path, cpu_signature())
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout[-2000:]


@pytest.mark.slow
def test_a_chapter_executed_on_another_kind_is_skipped_and_the_summary_says_so(tmp_path):
    elsewhere = "x86_64 GenuineIntel family 6 model 85; torch 2.14.1, AVX2 kernels"
    run = _nbval(tmp_path, elsewhere, failing_cell=True)
    assert run.returncode == 0 and "2 skipped" in run.stdout, run.stdout[-2000:]
    assert "chapters not re-executed" in run.stdout and f"chapter.ipynb: executed on {elsewhere}" in run.stdout
    assert f"this machine: {cpu_signature()}" in run.stdout


# Analysis of shipped records (the full pages) must not depend on the CPU: probabilities, subset averages and
# the accuracies of Kondratyuk et al.'s two aggregations, from float16 logits with many ties, hashed bit for bit.
ANALYSIS = """
import hashlib, torch
from fairens_core.analysis.efficiency import accuracy_by_size
from fairens_core.metrics.ensemble_size import drawn_subsets, subset_means
from fairens_core.records import softmax_on_any_cpu
g = torch.Generator().manual_seed(0)
logits = (torch.randn(8, 3001, 13, generator=g) * 3).half().float()  # sizes that leave vector tails
y = torch.randint(0, 13, (3001,), generator=g)
probs = softmax_on_any_cpu(logits)
_, subsets = drawn_subsets(8, [3, 5], draws=20, seed=0)
table = accuracy_by_size(probs, y, draws=30)
digest = hashlib.sha256(probs.numpy().tobytes())
for chosen in subsets:
    digest.update(subset_means(probs, chosen).numpy().tobytes())
digest.update(table.to_csv().encode())
print(digest.hexdigest())
"""


def _analysis_digest(**env) -> str:
    run = subprocess.run([sys.executable, "-c", ANALYSIS], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env}, check=True)
    return run.stdout.strip()


@pytest.mark.slow
def test_record_analysis_is_the_same_with_other_vector_kernels_and_thread_counts():
    reference = _analysis_digest()
    # AVX2 kernels on an AVX-512 CPU (the same on an AVX2 CPU). Torch's scalar exp (ATEN_CPU_CAPABILITY=default)
    # is another function and may differ, as may other architectures' (ARM) kernels.
    assert _analysis_digest(ATEN_CPU_CAPABILITY="avx2") == reference
    assert _analysis_digest(OMP_NUM_THREADS="1") == reference


def test_softmax_on_any_cpu_is_a_softmax():
    logits = torch.randn(3, 50, 7, dtype=torch.float32) * 5
    probs = softmax_on_any_cpu(logits)
    assert probs.dtype == torch.float32 and probs.shape == logits.shape
    assert torch.allclose(probs, logits.softmax(-1), atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 50))

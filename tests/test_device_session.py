"""benchmarks/device_session.sh, the one GPU call, stays runnable: a smoke run on the CPU; and its
`python -m fairens_core train` runs without the packages the GPU machine lacks."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fairens_core import TrainConfig, run
from fairens_core.plan import Planner
from fairens_core.runner import instead_of_training
from fairens_core.records import find_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_session_benchmarks_trains_the_plan_and_returns_the_records(tmp_path, monkeypatch):
    plan, out = tmp_path / "plan.jsonl", tmp_path / "out"
    cfg = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 500}, model="cnn1d", width=0.25,
                      members=2, epochs=1, warmup_epochs=0.5, device="cpu")
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "plan-cache"))
    instead_of_training(Planner(plan))
    run(cfg)  # planned, not trained
    instead_of_training(None)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OUT": str(out),
           "PLAN": str(plan), "PACKED": str(tmp_path / "packed"), "FAIRENS_CACHE": str(tmp_path / "cache"),
           "CHECK_ARGS": "--smoke --sections check --check-models mlp",
           "BENCH_ARGS": "--smoke --sections packed", "BUDGET_S": "60"}
    done = subprocess.run(["bash", "benchmarks/device_session.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    log = (out / "session.log").read_text()
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.index("[check]") < log.index("[packed]") < log.index("1 of 1 runs done")  # check first
    assert (out / "gpu_check.json").exists() and (out / "gpu_speed.json").exists()
    parts = sorted(out.glob("records.tar.part-*"))
    assert parts
    unpacked = tmp_path / "records"
    unpacked.mkdir()
    with open(tmp_path / "records.tar", "wb") as f:
        f.write(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "records.tar") as tar:
        tar.extractall(unpacked, filter="data")
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("FAIRENS_RECORDS", str(unpacked))
    assert find_record(cfg.key()) is not None


def test_train_runs_without_notebook_packages(tmp_path):
    """The GPU machine lacks altair, ray, ipywidgets and the notebook packages: `python -m fairens_core
    train` must not import them (mnist1d stays importable here: it is this test's data)."""
    args = ["train", "--dataset", "mnist1d", "--dataset-options", '{"n_samples": 300}', "--model", "mlp",
            "--width", "0.25", "--members", "2", "--epochs", "1", "--warmup-epochs", "0.5", "--device", "cpu",
            "--quiet"]
    code = ("import runpy, sys\n"
            "for name in ('altair', 'ray', 'ipywidgets', 'papermill', 'nbformat', 'yaml'):\n    sys.modules[name] = None\n"
            f"sys.argv = ['fairens_core'] + {args!r}\n"
            "runpy.run_module('fairens_core', run_name='__main__', alter_sys=True)\n")
    env = {**os.environ, "FAIRENS_CACHE": str(tmp_path / "cache")}
    env.pop("FAIRENS_RECORDS", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((tmp_path / "cache").rglob("*")), "no record written"

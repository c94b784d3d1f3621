"""benchmarks/gpu_speed.py stays runnable: its --smoke mode exercises every section on the CPU."""

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from fairens_core import TrainConfig
from fairens_core.data import Dataset
from fairens_core.models import MODELS
from fairens_core.profiles import chapter_settings
from fairens_core.records import find_record
from fairens_core.train import narrow_pointwise_convolutions

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_speed.py"
# not installed on the GPU machine, or notebook-only: the benchmark must run without them
BLOCKED = ("altair", "ray", "ipywidgets", "papermill", "mnist1d", "airbench")


@pytest.fixture(scope="module")
def gpu_speed():
    spec = importlib.util.spec_from_file_location("gpu_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_mode_fills_every_speed_section(gpu_speed, tmp_path, monkeypatch):
    """Every section but check (run by the next test, in a subprocess) on generated data."""
    monkeypatch.delenv("FAIRENS_CACHE", raising=False)
    out = tmp_path / "gpu_speed.json"
    sections = [s for s in gpu_speed.SECTIONS if s != "check"]
    results = gpu_speed.main(["--smoke", "--sections", ",".join(sections), "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["smoke"] is True and saved["recipe"]["model"] == "fastcnn"
    assert list(saved["sections"]) == sections
    s = saved["sections"]
    assert all(sec["status"] in ("ok", "skipped") for sec in s.values()), s
    assert s["airbench"]["status"] == "skipped" and "CUDA" in s["airbench"]["reason"]

    assert [r["members"] for r in s["profile"]["rows"]] == [1, 2]
    for row in s["profile"]["rows"]:
        assert row["top_kernels"] and row["top_host_ops"] and 0 <= row["device_idle_share"] <= 1
        assert row["host_gap_s"] == pytest.approx(row["profiled_step_s"] - row["device_busy_s"])  # CPU rule

    for execution in ("packed", "vectorized"):
        sec = s[execution]
        assert sec["status"] == "ok" and sec["execution"] == execution and sec["channels_last"] is True
        assert [r["members"] for r in sec["rows"]] == [2, 1]  # the largest first
        for row in sec["rows"]:
            assert row["whole_run"] and row["step_s"] > 0 and row["mfu"] > 0 and row["per_member_s"] > 0
            assert 0 <= row["member_acc_mean"] <= 1 and 0 <= row["ensemble_acc"] <= 1

    loop = s["loop"]
    assert loop["status"] == "ok" and loop["members"] == 2 and loop["step"]["members"] == 1
    assert [c["members"] for c in saved["comparison"]] == [1, 2]
    for c in saved["comparison"]:
        assert c["loop_over_packed"] == pytest.approx(c["loop_s_per_member"] / c["packed_s_per_member"])
        assert c["from_steps"] == []

    mfu = s["mfu"]
    assert mfu["status"] == "ok" and mfu["peak_flops"] > 0
    assert [r["name"] for r in mfu["rows"]] == ["resnet18", "fastcnn x2 packed", "fastcnn x2 vectorized"]
    for row in mfu["rows"]:
        assert row["flops_per_step"] > 0 and row["step_s"] > 0 and 0 < row["mfu"]
        assert row["achieved_flops"] == pytest.approx(row["flops_per_step"] / row["step_s"])
    assert results["sections"].keys() == saved["sections"].keys()


def test_check_covers_every_model_and_path_without_notebook_packages(gpu_speed, tmp_path):
    """The check section in a fresh interpreter where the notebook-only and GPU-machine-missing
    packages cannot be imported: every model x execution x precision (x layout for images) runs."""
    out = tmp_path / "check.json"
    code = (f"import runpy, sys\nfor name in {BLOCKED!r}:\n    sys.modules[name] = None\n"
            f"sys.argv = ['gpu_speed.py', '--smoke', '--sections', 'check', '--json', {str(out)!r}]\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    check = json.loads(out.read_text())["sections"]["check"]
    assert check["status"] == "ok" and check["skipped"] == []
    names = {gpu_speed.case_name(case) for case in gpu_speed.check_cases()}
    assert set(check["results"]) == names
    for model in MODELS:
        layouts = ("contiguous", "channels_last") if model not in gpu_speed.INPUT_SHAPES else ("contiguous",)
        for execution in ("packed", "vectorized"):
            for precision in ("fp32", "bf16"):
                for layout in layouts:
                    assert f"{model} {execution} {precision} {layout}" in names
    assert "fastcnn packed bf16 channels_last compile" in names
    assert len(names) == 8 * (len(MODELS) - 3) + 4 * 3 + 1
    # on the CPU every path works (bf16 autocast is off there, compile uses the eager backend)
    assert check["failed"] == [] and check["passed"] == len(names), check["failed"]


def test_a_failing_section_is_recorded_and_the_next_one_still_runs(gpu_speed, tmp_path, monkeypatch):
    out = tmp_path / "gpu_speed.json"

    def broken(args, env, budget):
        raise RuntimeError("boom\nsecond line")

    real_check, real_case = gpu_speed.section_check, gpu_speed.check_case
    seen = {}

    def check_after_the_failure(args, env, budget):
        seen.update(json.loads(out.read_text())["sections"])  # written after the failing section
        return real_check(args, env, budget)

    def case(args, case, device):
        if case["execution"] == "vectorized" and case["precision"] == "bf16":
            raise ValueError("no such path\nmore")
        return real_case(args, case, device)

    monkeypatch.setattr(gpu_speed, "section_profile", broken)
    monkeypatch.setattr(gpu_speed, "section_check", check_after_the_failure)
    monkeypatch.setattr(gpu_speed, "check_case", case)
    results = gpu_speed.main(["--smoke", "--sections", "profile,check", "--check-models", "mlp",
                              "--json", str(out)])
    assert seen["profile"]["status"] == "error" and seen["check"] == {"status": "running"}
    saved = json.loads(out.read_text())["sections"]
    error = saved["profile"]["error"]
    assert saved["profile"]["status"] == "error" and error["type"] == "RuntimeError"
    assert error["message"] == "boom\nsecond line" and "RuntimeError: boom" in error["traceback"]
    check = saved["check"]
    assert check["status"] == "ok" and check["passed"] == 3
    assert check["results"] == {"mlp packed fp32 contiguous": "ok", "mlp packed bf16 contiguous": "ok",
                                "mlp vectorized fp32 contiguous": "ok",
                                "mlp vectorized bf16 contiguous": "ValueError: no such path"}
    assert check["failed"] == ["mlp vectorized bf16 contiguous"]
    assert results["sections"] == saved


def test_comparison_falls_back_to_the_step_time(gpu_speed):
    sections = {"packed": {"rows": [{"members": 20, "per_member_s": 2.0, "per_member_s_from_steps": 1.8}]},
                "vectorized": {"rows": [{"members": 20, "per_member_s_from_steps": 8.0}]},
                "loop": {"per_member_s": 10.0, "step": {"per_member_s_from_steps": 9.0}}}
    (row,) = gpu_speed.comparison(sections)
    assert row["from_steps"] == ["vectorized"] and row["packed_s_per_member"] == 2.0
    assert row["loop_over_packed"] == 5.0 and row["loop_over_vectorized"] == 1.25
    assert row["vectorized_over_packed"] == 4.0
    assert gpu_speed.comparison({"packed": {"status": "error"}}) == []


def test_sections_are_selectable_and_checked(gpu_speed):
    args = gpu_speed.parse_args(["--smoke", "--sections", "mfu,loop"])
    assert args.sections == ["mfu", "loop"] and args.device == "cpu" and args.warmup_epochs == 0.2
    assert gpu_speed.parse_args([]).sections[0] == "check"  # which CUDA paths work, before anything else
    with pytest.raises(SystemExit):
        gpu_speed.parse_args(["--sections", "vectorised"])
    with pytest.raises(SystemExit):
        gpu_speed.parse_args(["--check-models", "resnet"])
    # the default budgets keep one call under ~8 minutes with the decoding and start-up
    assert sum(gpu_speed.BUDGETS.values()) <= 420 and set(gpu_speed.BUDGETS) == set(gpu_speed.SECTIONS)


def test_airbench_section_with_a_stand_in_package(gpu_speed, tmp_path, monkeypatch):
    """The airbench section's own logic (data files in airbench's format, runs, budget, means) on the CPU."""
    ds = Dataset(name="tiny", task="classification", x_train=torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8),
                 y_train=torch.arange(20) % 10, x_test=torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8),
                 y_test=torch.arange(10), classes=[f"c{i}" for i in range(10)])
    seen = []

    def load(split):
        data = torch.load(f"cifar10/{split}.pt")
        n = len(ds.y_train if split == "train" else ds.y_test)
        assert data["images"].dtype == torch.uint8 and data["images"].shape == (n, 32, 32, 3)
        assert data["labels"].dtype == torch.int64 and data["classes"] == ds.classes
        return data

    fake = types.SimpleNamespace(
        train94=lambda verbose=True: seen.append(load("train")) or "model",
        CifarLoader=lambda path, train, batch_size: load("train" if train else "test"),
        evaluate=lambda model, loader, tta_level=0: 0.9 + 0.01 * tta_level)
    monkeypatch.setitem(sys.modules, "airbench", fake)
    monkeypatch.setattr(gpu_speed, "synchronize", lambda device: None)
    monkeypatch.chdir(tmp_path)
    args = gpu_speed.parse_args(["--airbench-runs", "3"])
    env = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"), dataset=lambda: ds)
    out = gpu_speed.section_airbench(args, env, gpu_speed.Budget(60))
    assert out["status"] == "ok" and len(out["runs"]) == 3 and len(seen) == 4  # one warm-up run
    assert out["acc_mean"] == pytest.approx(0.9) and out["acc_tta2_mean"] == pytest.approx(0.92)
    assert Path.cwd() == tmp_path and not any(tmp_path.iterdir())  # files went to a temporary folder


def test_the_benchmarks_20_member_run_is_chapter_bottom_ks_full_pool(gpu_speed):
    """So a GPU session that benchmarks with --save-records need not train that pool again
    (execution is not part of the key: packed, vectorized and loop runs share it)."""
    args = gpu_speed.parse_args(["--data-root", "/data"])
    pool = chapter_settings("bottom_k", "full").config
    assert gpu_speed.recipe(args, 20).key() == pool.key()
    assert gpu_speed.recipe(args, 20, execution="packed").key() == pool.key()


def test_save_records_puts_a_timed_run_in_the_cache(gpu_speed, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path))
    cfg = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 500}, model="cnn1d", width=0.25, members=2,
                      epochs=1, warmup_epochs=0.5, device="cpu", progress=False)
    row = gpu_speed.train_timed(cfg, save=True)
    saved = find_record(cfg.key())
    assert row["members"] == 2 and saved is not None
    assert row["ensemble_acc"] == pytest.approx(saved.ensemble_accuracy())


def test_smoke_models_keep_oneDNN_AVX2_off_narrow_1x1_convolutions(gpu_speed):
    """On a CPU without AVX-512, the backward of a channels-last 1x1 convolution with fewer than 8 input
    channels hangs or crashes inside oneDNN (torch 2.14.1): the smoke widths stay clear of it."""
    args = gpu_speed.parse_args(["--smoke"])
    for width in (args.mfu_resnet_width, args.check_width):
        net = gpu_speed.build_model("resnet18", gpu_speed.CIFAR_SHAPE, 10, width=width)
        assert narrow_pointwise_convolutions(net) == [], width

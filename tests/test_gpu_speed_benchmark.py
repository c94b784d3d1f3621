"""benchmarks/gpu_speed.py stays runnable: its --smoke mode exercises every section but airbench on the CPU."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_speed.py"


@pytest.fixture(scope="module")
def gpu_speed():
    spec = importlib.util.spec_from_file_location("gpu_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_mode_fills_every_section(gpu_speed, tmp_path, monkeypatch):
    monkeypatch.delenv("FAIRENS_CACHE", raising=False)
    out = tmp_path / "gpu_speed.json"
    results = gpu_speed.main(["--smoke", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["smoke"] is True and saved["recipe"]["model"] == "fastcnn"
    assert set(saved["sections"]) == set(gpu_speed.SECTIONS)
    sections = saved["sections"]

    assert sections["airbench"]["status"] == "skipped" and "CUDA" in sections["airbench"]["reason"]

    vec = sections["vectorized"]
    assert vec["status"] == "ok" and vec["channels_last"] is True
    assert [r["members"] for r in vec["rows"]] == [1, 2]
    for row in vec["rows"]:
        assert row["per_member_s"] > 0 and 0 <= row["member_acc_mean"] <= 1 and 0 <= row["ensemble_acc"] <= 1

    loop = sections["loop"]
    assert loop["status"] == "ok" and loop["members"] == 2 and loop["vectorized_members"] == 2
    assert loop["loop_over_vectorized"] == pytest.approx(loop["per_member_s"] / loop["vectorized_per_member_s"])

    mfu = sections["mfu"]
    assert mfu["status"] == "ok" and mfu["peak_flops"] > 0
    assert [r["name"] for r in mfu["rows"]] == ["resnet18", "fastcnn x2 vectorized"]
    for row in mfu["rows"]:
        assert row["flops_per_step"] > 0 and row["step_s"] > 0 and 0 < row["mfu"]
        assert row["achieved_flops"] == pytest.approx(row["flops_per_step"] / row["step_s"])
    assert results["sections"].keys() == saved["sections"].keys()


def test_sections_are_selectable_and_checked(gpu_speed):
    args = gpu_speed.parse_args(["--smoke", "--sections", "mfu,loop"])
    assert args.sections == ["mfu", "loop"] and args.device == "cpu" and args.warmup_epochs == 0.2
    with pytest.raises(SystemExit):
        gpu_speed.parse_args(["--sections", "vectorised"])


def test_airbench_section_with_a_stand_in_package(gpu_speed, tmp_path, monkeypatch):
    """The airbench section's own logic (data files in airbench's format, runs, budget, means) on the CPU."""
    import sys
    import types

    import torch

    from fairens_core.data import Dataset

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
    out = gpu_speed.section_airbench(args, ds, types.SimpleNamespace(type="cuda"), gpu_speed.Budget(60))
    assert out["status"] == "ok" and len(out["runs"]) == 3 and len(seen) == 4  # one warm-up run
    assert out["acc_mean"] == pytest.approx(0.9) and out["acc_tta2_mean"] == pytest.approx(0.92)
    assert Path.cwd() == tmp_path and not any(tmp_path.iterdir())  # files went to a temporary folder


def test_the_benchmarks_20_member_run_is_chapter_bottom_ks_full_pool(gpu_speed):
    """So a GPU session that benchmarks with --save-records need not train that pool again."""
    from fairens_core.profiles import chapter_settings

    args = gpu_speed.parse_args(["--data-root", "/data"])
    pool = chapter_settings("bottom_k", "full").config
    assert gpu_speed.recipe(args, 20).key() == pool.key()


def test_save_records_puts_a_timed_run_in_the_cache(gpu_speed, tmp_path, monkeypatch):
    from fairens_core import TrainConfig
    from fairens_core.records import find_record

    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path))
    cfg = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 500}, model="cnn1d", width=0.25, members=2,
                      epochs=1, warmup_epochs=0.5, device="cpu", progress=False)
    row = gpu_speed.train_timed(cfg, save=True)
    saved = find_record(cfg.key())
    assert row["members"] == 2 and saved is not None
    assert row["ensemble_acc"] == pytest.approx(saved.ensemble_accuracy())

"""Derived results: computed once per (record, recipe, parameters), read back without pickle."""

import json

import numpy as np
import pandas as pd
import pytest

from fairens_core import TrainConfig, run
from fairens_core.__main__ import main as cli
from fairens_core.analysis import reinit as R
from fairens_core.derived import derived_frame, derived_names, read_frame, write_frame
from fairens_core.records import find_record

pytestmark = pytest.mark.usefixtures("cache")


class FakeRecord:
    key = "0123456789abcdef"


def test_a_frame_round_trips_with_its_column_order_and_types(tmp_path):
    frame = pd.DataFrame({"pair": ["0-1", "2-3"], "alpha": [0.0, 0.5], "n": np.array([1, 2]), "ok": [True, False]})
    write_frame(frame, tmp_path / "f.npz")
    back = read_frame(tmp_path / "f.npz")
    assert list(back.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back["pair"].tolist() == ["0-1", "2-3"] and back["n"].dtype.kind == "i"


def test_a_result_is_computed_once_per_parameters():
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"x": [len(calls)]})

    first = derived_frame(FakeRecord, "demo", 1, {"a": 1}, compute)
    again = derived_frame(FakeRecord, "demo", 1, {"a": 1}, compute)
    other = derived_frame(FakeRecord, "demo", 1, {"a": 2}, compute)
    newer = derived_frame(FakeRecord, "demo", 2, {"a": 1}, compute)
    assert len(calls) == 3 and first.x[0] == again.x[0] == 1 and other.x[0] == 2 and newer.x[0] == 3
    assert len(derived_names(FakeRecord.key)) == 3


def test_a_damaged_result_is_recomputed(capsys):
    compute = lambda: pd.DataFrame({"x": [1.5]})  # noqa: E731
    derived_frame(FakeRecord, "demo", 1, {}, compute)
    (path,) = derived_names(FakeRecord.key)
    path.write_bytes(b"not an archive")
    assert derived_frame(FakeRecord, "demo", 1, {}, compute).x[0] == 1.5
    assert "unreadable" in capsys.readouterr().out


def test_barrier_curves_of_a_record_without_weights_come_from_the_derived_result():
    cfg = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 600}, model="cnn1d", width=0.25, members=2,
                      epochs=1, warmup_epochs=0.5, progress=False, device="cpu")
    record = run(cfg)
    curves = R.barrier_curves(record, pairs=1, alphas=3)
    record.weights = None  # as after `pack`: the weights stay behind, the curves travel
    pd.testing.assert_frame_equal(R.barrier_curves(record, pairs=1, alphas=3), curves)
    with pytest.raises(ValueError, match="no weights"):
        R.barrier_curves(record, pairs=1, alphas=5)  # another grid needs the weights again


def test_pack_ships_a_record_with_its_derived_results(tmp_path, monkeypatch):
    cfg = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 600}, model="cnn1d", width=0.25, members=2,
                      epochs=1, warmup_epochs=0.5, progress=False, device="cpu")
    record = run(cfg)
    curves = R.barrier_curves(record, pairs=1, alphas=3)
    plan = tmp_path / "plan.jsonl"
    plan.write_text(json.dumps({"key": cfg.key(), "chapter": "x", "train_flops": 1, "config": cfg.key_fields()}) + "\n")
    assert cli(["pack", "--plan", str(plan), "--out", str(tmp_path / "packed")]) == 0
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("FAIRENS_RECORDS", str(tmp_path / "packed"))
    shipped = find_record(cfg.key())
    assert shipped.weights is None  # packed without weights, yet its curves are there
    pd.testing.assert_frame_equal(R.barrier_curves(shipped, pairs=1, alphas=3), curves)

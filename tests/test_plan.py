"""Planning: placeholder records have the real records' shapes; plan -> train --plan -> pack -> cache hit."""

import json

import pytest
import torch

from fairens_core import TrainConfig, run, runner
from fairens_core.__main__ import main as cli
from fairens_core.plan import MissingRecordError, Planner, RecordsOnly, placeholder_record, read_plan, training_flops
from fairens_core.records import cache_root, find_record
from fairens_core.runner import instead_of_training, run_available

TINY = dict(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d", width=0.5,
            members=3, epochs=2, batch_size=64, lr=0.05, warmup_epochs=0.5, progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("cache")  # a fresh record cache per test (conftest)


def arrays(record) -> dict:
    out = {"test_logits": record.test_logits, "y_test": record.y_test, **record.history,
           **{f"group/{k}": v for k, v in record.groups_test.items()},
           **{f"weight/{k}": v for k, v in (record.weights or {}).items()}}
    for name in ("test_probs_trajectory", "train_outputs_trajectory", "test_outputs_trajectory",
                 "y_train_tracked", "weight_snapshots"):
        out[name] = getattr(record, name)
    return out


@pytest.mark.parametrize("changes", [
    dict(track_predictions=-1, track_outputs=5, snapshot_weights=True),
    dict(spawn_step=7, track_predictions=20),  # parent history + children
    dict(spawn_step=7, spawn_reset=True, save_weights=False),
    dict(dataset="diabetes", dataset_options={}, model="mlp", batch_size=32, track_outputs=-1),
])
def test_placeholder_has_the_shapes_and_metadata_of_the_real_record(changes):
    cfg = TrainConfig(**{**TINY, **changes})
    real, fake = run(cfg), placeholder_record(cfg)
    assert fake.key == real.key and fake.config == real.config
    a, b = arrays(real), arrays(fake)
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] is None) == (b[name] is None), name
        if a[name] is not None:
            assert a[name].shape == b[name].shape and a[name].dtype == b[name].dtype, name
    assert torch.equal(real.history["eval_step"], fake.history["eval_step"])
    assert torch.equal(real.y_test, fake.y_test)
    same = ("flops_per_example", "parameters", "n_train", "n_test", "steps_per_epoch", "num_classes", "task")
    assert {k: real.meta[k] for k in same} == {k: fake.meta[k] for k in same}
    assert fake.meta["placeholder"] and not real.meta.get("placeholder")


def test_planning_notes_each_run_once_and_trains_nothing(tmp_path, monkeypatch, cache):
    plan = tmp_path / "plan.jsonl"
    instead_of_training(Planner(plan))
    cfg = TrainConfig(**TINY)
    first, second = run(cfg), run(cfg.replace(members=4))
    run(cfg)  # noted already
    assert first.meta["placeholder"] and second.members == 4
    entries = read_plan(plan)
    assert [e["key"] for e in entries] == [cfg.key(), cfg.replace(members=4).key()]
    assert entries[1]["train_flops"] > entries[0]["train_flops"] > 0
    assert find_record(cfg.key()) is None and not (cache / "records").exists()
    assert all(e["est_cpu_s"] > 0 for e in entries)  # CPU runs get a measured-speed estimate


def test_the_plan_table_gives_flops_with_a_prefix_and_a_time_for_cpu_runs(tmp_path):
    from fairens_core.plan import describe

    plan = tmp_path / "plan.jsonl"
    instead_of_training(Planner(plan, "ch"))
    cfg = TrainConfig(**TINY)
    run(cfg)
    run(cfg.replace(members=4, device="auto"))  # a GPU-or-CPU run: no CPU estimate without a rate
    table = describe(read_plan(plan))
    assert "0.000" not in table and " M " in table
    lines = table.splitlines()
    assert "(est. CPU)" in lines[1] and lines[2].endswith("—")
    at_rate = describe(read_plan(plan), flops_per_second=1e7)
    assert "43 s (est.)" in at_rate and "at 10 MFLOP/s achieved" in at_rate


def test_a_cached_run_is_planned_too_and_answered_from_the_cache(tmp_path, monkeypatch):
    cfg = TrainConfig(**TINY)
    trained = run(cfg)
    plan = tmp_path / "plan.jsonl"
    instead_of_training(Planner(plan))
    again = run(cfg)
    assert not again.meta.get("placeholder") and torch.equal(again.test_logits, trained.test_logits)
    assert [e["key"] for e in read_plan(plan)] == [cfg.key()] and read_plan(plan)[0]["train_flops"] > 0
    assert read_plan(plan)[0]["wall_s"] == round(trained.meta["wall_time_s"], 1)


def test_training_flops_counts_every_member_step_and_evaluation():
    cfg = TrainConfig(**TINY)  # 3 members, 2 epochs of 10 steps of 64, 2 evaluations
    assert training_flops(cfg, 100, 640, 50) == 100 * (3 * 3 * 20 * 64 + 3 * 2 * 50)
    spawned = cfg.replace(spawn_step=5)  # the parent's 5 steps and its evaluation at step 5
    assert training_flops(spawned, 100, 640, 50) == 100 * (3 * (3 * 15 + 5) * 64 + (3 * 2 + 1) * 50)


def test_plan_train_pack_then_the_book_reads_the_packed_records(tmp_path, monkeypatch, make_notebook, capsys):
    root = tmp_path / "book"
    (root / "_config.yml").parent.mkdir(parents=True)
    (root / "_config.yml").write_text("title: t\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: ch\n")
    (root / "intro.md").write_text("# t\n")
    config = repr(TINY)
    make_notebook(root / "ch.ipynb", [
        "from fairens_core import TrainConfig, run\n"
        f"record = run(TrainConfig(**{config}).replace(members=members))\n"
        "print(record.ensemble_accuracy())"], parameters="profile = 'default'\nmembers = 2")
    plan = tmp_path / "plan.jsonl"

    assert cli(["plan", "--book-root", str(root), "--plan", str(plan), "-p", "members", "3"]) == 0
    out = capsys.readouterr().out
    assert "ch: ok, 1 runs added to the plan" in out and "were there before this call" not in out
    assert len(read_plan(plan)) == 1 and read_plan(plan)[0]["chapter"] == "ch"
    assert cli(["plan", "--book-root", str(root), "--plan", str(plan), "-p", "members", "3"]) == 0
    out = capsys.readouterr().out  # the file is appended to, and the table says whose runs it lists
    assert "ch: ok, 0 runs added to the plan" in out and "1 of its runs were there before this call" in out
    assert runner._instead is None  # planning was set in the chapters' kernels only

    with pytest.raises(SystemExit):  # a plan fixes every field that changes the result
        cli(["train", "--plan", str(plan), "--epochs", "5"])
    summary = tmp_path / "summary.jsonl"
    assert cli(["train", "--plan", str(plan), "--quiet", "--summary", str(summary)]) == 0
    trained = find_record(read_plan(plan)[0]["key"])
    assert json.loads(summary.read_text())["members"] == 3 and trained.weights is not None

    packed = tmp_path / "packed"
    assert cli(["pack", "--plan", str(plan), "--out", str(packed)]) == 0
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("FAIRENS_RECORDS", str(packed))
    hit = find_record(trained.key)
    assert torch.equal(hit.test_logits, trained.test_logits) and hit.weights is None
    with pytest.raises(ValueError, match="dropped when it was packed"):
        hit.models()
    assert not (tmp_path / "empty").exists()  # nothing was trained


def test_pack_reports_runs_missing_from_the_cache(tmp_path, capsys):
    plan = tmp_path / "plan.jsonl"
    plan.write_text(json.dumps({"key": "0" * 16, "chapter": "x", "train_flops": 1, "config": TINY}) + "\n")
    assert cli(["pack", "--plan", str(plan), "--out", str(tmp_path / "out")]) == 1
    assert "not in the cache" in capsys.readouterr().out


def test_train_plan_skips_runs_that_would_overrun_the_budget(tmp_path, monkeypatch, capsys):
    plan = tmp_path / "plan.jsonl"
    instead_of_training(Planner(plan))
    first, second = TrainConfig(**TINY), TrainConfig(**TINY).replace(members=2, seed=1)
    run(first), run(second)
    instead_of_training(None)
    assert cli(["train", "--plan", str(plan), "--quiet", "--budget-s", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "1 of 2 runs done" in out
    assert find_record(first.key()) is not None and find_record(second.key()) is None
    assert cli(["train", "--plan", str(plan), "--quiet"]) == 0  # the first is a cache hit now
    assert find_record(second.key()) is not None


def test_records_only_reads_what_exists_and_names_what_is_missing():
    have, lack = TrainConfig(**TINY), TrainConfig(**TINY).replace(seed=7)
    trained = run(have)
    instead_of_training(RecordsOnly())
    with pytest.raises(MissingRecordError, match=lack.key()):
        run(lack)
    records, missing = run_available({"have": have, "lack": lack})
    assert torch.equal(records["have"].test_logits, trained.test_logits)
    assert list(missing) == ["lack"] and find_record(lack.key()) is None


def test_records_only_reads_a_named_folder_after_the_cache(tmp_path, monkeypatch):
    # a full-profile page names the book's records/full, so it needs no $FAIRENS_RECORDS
    have = TrainConfig(**TINY)
    trained = run(have)
    folder = tmp_path / "shipped"
    folder.mkdir()
    for suffix in (".npz", ".json"):
        name = f"{have.key()}{suffix}"
        (cache_root() / "records" / name).rename(folder / name)
    monkeypatch.delenv("FAIRENS_RECORDS", raising=False)
    instead_of_training(RecordsOnly())
    with pytest.raises(MissingRecordError):
        run(have)
    instead_of_training(RecordsOnly(folder))
    assert torch.equal(run(have).test_logits, trained.test_logits)
    assert not (cache_root() / "records" / f"{have.key()}.npz").exists()  # read in place, not copied

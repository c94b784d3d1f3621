"""Bad input is stopped before any training, with the parameter named (Python API, CLI, chapter knobs).

Every case below must be rejected early: a ValueError (API, chapters) or exit code 2 with one
line on stderr (CLI) that names the parameter, no traceback, nothing trained, no record written.
`python tests/test_bad_inputs.py` prints how many were tried, rejected early and accepted silently.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from fairens_core import TrainConfig, run
from fairens_core import __main__ as cli
from fairens_core import profiles, runner
from fairens_core import train as train_mod
from fairens_core.data import load_dataset
from fairens_core.profiles import chapter_settings

TINY = dict(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d", width=0.5, members=2, epochs=1,
            batch_size=64, lr=0.05, warmup_epochs=0, progress=False, device="cpu")
ROOT = Path(__file__).resolve().parents[1]
CLI_BASE = ["train", "--members", "2", "--epochs", "1", "--width", "0.5", "--dataset-options", "{'n_samples': 700}",
            "--warmup-epochs", "0", "--quiet"]

# (changes to TINY, the parameter the error must name)
API = [
    (dict(lr=math.nan), "lr"), (dict(lr=math.inf), "lr"), (dict(lr=-math.inf), "lr"), (dict(lr="abc"), "lr"),
    (dict(lr="nan"), "lr"), (dict(weight_decay=math.nan), "weight_decay"), (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(warmup_epochs=math.nan), "warmup_epochs"), (dict(warmup_epochs=math.inf), "warmup_epochs"),
    (dict(warmup_epochs=5), "warmup_epochs"), (dict(beta=math.nan), "beta"), (dict(beta=math.inf), "beta"),
    (dict(width=math.nan), "width"), (dict(width=0), "width"), (dict(momentum=1.5), "momentum"),
    (dict(momentum=math.nan), "momentum"), (dict(gamma=-0.1), "gamma"), (dict(dropout=math.nan), "dropout"),
    (dict(label_smoothing=1.0), "label_smoothing"), (dict(learner_dropout=math.inf), "learner_dropout"),
    (dict(reinit_fraction=math.nan), "reinit_fraction"), (dict(members=True), "members"),
    (dict(members="three"), "members"), (dict(members=2.5), "members"), (dict(members=np.float64(3.0)), "members"),
    (dict(epochs=0), "epochs"), (dict(batch_size=-1), "batch_size"), (dict(seed=-1), "seed"),
    (dict(seed=1.0), "seed"), (dict(save_weights="maybe"), "save_weights"), (dict(save_weights=1), "save_weights"),
    (dict(snapshot_weights=None), "snapshot_weights"), (dict(progress="yes"), "progress"),
    (dict(channels_last=2), "channels_last"), (dict(augment=("crop", "mixup")), "augment"),
    (dict(augment=5), "augment"), (dict(milestones=5), "milestones"),
    (dict(milestones=(0.5, math.nan)), "milestones"), (dict(milestones="abc"), "milestones"),
    (dict(dataset_options=[1, 2]), "dataset_options"), (dict(dataset_options={"n_sample": 5}), "dataset_options"),
    (dict(dataset_options="not a dict"), "dataset_options"), (dict(device="cuda:x"), "device"),
    (dict(device=0), "device"), (dict(optimizer=None), "optimizer"), (dict(execution="fast"), "execution"),
    (dict(max_group=0), "max_group"), (dict(spawn_step=-3), "spawn_step"), (dict(spawn_step=1.5), "spawn_step"),
    (dict(track_predictions=1.5), "track_predictions"), (dict(ray_retries=-1), "ray_retries"),
    (dict(ray_cpus_per_task=0), "ray_cpus_per_task"), (dict(ray_gpus_per_task=math.nan), "ray_gpus_per_task"),
    (dict(data_root=5), "data_root"), (dict(model=None), "model"), (dict(vary=3), "vary"),
    (dict(combine="mean"), "combine"), (dict(precision=None), "precision"),
    (dict(allow_unbounded_beta="yes"), "allow_unbounded_beta"), (dict(compile=np.int64(1)), "compile"),
]

# the same through fairens_core.run: (changes, name); the last two need the dataset to be found out
RUN = [
    (dict(lr=math.nan), "lr"), (dict(members=0), "members"), (dict(dataset_options={"n_sample": 5}), "dataset_options"),
    (dict(beta=0.5), "vary"), (dict(batch_size=100_000), "batch_size"),
    (dict(spawn_step=10**6, vary="batch_order"), "spawn_step"),
]

# (flags after CLI_BASE, the parameter the one line must name)
CLI = [
    (["--lr", "nan"], "lr"), (["--lr", "inf"], "lr"), (["--lr", "-0.1"], "lr"), (["--weight-decay", "abc"], "weight_decay"),
    (["--weight-decay", "-1"], "weight_decay"), (["--warmup-epochs", "nan"], "warmup_epochs"),
    (["--warmup-epochs", "3"], "warmup_epochs"), (["--beta", "nan"], "beta"), (["--beta", "0.5"], "vary"),
    (["--members", "0"], "members"), (["--members", "2.5"], "members"), (["--members", "abc"], "members"),
    (["--epochs", "0"], "epochs"), (["--augment", "mixup"], "augment"), (["--augment", "crop,mixup"], "augment"),
    (["--milestones", "5"], "milestones"), (["--milestones", "[0.5, 2]"], "milestones"),
    (["--save-weights", "maybe"], "save_weights"), (["--save-weights", "1"], "save_weights"),
    (["--compile", "yes"], "compile"), (["--dataset", "imagenet"], "dataset"), (["--optimizer", "rmsprop"], "optimizer"),
    (["--vary", "colour"], "vary"), (["--dataset-options", "{'n_sample': 5}"], "dataset_options"),
    (["--dataset-options", "[1]"], "dataset_options"), (["--dataset-options", "{'n_samples': 700"], "dataset_options"),
    (["--device", "tpu"], "device"), (["--execution", "fast"], "execution"), (["--seed", "-1"], "seed"),
    (["--budget-s", "nan"], "budget-s"), (["--memberz", "3"], "memberz"), (["--batch-size", "100000"], "batch_size"),
    (["--spawn-reset", "True"], "spawn_step"), (["--spawn-step", "1000000", "--vary", "batch_order"], "spawn_step"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent"], "cifar10"),
]

# --config files: (file content, or a path relative to the temporary folder, the name the line must name)
CONFIG_FILES = [
    (None, "--config"),  # no such file
    ("DIRECTORY", "--config"),  # a directory
    ('{"lr": 0.1', "--config"),  # malformed JSON
    ("[1, 2]", "--config"),  # not an object
    ('{"lr": "abc"}', "lr"),
    ('{"memberz": 3}', "memberz"),
    ('{"lr": NaN}', "lr"),
    ('{"augment": ["mixup"]}', "augment"),
]

# plan files for `train --plan`: (file content or None for a missing file, the name)
PLAN_FILES = [(None, "plan"), ("not json\n", "plan"), ('{"key": "x"}\n', "plan")]

# the other commands: (argv, with {tmp} a scratch folder and {root} the repository; the name)
COMMANDS = [
    (["pack", "--plan", "{tmp}/missing.jsonl", "--out", "{tmp}/out"], "--plan"),
    (["pack", "--out", "{tmp}/out"], "--plan"),
    (["plan", "--profile", "huge"], "--profile"),
    (["plan", "--flops-per-second", "nan"], "--flops-per-second"),
    (["plan", "--book-root", "{tmp}/missing"], "--book-root"),
    (["plan", "--book-root", "{root}", "--chapters", "no_such_chapter"], "--chapters"),
]

# (chapter, profile, parameters, the parameter the error must name)
CHAPTER = [
    ("bottom_k", "default", dict(K=11), "K"), ("bottom_k", "default", dict(K=0), "K"),
    ("bottom_k", "default", dict(K="3x"), "K"), ("bottom_k", "default", dict(ks="[2, 30]"), "ks"),
    ("bottom_k", "default", dict(ks=[]), "ks"), ("bottom_k", "default", dict(draws=0), "draws"),
    ("bottom_k", "default", dict(draws=-5), "draws"), ("bottom_k", "default", dict(members=1), "members"),
    ("bottom_k", "default", dict(members="1"), "members"), ("bottom_k", "default", dict(memebers=3), "memebers"),
    ("bottom_k", "default", dict(lr=math.nan), "lr"), ("bottom_k", "default", dict(dataset="diabetes"), "K"),
    ("bottom_k", "huge", {}, "profile"), ("bottom_k", "smoke", dict(dataset="digits", dataset_options="{'n_samples': 1500}"),
                                          "dataset_options"),
    ("bottom_k", "default", dict(dataset_options="{'n_samples': 2000"), "dataset_options"),
    ("churn", "default", dict(pairs=0), "pairs"), ("churn", "default", dict(pools="[['cnn1d', 1]]"), "pools"),
    ("churn", "default", dict(pools=[["transformer", 1, None]]), "pools"),
    ("churn", "default", dict(pools=[["cnn1d", 1, 1]]), "pools"), ("churn", "default", dict(K=20), "K"),
    ("minority_groups", "default", dict(attribute="sex"), "attribute"),
    ("minority_groups", "default", dict(label=7), "label"),
    ("minority_groups", "default", dict(ablations=["init", "colour"]), "ablations"),
    ("minority_groups", "default", dict(ablations="init+colour"), "ablations"),
    ("minority_groups", "default", dict(repeats=0), "repeats"),
    ("minority_groups", "default", dict(tree_depth=0), "tree_depth"),
    ("corruption", "default", dict(severities=[0]), "severities"),
    ("corruption", "default", dict(corruptions=["rain"]), "corruptions"),
    ("corruption", "default", dict(sizes=[0]), "sizes"), ("corruption", "default", dict(n_eval=0), "n_eval"),
    ("corruption", "default", dict(repeats=0), "repeats"),
    ("randomness", "default", dict(K=20), "K"), ("randomness", "default", dict(draws="many"), "draws"),
    ("independent_vs_joint", "smoke", dict(betas="[0, 1.5]"), "betas"),
    ("independent_vs_joint", "smoke", dict(betas="[0, nan]"), "betas"),
    ("independent_vs_joint", "smoke", dict(large_members=1), "large_members"),
    ("independent_vs_joint", "smoke", dict(vary="all"), "betas"),
    ("generalization", "smoke", dict(betas="[0, 0.5, 1]"), "betas"),
    ("generalization", "smoke", dict(tail_epochs=100), "tail_epochs"),
    ("learner_dropout", "smoke", dict(dropouts=[1.0]), "dropouts"),
    ("tabular_collusion", "smoke", dict(dropout_ps=[0]), "dropout_ps"),
    ("tabular_collusion", "smoke", dict(abalone_repeats=-1), "abalone_repeats"),
    ("augmented_objective", "smoke", dict(sizes=[1, 2]), "sizes"),
    ("augmented_objective", "smoke", dict(steps=0), "steps"),
    ("augmented_objective", "smoke", dict(alphas="[0.5, -1]"), "alphas"),
    ("diversity", "smoke", dict(hessian_members=50), "hessian_members"),
    ("coupling", "default", dict(K=6), "K"), ("coupling", "default", dict(spawn_fractions=[0, 1.5]), "spawn_fractions"),
    ("function_space", "default", dict(parents=1), "parents"), ("reinit", "default", dict(pairs=100), "pairs"),
    ("reinit", "default", dict(alphas=1), "alphas"), ("reinit", "default", dict(fractions=[0]), "fractions"),
    ("forgetting", "default", dict(forgetting_train={"memberz": 3}), "forgetting_train"),
    ("coupling", "default", dict(second_model_train={"model": "resnet99"}), "second_model_train"),
    ("similarity", "default", dict(member=5), "member"), ("similarity", "default", dict(late_fraction=1), "late_fraction"),
    ("subspace", "default", dict(rank=0), "rank"), ("subspace", "default", dict(dropout_rates=[1.0]), "dropout_rates"),
    ("function_space_tsne", "default", dict(runs=1), "runs"), ("function_space_tsne", "default", dict(runs=10), "runs"),
    ("function_space_tsne", "default", dict(perplexity=0), "perplexity"),
    ("hardness", "default", dict(hardest=0), "hardest"), ("flops", "smoke", dict(sizes=[2, 3]), "sizes"),
    ("flops", "smoke", dict(plateau_at=100), "plateau_at"), ("flops", "smoke", dict(widths="[0.5, -1]"), "widths"),
    # a model that cannot take the dataset's inputs, or data the chapter cannot use, before any pool trains
    ("bottom_k", "smoke", dict(dataset="digits"), "model"),
    ("churn", "smoke", dict(dataset="digits", pools=[["mlp", 1, None], ["cnn1d", 0.5, None]]), "pools"),
    ("coupling", "smoke", dict(dataset="digits", model="mlp", second_model_train={"model": "cnn1d"}),
     "second_model_train"),
    ("corruption", "smoke", dict(dataset="digits", model="mlp"), "dataset"),
    ("corruption", "smoke", dict(dataset="adult", model="mlp"), "dataset"),
    ("nonexistent_chapter", "default", {}, "chapter"),
]


OUTCOMES = ("tried", "early", "late", "silent", "unnamed", "crash")


class Trained(Exception):
    """Raised by the patched training step: the input got as far as training."""


def _refuse_training(*args, **kwargs):
    raise Trained


def _records_written(cache: Path) -> list[Path]:
    """Records and partial runs in the cache (a `.lock` is only the runner's per-key lock)."""
    return [p for p in (cache / "records").glob("*") if p.suffix != ".lock"] if (cache / "records").exists() else []


def _cli(argv: list[str]) -> tuple[int | None, str]:
    """Exit code and stderr of `python -m fairens_core ARGV` run in this process."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as stop:
            code = stop.code
    return code, stderr.getvalue()


def _file(folder: Path, content: str | None, name: str) -> str:
    path = folder / name
    if content == "DIRECTORY":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    return str(path)


def attempt(surface: str, case, folder: Path) -> str:
    """'early' (rejected before training, the name said), 'late' (it trained), 'silent' (accepted),
    'unnamed' (rejected without naming the parameter, or not in one line / exit code 2), 'crash'
    (another exception: a traceback)."""
    try:
        if surface == "api":
            changes, name = case
            TrainConfig(**{**TINY, **changes}).validate()
        elif surface == "run":
            changes, name = case
            run(TrainConfig(**{**TINY, **changes}))
        elif surface == "chapter":
            chapter, profile, parameters, name = case
            chapter_settings(chapter, profile, **parameters)
        else:
            if surface == "cli":
                flags, name = case
                argv = CLI_BASE + flags
            elif surface == "command":
                template, name = case
                argv = [arg.format(tmp=folder, root=ROOT) for arg in template]
            elif surface == "config":
                content, name = case
                argv = CLI_BASE + ["--config", _file(folder, content, f"config{len(os.listdir(folder))}.json")]
            else:  # plan
                content, name = case
                argv = ["train", "--plan", _file(folder, content, f"plan{len(os.listdir(folder))}.jsonl")]
            code, err = _cli(argv)
            if code == 0:
                return "silent"
            lines = err.strip().splitlines()
            one_line = code == 2 and len(lines) == 1 and "Traceback" not in err
            return "early" if one_line and name in lines[0] else "unnamed"
    except Trained:
        return "late"
    except ValueError as err:
        return "early" if name in str(err) else "unnamed"
    except Exception:  # noqa: BLE001 - a TypeError, KeyError, ...: a traceback instead of a message
        return "crash"
    return "silent"


CASES = ([("api", c) for c in API] + [("run", c) for c in RUN] + [("cli", c) for c in CLI]
         + [("config", c) for c in CONFIG_FILES] + [("plan", c) for c in PLAN_FILES] + [("command", c) for c in COMMANDS]
         + [("chapter", c) for c in CHAPTER])


@pytest.fixture(scope="module")
def generated_data(tmp_path_factory) -> Path:
    """One data cache for the module: mnist1d is generated once, not once per test."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def cache_sharing_data(cache, generated_data) -> Path:
    """A fresh record cache (conftest's `cache`) whose data folder is the module's."""
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "data").symlink_to(generated_data, target_is_directory=True)
    return cache


@pytest.mark.parametrize("surface, case", CASES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(CASES)])
def test_bad_input_is_rejected_early_with_the_parameter_named(surface, case, cache_sharing_data, tmp_path,
                                                              monkeypatch):
    cache = cache_sharing_data
    monkeypatch.setattr(train_mod, "train_steps", _refuse_training)
    monkeypatch.delenv("FAIRENS_EXECUTOR", raising=False)
    monkeypatch.delenv("FAIRENS_MAX_GROUP", raising=False)
    assert attempt(surface, case, tmp_path) == "early"
    assert _records_written(cache) == []


def test_cli_bad_input_in_a_subprocess_is_one_line_and_exit_2(cache):
    env = {**os.environ, "FAIRENS_CACHE": str(cache)}
    for flags, name in [(["--weight-decay", "abc"], "weight_decay"), (["--augment", "mixup"], "augment"),
                        (["--config", str(cache / "missing.json")], "--config")]:
        done = subprocess.run([sys.executable, "-m", "fairens_core", *CLI_BASE, *flags], capture_output=True,
                              text=True, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and name in done.stderr


def test_cli_and_chapters_parse_text_the_way_papermill_hands_it_over(cache_sharing_data):
    settings = chapter_settings("bottom_k", "smoke", ks="[2, 3]", dataset_options='{"n_samples": 2000}')
    assert settings.ks == [2, 3] and settings.config.dataset_options == {"n_samples": 2000}
    joint = chapter_settings("independent_vs_joint", "smoke", betas="[0, 0.5, 1]", members=np.int64(3))
    assert joint.betas == [0, 0.5, 1] and joint.config.members == 3 and type(joint.config.members) is int
    assert chapter_settings("randomness", "default", augment="crop").config.augment == ("crop",)


def test_a_new_dataset_drops_the_profiles_options_for_another(cache_sharing_data):
    assert chapter_settings("bottom_k", "smoke").config.dataset_options == {"n_samples": 1500}
    assert chapter_settings("bottom_k", "smoke", dataset="digits", model="mlp").config.dataset_options == {}
    assert chapter_settings("bottom_k", "smoke", dataset="mnist1d").config.dataset_options == {"n_samples": 1500}
    given = chapter_settings("bottom_k", "smoke", dataset="synthetic", model="mlp", dataset_options={"n_samples": 600})
    assert given.config.dataset_options == {"n_samples": 600}


def tally() -> dict[str, dict[str, int]]:
    """Outcome counts per surface, in a fresh cache with training refused."""
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FAIRENS_CACHE"] = str(Path(tmp) / "cache")
        os.environ.pop("FAIRENS_RECORDS", None)
        runner._instead = None
        train_mod.train_steps = _refuse_training
        for i, (surface, case) in enumerate(CASES):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            outcome = attempt(surface, case, folder)
            row = counts.setdefault(surface, dict.fromkeys(OUTCOMES, 0))
            row["tried"] += 1
            row[outcome] += 1
        written = _records_written(Path(tmp) / "cache")
    counts["records written"] = {"tried": len(written)}
    return counts


if __name__ == "__main__":
    table = tally()
    widths = (7, 7, 7, 8, 9, 7)
    print(f"{'surface':<10}" + "".join(f"{k:>{w}}" for k, w in zip(OUTCOMES, widths)))
    total = dict.fromkeys(OUTCOMES, 0)
    for surface, row in table.items():
        if surface != "records written":
            print(f"{surface:<10}" + "".join(f"{row[k]:>{w}}" for k, w in zip(OUTCOMES, widths)))
            total = {k: total[k] + row[k] for k in OUTCOMES}
    print(f"{'total':<10}" + "".join(f"{total[k]:>{w}}" for k, w in zip(OUTCOMES, widths)))
    print(f"records written: {table['records written']['tried']}")


def test_a_table_of_ones_own_is_read_to_check_the_chapters_knobs(tmp_path):
    """A csv table is loaded before training, like the generated datasets: K is checked against
    its classes (3 here), not only against the model's inputs."""
    table = tmp_path / "three.csv"
    rows = [f"{i % 7},{(i * 3) % 5},{i % 3}" for i in range(60)]
    table.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    options = {"path": str(table), "target": "label", "task": "classification"}
    assert chapter_settings("bottom_k", "smoke", dataset="csv", model="mlp", dataset_options=options, K=1).K == 1
    with pytest.raises(ValueError, match=r"^K=5: must be at most the number of classes of csv=3"):
        chapter_settings("bottom_k", "smoke", dataset="csv", model="mlp", dataset_options=options, K=5)


def test_the_checks_read_a_table_once(tmp_path, monkeypatch):
    """A chapter with several pools checks each pool's model against the reader's table and K
    against its classes: one read of the file serves them all."""
    table = tmp_path / "three.csv"
    table.write_text("a,b,label\n" + "\n".join(f"{i % 7},{(i * 3) % 5},{i % 3}" for i in range(60)) + "\n")
    reads = []

    def counted(*args, **options):
        reads.append(args)
        return load_dataset(*args, **options)

    monkeypatch.setattr(profiles, "load_dataset", counted)
    pools = [["mlp", 1, None], ["mlp", 0.5, None]]
    chapter_settings("churn", "smoke", dataset="csv", model="mlp", pools=pools,
                     dataset_options={"path": str(table), "target": "label", "task": "classification"})
    assert len(reads) == 1

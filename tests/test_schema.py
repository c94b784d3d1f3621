"""schema.Spec: normalisation and rejection, unit and property-based; TrainConfig's specs; cache keys."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairens_core.config import AUGMENTATIONS, SPECS, TrainConfig
from fairens_core.profiles import CHAPTERS, KNOB_SPECS, PROFILES, chapter_settings
from fairens_core.schema import Spec

UNIT = Spec("float", low=0, high=1, high_open=True)
COUNT = Spec("int", low=1)
NAMES = Spec("tuple", item=Spec("str", choices=AUGMENTATIONS))


# ---------------------------------------------------------------------------- unit
@pytest.mark.parametrize("spec, given_value, expected", [
    (COUNT, np.int64(3), 3), (COUNT, "3", 3), (UNIT, np.float32(0.5), 0.5), (UNIT, "0.25", 0.25),
    (UNIT, 0, 0), (Spec("bool"), np.bool_(True), True), (Spec("bool"), "False", False),
    (NAMES, "crop", ("crop",)), (NAMES, "crop,flip", ("crop", "flip")), (NAMES, "('crop', 'flip')", ("crop", "flip")),
    (NAMES, ["flip"], ("flip",)), (Spec("list", item=COUNT), "[2, 3]", [2, 3]), (Spec("list", item=COUNT), 4, [4]),
    (Spec("dict"), '{"n_samples": 2000}', {"n_samples": 2000}), (Spec("dict"), "{'a': None}", {"a": None}),
    (Spec("int", optional=True), "None", None), (Spec("int", optional=True), None, None),
    (Spec("list", item=COUNT, fields=None, optional=True), "null", None),
    (Spec("list", fields=(Spec("str"), UNIT)), "['a', 0.5]", ["a", 0.5]),
])
def test_values_are_normalised(spec, given_value, expected):
    out = spec.check("x", given_value)
    assert out == expected and type(out) is type(expected)


def test_an_int_stays_an_int_where_a_float_is_wanted():
    # the cache key hashes the JSON of the config, where 1 and 1.0 differ
    assert type(Spec("float").check("width", 1)) is int


@pytest.mark.parametrize("spec, bad", [
    (UNIT, math.nan), (UNIT, math.inf), (UNIT, -math.inf), (UNIT, 1), (UNIT, -0.1), (UNIT, True), (UNIT, "abc"),
    (UNIT, "nan"), (UNIT, None), (UNIT, [0.5]), (COUNT, 0), (COUNT, 2.0), (COUNT, True), (COUNT, "3x"),
    (Spec("bool"), "maybe"), (Spec("bool"), 1), (Spec("bool"), None), (NAMES, "mixup"), (NAMES, ("crop", 3)),
    (Spec("dict"), "[1]"), (Spec("dict"), {1: 2}), (Spec("str", choices=("a",)), "b"), (Spec("str"), 5),
    (Spec("str", pattern=r"cpu|cuda(:\d+)?"), "cuda:x"), (Spec("list", item=COUNT, min_items=2), [1]),
    (Spec("list", item=COUNT, max_items=1), [1, 2]), (Spec("list", fields=(COUNT, COUNT)), [1]),
])
def test_bad_values_are_rejected_with_name_value_and_what_is_allowed(spec, bad):
    with pytest.raises(ValueError) as err:
        spec.check("knob", bad)
    message = str(err.value)
    assert message.startswith(f"knob={bad!r}: ") and spec.describe() in message


@pytest.mark.parametrize("spec, words", [
    (UNIT, "a finite number in [0, 1)"), (COUNT, "an integer >= 1"), (Spec("float", low=0, low_open=True), "> 0"),
    (Spec("int", optional=True), "an integer or None"), (NAMES, "a list, each one of ['crop'"),
    (Spec("int", low=-1, note="(-1: all)"), "an integer >= -1 (-1: all)"),
])
def test_descriptions_say_what_is_allowed(spec, words):
    assert words in spec.describe()


def test_a_spec_needs_a_known_kind_and_an_item_spec():
    with pytest.raises(ValueError, match="kind"):
        Spec("complex")
    with pytest.raises(ValueError, match="item spec"):
        Spec("list")


# ---------------------------------------------------------------------------- property-based
BOUNDED = Spec("float", low=-2.5, high=7.0, low_open=True)
in_range = st.floats(min_value=-2.5, max_value=7.0, exclude_min=True, allow_nan=False)
out_of_range = st.one_of(st.floats(max_value=-2.5), st.floats(min_value=7.0, exclude_min=True))


@given(in_range)
def test_any_finite_float_in_range_passes_and_round_trips(x):
    assert BOUNDED.check("f", x) == x
    assert BOUNDED.check("f", repr(x)) == x  # as text (papermill, the command line)
    assert BOUNDED.check("f", np.float64(x)) == x


@given(st.one_of(out_of_range, st.just(math.nan), st.just(math.inf), st.just(-math.inf)))
def test_any_float_out_of_range_or_not_finite_is_rejected_by_name(x):
    with pytest.raises(ValueError, match=r"^f="):
        BOUNDED.check("f", x)


@given(st.one_of(st.booleans(), st.none(), st.text(), st.lists(st.integers()), st.dictionaries(st.text(), st.integers())))
def test_wrong_types_are_rejected_by_name(x):
    if isinstance(x, str):
        try:  # a string that spells a number in range is a number
            BOUNDED.convert(x)
            return
        except Exception:  # noqa: BLE001 - rejected, as checked below
            pass
    with pytest.raises(ValueError, match=r"^f="):
        BOUNDED.check("f", x)


@given(st.integers(min_value=1, max_value=10**12))
def test_any_positive_int_passes_as_python_int_and_as_numpy_and_text(n):
    for value in (n, np.int64(n), str(n)):
        out = COUNT.check("n", value)
        assert out == n and type(out) is int


@given(st.integers(max_value=0))
def test_any_int_below_the_bound_is_rejected(n):
    with pytest.raises(ValueError, match=rf"^n={n!r}: an integer >= 1"):
        COUNT.check("n", n)


@given(st.lists(st.sampled_from(AUGMENTATIONS), max_size=4))
def test_augment_lists_round_trip_as_tuples_and_text(names):
    assert NAMES.check("augment", names) == tuple(names)
    assert NAMES.check("augment", repr(names)) == tuple(names)
    if names:
        assert NAMES.check("augment", ",".join(names)) == tuple(names)


@given(st.sampled_from(sorted(SPECS)), st.sampled_from([math.nan, math.inf, "maybe", [object()], {"a": 1}]))
def test_every_config_field_rejects_garbage_by_name(name, bad):
    spec = SPECS[name]
    if spec.accepts(bad):  # e.g. a dict for dataset_options
        return
    with pytest.raises(ValueError, match=rf"^{name}="):
        TrainConfig(**{name: bad}).validate()


# ---------------------------------------------------------------------------- TrainConfig and chapters
def test_every_config_field_and_chapter_knob_has_a_spec():
    assert set(SPECS) == set(TrainConfig.__dataclass_fields__)
    for chapter, profiles in CHAPTERS.items():
        for knobs in profiles.values():
            assert set(knobs) - {"train"} == set(KNOB_SPECS[chapter]), chapter


def test_config_normalises_at_construction():
    cfg = TrainConfig(members=np.int64(3), augment="crop", milestones=np.array([0.5]), lr=np.float64(0.05))
    assert (cfg.members, cfg.augment, cfg.milestones, cfg.lr) == (3, ("crop",), (0.5,), 0.05)
    assert type(cfg.members) is int and type(cfg.lr) is float
    assert cfg.key() == TrainConfig(members=3, augment=("crop",), milestones=(0.5,), lr=0.05).key()


# Keys of every profile config before the schema existed (records shipped in records/ are named by them).
# Changed on purpose since: Part III's default and smoke recipes augment (random shifts), 2026-12-04; Part III's and
# Part IV's default recipes train 40 epochs, Part II's joint-training sweeps 20, 2026-12-05; Part I's default trains 30
# epochs and tests on 8,000 signals (PART1_DEFAULT_TRAIN), 2026-12-05; Part V's default trains 20 epochs and Fig. 1g's
# forgetting run 40, Part III's default recipe 80 epochs, 2026-12-05; Part III's default members have batch norm
# (cnn1d_bn) and a 1-epoch warm-up (was cnn1d, 0.5: some members and re-initialised children collapsed), 2026-12-05.
# Part III's smoke members have batch norm too (cnn1d_bn), so the smoke tests run the default's layer grouping, 2026-12-05.
# minority_groups' synthetic members jitter their features (augment=("jitter",)), so DA and All have a source of their
# own; its Adult members stay without augmentation (their keys unchanged), 2026-12-07.
EXPECTED_KEYS = {
    "None/default": "7035f5a3a782d547", "None/smoke": "b068097fdbe0f006", "None/full": "0dc56591a996d50b",
    "augmented_objective/default": "7035f5a3a782d547", "augmented_objective/smoke": "b068097fdbe0f006",
    "augmented_objective/full": "0dc56591a996d50b",
    "bottom_k/default": "7b3b487fbb89ab57", "bottom_k/smoke": "b068097fdbe0f006", "bottom_k/full": "0dc56591a996d50b",
    "churn/default": "7b3b487fbb89ab57", "churn/smoke": "b068097fdbe0f006", "churn/full": "0dc56591a996d50b",
    "corruption/default": "7b3b487fbb89ab57", "corruption/smoke": "b068097fdbe0f006",
    "corruption/full": "0dc56591a996d50b",
    "coupling/default": "f2534c31f3033e76", "coupling/smoke": "ffef19294904749f", "coupling/full": "4d496301e6b37dc2",
    "coupling/default/second_model_train": "a58b805d99cd42c5", "coupling/smoke/second_model_train": "08e3390d16dc6c17",
    "diversity/default": "7fdd2b19b6db61ba", "diversity/smoke": "0ce21c07adc84fe7", "diversity/full": "51403a16b1adfaee",
    "flops/default": "24e1fa73fd497441", "flops/smoke": "efab1e51d3e60bc9", "flops/full": "b890a7a202751057",
    "forgetting/default": "f2534c31f3033e76", "forgetting/default/forgetting_train": "bab2baf2ace167a4",
    "forgetting/smoke": "ffef19294904749f", "forgetting/smoke/forgetting_train": "ea84d5465fb7d806",
    "forgetting/full": "4d496301e6b37dc2", "forgetting/full/forgetting_train": "e8071859a927fb8b",
    "function_space/default": "f2534c31f3033e76", "function_space/smoke": "ffef19294904749f",
    "function_space/full": "4d496301e6b37dc2",
    "function_space_tsne/default": "6730555061171674", "function_space_tsne/smoke": "ef4da70177a6c20d",
    "function_space_tsne/full": "cfd213af2a0012bc",
    "generalization/default": "0e40141f1d390640", "generalization/smoke": "aa8a127903e55cd2",
    "generalization/full": "9324192d07561a81",
    "hardness/default": "6730555061171674", "hardness/smoke": "ef4da70177a6c20d", "hardness/full": "cfd213af2a0012bc",
    "independent_vs_joint/default": "48d820bcdfac0de1", "independent_vs_joint/smoke": "8e7e0ea244489b2a",
    "independent_vs_joint/full": "13c49e891cef3471", "independent_vs_joint/full/cnn_train": "4c289e23cd44319a",
    "learner_dropout/default": "48d820bcdfac0de1", "learner_dropout/smoke": "8e7e0ea244489b2a",
    "learner_dropout/full": "13c49e891cef3471",
    "minority_groups/default": "d5b6abf155c624f4", "minority_groups/default/adult_train": "56e78001ac7d1ab7",
    "minority_groups/smoke": "947188906680e528", "minority_groups/smoke/adult_train": "43ac414288eb3f1b",
    "minority_groups/full": "450ca4c2c536f430", "minority_groups/full/adult_train": "ca209854158aad1a",
    "randomness/default": "8976baf26a1b488a", "randomness/smoke": "cf53dd27c31c629e",
    "randomness/full": "3acde2635d871e76",
    "reinit/default": "f2534c31f3033e76", "reinit/smoke": "ffef19294904749f", "reinit/full": "4d496301e6b37dc2",
    "similarity/default": "6730555061171674", "similarity/smoke": "ef4da70177a6c20d",
    "similarity/full": "cfd213af2a0012bc",
    "subspace/default": "6730555061171674", "subspace/smoke": "ef4da70177a6c20d", "subspace/full": "cfd213af2a0012bc",
    "tabular_collusion/default": "896a0c19accffbf1", "tabular_collusion/default/abalone_train": "9c2e97363fd54bcb",
    "tabular_collusion/smoke": "2661c888527b2dcd", "tabular_collusion/smoke/abalone_train": "a87662a8f81767d7",
    "tabular_collusion/full": "896a0c19accffbf1", "tabular_collusion/full/abalone_train": "7c3665f5636bd077",
}


def test_profile_config_keys_are_unchanged(cache, monkeypatch):
    for variable in ("FAIRENS_EXECUTOR", "FAIRENS_MAX_GROUP"):
        monkeypatch.delenv(variable, raising=False)
    keys = {}
    for chapter in [None, *sorted(CHAPTERS)]:
        for profile in PROFILES:
            settings = chapter_settings(chapter, profile)
            keys[f"{chapter}/{profile}"] = settings.config.key()
            for name, overrides in vars(settings).items():
                if name.endswith("_train") and overrides:
                    keys[f"{chapter}/{profile}/{name}"] = settings.config.replace(**overrides).validate().key()
    assert keys == EXPECTED_KEYS

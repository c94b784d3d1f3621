"""Ensemble gains under corrupted inputs (fairens_core.analysis.corruption), on hand-made predictions."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from fairens_core.analysis import corruption as C
from fairens_core.corruptions import CORRUPTIONS_1D, corrupt

Y = torch.tensor([0, 0, 1, 1])


def probs_from(predictions, confidences) -> torch.Tensor:
    """(M, N, 2) probabilities: member m puts confidences[m][n] on class predictions[m][n]."""
    pred, conf = torch.tensor(predictions), torch.tensor(confidences)
    p = torch.empty(*pred.shape, 2)
    p[..., 0] = torch.where(pred == 0, conf, 1 - conf)
    p[..., 1] = 1 - p[..., 0]
    return p


@pytest.fixture
def probs_by():
    """Two members, four examples, two classes.

    Clean: class 0 is easy (both members right), class 1 is hard (member B misses example 3,
    but A is more confident, so the ensemble is right): top-k = [0], bottom-k = [1] for K = 1.
    ("noise", 1): each member misses one class-0 example, with little confidence, so the
    ensemble gets class 0 right; class 1 is right everywhere. The clean top-k class is now the
    harder one, but the groups stay as ranked on the clean inputs.
    ("noise", 2): member B is wrong everywhere and confident, so the ensemble follows it.
    """
    return {
        C.CLEAN: probs_from([[0, 0, 1, 1], [0, 0, 1, 0]], [[0.8] * 4, [0.8, 0.8, 0.8, 0.6]]),
        ("noise", 1): probs_from([[1, 0, 1, 1], [0, 1, 1, 1]], [[0.6, 0.9, 0.9, 0.9], [0.9, 0.6, 0.9, 0.9]]),
        ("noise", 2): probs_from([[0, 0, 1, 1], [1, 1, 0, 0]], [[0.6] * 4, [0.9] * 4]),
    }


def row(frame, **where):
    sel = frame
    for column, value in where.items():
        sel = sel[sel[column] == value]
    assert len(sel) == 1, where
    return sel.iloc[0]


def test_severity_gains(probs_by):
    gains = C.severity_gains(probs_by, Y, k=1)
    assert list(gains.columns) == ["corruption", "severity", "group", "single", "ensemble", "gain", "fixed"]
    assert gains["severity"].tolist() == [0] * 3 + [1] * 3 + [2] * 3
    clean_bottom = row(gains, severity=0, group="bottom-k")
    assert (clean_bottom.single, clean_bottom.ensemble, clean_bottom.gain) == (0.75, 1.0, pytest.approx(4 / 3))
    assert clean_bottom.fixed == 1.0  # the ensemble fixes every error its members make on class 1
    assert row(gains, severity=0, group="top-k").gain == 1.0
    # groups stay those of the clean inputs: top-k is still class 0, now the one that gains
    top, bottom = row(gains, severity=1, group="top-k"), row(gains, severity=1, group="bottom-k")
    assert (top.single, top.ensemble, top.gain) == (0.5, 1.0, 2.0)
    assert (bottom.single, bottom.gain) == (1.0, 1.0) and math.isnan(bottom.fixed)  # no error to fix
    assert row(gains, severity=1, group="all").gain == pytest.approx(1.0 / 0.75)
    worst = row(gains, severity=2, group="all")
    assert (worst.single, worst.ensemble, worst.gain, worst.fixed) == (0.5, 0.0, 0.0, -1.0)


def test_gain_is_nan_when_no_member_is_right(probs_by):
    probs_by[("noise", 3)] = probs_from([[1, 1, 0, 0], [1, 1, 0, 0]], [[0.9] * 4] * 2)
    gains = C.severity_gains(probs_by, Y, k=1)
    assert gains[gains.severity == 3]["gain"].isna().all()
    assert C.average_over_corruptions(gains[gains.severity == 3])["gain"].isna().all()


def test_severity_zero_repeats_the_clean_rows_for_every_corruption(probs_by):
    probs_by[("blur", 1)] = probs_by[("noise", 2)]
    gains = C.severity_gains(probs_by, Y, k=1)
    assert gains["corruption"].unique().tolist() == ["noise", "blur"]
    clean = gains[gains.severity == 0].set_index(["corruption", "group"])
    pd.testing.assert_series_equal(clean.loc["noise", "gain"], clean.loc["blur", "gain"])


def test_average_is_the_gain_of_the_average_accuracies():
    frame = pd.DataFrame({"corruption": ["a", "b", "a", "b"], "severity": [1, 1, 2, 2], "group": "all",
                          "single": [0.5, 1.0, 0.4, 0.6], "ensemble": [1.0, 1.0, 0.6, 0.6], "gain": [2.0, 1.0, 1.5, 1.0]})
    avg = C.average_over_corruptions(frame)
    assert list(avg.columns) == list(frame.columns) and (avg.corruption == C.AVERAGE).all()
    assert avg.gain.tolist() == pytest.approx([1.0 / 0.75, 0.6 / 0.5])  # not the mean gains 1.5 and 1.25
    fixed = C.average_over_corruptions(frame.assign(fixed=0.0))["fixed"]  # recomputed, as the gain
    assert fixed.tolist() == pytest.approx([0.25 / 0.25, 0.1 / 0.5])


def pools_frame(pools=3, types=("a", "b"), seed=0) -> pd.DataFrame:
    """Rows of `severity_gains` for several pools (column "pool"): group "all", severities 0-2."""
    gen = torch.Generator().manual_seed(seed)
    rows = [{"corruption": name, "severity": s, "group": "all", "single": single, "ensemble": single * (1 + lift),
             "pool": pool}
            for pool in range(pools) for name in types for s in (0, 1, 2)
            for single, lift in [(0.9 - 0.2 * s + 0.05 * torch.rand(1, generator=gen).item(),
                                  0.02 * s + 0.03 * torch.rand(1, generator=gen).item())]]
    frame = pd.DataFrame(rows)
    frame.insert(5, "gain", frame["ensemble"] / frame["single"])
    return frame


def test_average_over_pools_keeps_the_corruptions_and_recomputes_the_gain():
    frame = pools_frame(pools=2)
    mean = C.average_over_pools(frame)
    assert list(mean.columns) == ["corruption", "severity", "group", "single", "ensemble", "gain"]
    assert len(mean) == 2 * 3
    row = mean[(mean.corruption == "b") & (mean.severity == 2)].iloc[0]
    part = frame[(frame.corruption == "b") & (frame.severity == 2)]
    assert row.single == pytest.approx(part.single.mean()) and row.ensemble == pytest.approx(part.ensemble.mean())
    assert row.gain == pytest.approx(part.ensemble.mean() / part.single.mean())


def test_spread_se_adds_the_spread_over_pools_and_over_types_in_quadrature():
    frame = pools_frame(pools=4, types=("a", "b", "c"))

    def rise(table):
        return table["gain", "all"][2] - table["gain", "all"][1]

    by_pool = [rise(C.severity_table(C.average_over_corruptions(frame[frame.pool == p]))) for p in range(4)]
    by_type = [rise(C.severity_table(C.average_over_pools(frame[frame.corruption == t]))) for t in "abc"]
    se_pool = pd.Series(by_pool).std() / math.sqrt(4)
    se_type = pd.Series(by_type).std() / math.sqrt(3)
    assert C.spread_se(frame, rise) == pytest.approx(math.hypot(se_pool, se_type))
    assert C.spread_se(frame, rise) > max(se_pool, se_type) > 0


def test_spread_se_needs_three_pools_and_two_corruption_types():
    def rise(table):
        return table["gain", "all"][2] - table["gain", "all"][1]

    assert math.isnan(C.spread_se(pools_frame(pools=2), rise))  # below stats.MIN_SEEDS pools
    assert math.isnan(C.spread_se(pools_frame(pools=3, types=("a",)), rise))  # one type: no spread over types
    assert math.isfinite(C.spread_se(pools_frame(pools=3), rise))


def test_severity_curves_end_at_the_full_pool_and_start_at_one(probs_by):
    curves = C.severity_curves(probs_by, Y, k=1, sizes=[1, 2], draws=10)
    assert len(curves) == 3 * 2 * 3  # (clean + 2 severities) × sizes × groups
    assert (curves[curves["size"] == 1]["gain"] == 1).all()  # every single member, exactly
    gains = C.severity_gains(probs_by, Y, k=1)
    full = curves[curves["size"] == 2]
    for _, r in full[full.corruption == "noise"].iterrows():
        assert r.gain == pytest.approx(row(gains, severity=r.severity, group=r.group).gain)
    clean = full[full.corruption == "clean"].set_index("group")
    assert clean.loc["bottom-k", "gain"] == pytest.approx(4 / 3)


def test_severity_trend():
    frame = pd.DataFrame({"corruption": "a", "severity": [0, 1, 2, 3] * 2,
                          "group": ["top-k"] * 4 + ["bottom-k"] * 4,
                          "gain": [9.0, 1.3, 1.2, 1.1, 0.0, 1.0, 1.1, 1.5]})
    trend = C.severity_trend(frame)
    up, down = trend.loc[("a", "bottom-k")], trend.loc[("a", "top-k")]
    assert (up.spearman, up.gain_low, up.gain_high) == (pytest.approx(1.0), 1.0, 1.5)
    assert up.change == pytest.approx(0.5)
    assert down.spearman == pytest.approx(-1.0) and down.change == pytest.approx(-0.2)  # severity 0 ignored
    flat = C.severity_trend(frame.assign(gain=1.0))
    assert math.isnan(flat.loc[("a", "top-k"), "spearman"])


def test_corrupted_probs_runs_the_members_on_every_corrupted_copy():
    x = torch.randn(5, 1, 40)
    weights = torch.randn(3, 40, 4)  # three linear "members", four classes

    def predict(inputs):
        return torch.einsum("nl,mlc->mnc", inputs[:, 0], weights)

    inputs = C.corrupted_inputs(x, ["shift", "blur"], [1, 4], seed=2)
    out = C.corrupted_probs(predict, inputs)
    assert list(out) == [C.CLEAN, ("shift", 1), ("shift", 4), ("blur", 1), ("blur", 4)]
    assert inputs[C.CLEAN] is x
    torch.testing.assert_close(out[C.CLEAN], predict(x).softmax(-1))
    torch.testing.assert_close(out[("shift", 4)], predict(corrupt(x, "shift", 4, seed=2)).softmax(-1))
    for p in out.values():
        assert p.shape == (3, 5, 4)
        torch.testing.assert_close(p.sum(-1), torch.ones(3, 5))
    every = C.corrupted_inputs(x)
    assert len(every) == 1 + 5 * len(CORRUPTIONS_1D)


def test_signal_examples_and_image_grid():
    x = torch.randn(1, 1, 40)
    frame = C.signal_examples(x, ["shift", "contrast"], [0, 5])
    assert len(frame) == 2 * 2 * 40 and list(frame.columns) == ["corruption", "severity", "t", "value"]
    clean = frame[(frame.corruption == "shift") & (frame.severity == 0)]
    assert clean["value"].tolist() == pytest.approx(x[0, 0].tolist())
    img = torch.randint(0, 255, (1, 1, 32, 32), dtype=torch.uint8)
    grid = C.image_grid(img, ["contrast", "gaussian_noise", "fog"], [0, 1, 5], pad=2)
    assert grid.shape == (3 * 34, 3 * 34, 3) and grid.dtype.name == "uint8"
    assert (grid[:32, :32, 1] == img[0, 0].numpy()).all() and (grid[32:34] == 255).all()


def test_severity_disagreement_hand_computed(probs_by):
    table = C.severity_disagreement(probs_by, Y, k=1)
    assert list(table.columns) == ["corruption", "severity", "group", "churn", "churn_one_right", "won", "lost"]
    assert table["severity"].tolist() == [0] * 3 + [1] * 3 + [2] * 3
    # clean: the members split only on example 3 (class 1, the bottom-k class), where A is right and wins the vote
    clean = row(table, severity=0, group="bottom-k")
    assert (clean.churn, clean.churn_one_right, clean.won, clean.lost) == (50, 50, 25, 0)
    assert row(table, severity=0, group="top-k").churn == 0
    # severity 1: both class-0 examples split, one member right each time, and the vote goes right
    top = row(table, severity=1, group="top-k")
    assert (top.churn, top.churn_one_right, top.won, top.lost) == (100, 100, 50, 0)
    # severity 2: B (wrong everywhere) outvotes A (right everywhere): every example is lost
    every = row(table, severity=2, group="all")
    assert (every.churn, every.churn_one_right, every.won, every.lost) == (100, 100, 0, 50)
    gains = C.severity_gains(probs_by, Y, k=1)
    for severity in (0, 1, 2):  # won - lost is the gain in points
        r, g = row(table, severity=severity, group="all"), row(gains, severity=severity, group="all")
        assert r.won - r.lost == pytest.approx(100 * (g.ensemble - g.single))

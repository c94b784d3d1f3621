"""Re-initialising part of the parent at the fork (the coupling paper, §3, Fig. 1i-j, Fig. 3).

At the spawn time t every child gets the parent's weights except for a share of the
parameters, which it draws afresh from the initialiser with its own seed, and then trains
with its own batch order (the engine's `reinit_fraction` / `reinit_from`). The coupling paper walks
through the network from the input ("low" layers, `reinit_from="input"`) or from the output
("high", `reinit_from="output"`), re-initialising a growing share of the parameters, and
measures what the children's K-ensemble gains (Fig. 1i-j) and the error barrier on the
linear path between two children (Fig. 3).

The engine re-initialises whole parameter tensors: it walks the tensors from the chosen side
until the requested fraction of all parameters is covered (`ensemble.reinit_names`). On a
small network a nominal fraction therefore jumps to the next layer boundary;
:func:`reinit_plan` reports the share actually re-initialised and drops nominal fractions
that select the same tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..config import TrainConfig
from ..data import load_dataset, prepare_inputs
from ..derived import derived_frame
from ..ensemble import reinit_names
from ..models import build_model
from .coupling import condition_config
from .stats import MIN_SEEDS, mean_se

SIDES = ("input", "output")
SIDE_LABELS = {"input": "low (from the input)", "output": "high (from the output)"}


# ---------------------------------------------------------------------------- what is re-initialised
def parameter_counts(cfg: TrainConfig, input_shape, num_classes: int) -> list[tuple[str, int]]:
    """(name, size) of every parameter tensor of `cfg`'s model, in registration (data-flow) order."""

    model = build_model(cfg.model, tuple(input_shape), num_classes, width=cfg.width, dropout=cfg.dropout)
    return [(name, p.numel()) for name, p in model.named_parameters()]


NORMALISATIONS = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)


def parameter_layers(cfg: TrainConfig, input_shape, num_classes: int) -> dict[str, str]:
    """{parameter tensor: its layer} for `cfg`'s model: the module that owns it, except that a
    normalisation (batch, layer or group norm) belongs to the weight layer before it, so that a
    convolution and its batch norm are re-initialised together, as one layer."""
    model = build_model(cfg.model, tuple(input_shape), num_classes, width=cfg.width, dropout=cfg.dropout)
    layers, previous = {}, None
    for module_name, module in model.named_modules():
        own = [f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters(recurse=False)]
        if not own:
            continue
        layer = previous if isinstance(module, NORMALISATIONS) and previous is not None else module_name
        layers.update(dict.fromkeys(own, layer))
        previous = layer
    return layers


def _layer(name: str, layer_of: Mapping[str, str] | None) -> str:
    if layer_of is not None:
        return layer_of[name]
    return name.rsplit(".", 1)[0] if "." in name else name


def layer_table(counts: Sequence[tuple[str, int]], layer_of: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Parameter tensors grouped into layers, in data-flow order: by `layer_of` ({tensor: layer},
    e.g. :func:`parameter_layers`), or by default by the module that owns them.

    Columns: layer, tensors (names), parameters, share (of all parameters),
    share_from_input / share_from_output (cumulative share up to and including this layer,
    walking from that side).
    """
    layers: dict[str, list] = {}
    for name, n in counts:
        layers.setdefault(_layer(name, layer_of), []).append((name, n))
    total = sum(n for _, n in counts)
    rows = [{"layer": k, "tensors": [n for n, _ in v], "parameters": sum(c for _, c in v)} for k, v in layers.items()]
    frame = pd.DataFrame(rows)
    frame["share"] = frame["parameters"] / total
    frame["share_from_input"] = frame["parameters"].cumsum() / total
    frame["share_from_output"] = frame["parameters"][::-1].cumsum()[::-1] / total
    return frame


def layer_fractions(counts: Sequence[tuple[str, int]], side: str,
                    layer_of: Mapping[str, str] | None = None) -> list[float]:
    """Nominal `reinit_fraction`s that re-initialise exactly the first 1, 2, ... layers from `side`.

    Each is the cumulative parameter share of those layers minus half a parameter, so the
    engine's walk (`reinit_names`) stops exactly at the layer boundary.
    """
    if side not in SIDES:
        raise ValueError(f"side={side!r}: choose one of {list(SIDES)}")
    table = layer_table(counts, layer_of)
    total = sum(n for _, n in counts)
    sizes = table["parameters"].tolist()
    if side == "output":
        sizes = sizes[::-1]
    cumulative = np.cumsum(sizes)
    return [float((c - 0.5) / total) for c in cumulative]


def reinit_plan(counts: Sequence[tuple[str, int]], fractions: Sequence[float] | None = None,
                sides: Sequence[str] = SIDES, layer_of: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The distinct re-initialisations to train: one row per (side, set of tensors).

    fractions: nominal `reinit_fraction`s in (0, 1]; None: every layer boundary
    (:func:`layer_fractions`, with layers as `layer_of` groups them). Fractions that select the
    same tensors as a smaller one on the same side are dropped. Re-initialising every tensor is
    the same run from either side; it is kept once, as side "all" (trained with reinit_from="input").

    Columns: side, fraction (nominal, what the config gets), reinit_from, share (of all
    parameters actually re-initialised), tensors (their names), layers (how many layers they
    touch).
    """
    total = sum(n for _, n in counts)
    sizes = dict(counts)
    everything = {n for n, _ in counts}
    rows, seen = [], set()
    for side in sides:
        grid = layer_fractions(counts, side, layer_of) if fractions is None else sorted(fractions)
        for f in grid:
            if not 0 < f <= 1:
                raise ValueError(f"re-initialised fractions must be in (0, 1]: {f}")
            names = reinit_names(counts, f, side)
            key = frozenset(names)
            if key == everything:
                side_label, from_, key = "all", "input", ("all", key)
            else:
                side_label, from_, key = side, side, (side, key)
            if key in seen:
                continue
            seen.add(key)
            rows.append({"side": side_label, "fraction": f, "reinit_from": from_,
                         "share": sum(sizes[n] for n in names) / total, "tensors": names,
                         "layers": len({_layer(n, layer_of) for n in names})})
    frame = pd.DataFrame(rows)
    if len(frame):
        order = {s: i for i, s in enumerate([*SIDES, "all"])}
        frame = frame.sort_values(["side", "share"], key=lambda c: c.map(order) if c.name == "side" else c)
    return frame.reset_index(drop=True)


def reinit_configs(base: TrainConfig, t: int, plan: pd.DataFrame, reset: bool = True) -> dict[tuple[str, float], TrainConfig]:
    """{(side, share): config} for every row of `plan`, plus ("none", 0.0): the children without re-init.

    All spawned at step `t` with the coupled-to-t-reset recipe (`reset=False`: coupled-to-t),
    so ("none", 0.0) is that condition's record of chapter "coupling" (a cache hit).
    """
    condition = "coupled-to-t-reset" if reset else "coupled-to-t"
    plain = condition_config(base, condition, t)
    out = {("none", 0.0): plain}
    for row in plan.itertuples():
        out[(row.side, float(row.share))] = plain.replace(reinit_fraction=float(row.fraction),
                                                          reinit_from=row.reinit_from).validate()
    return out


# ---------------------------------------------------------------------------- the error barrier
BN_BATCHES, BN_BATCH_SIZE = 20, 500  # training inputs that re-estimate BatchNorm along a path


class TestSet:
    """The test (and a few training) inputs of a record's dataset, prepared as in training."""

    def __init__(self, record, device: str = "cpu", bn_batches: int = BN_BATCHES, batch_size: int = BN_BATCH_SIZE):

        cfg = TrainConfig.from_dict(record.config)
        ds = load_dataset(cfg.dataset, cfg.data_root, **cfg.dataset_options)
        self.device = torch.device(device)
        self.x = prepare_inputs(ds.x_test, ds.mean, ds.std, self.device)
        self.y = ds.y_test.to(self.device)
        n = min(len(ds.y_train), bn_batches * batch_size)
        x_train = prepare_inputs(ds.x_train[:n], ds.mean, ds.std, self.device)
        self.bn_batches = list(x_train.split(batch_size))
        self.bn_request = (bn_batches, batch_size)
        self.batch_size = batch_size

    @torch.no_grad()
    def error(self, model: torch.nn.Module) -> float:
        """Test error (fraction) of a model in eval mode."""
        model = model.to(self.device).eval()
        wrong = sum(int((model(x).argmax(-1) != y).sum()) for x, y in
                    zip(self.x.split(self.batch_size), self.y.split(self.batch_size)))
        return wrong / len(self.y)


def child_pairs(members: int, pairs: int) -> list[tuple[int, int]]:
    """Disjoint member pairs (0, 1), (2, 3), ...; then (1, 2), (3, 4), ... if more are asked for."""
    out = [(i, i + 1) for i in range(0, members - 1, 2)]
    out += [(i, i + 1) for i in range(1, members - 1, 2)]
    return out[:pairs]


def barrier_curves(record, test: TestSet | None = None, pairs: int = 2, alphas: int | Sequence[float] = 11,
                   device: str = "cpu") -> pd.DataFrame:
    """Test error on the linear path between pairs of members of `record` (the coupling paper, Fig. 3).

    θ(α) = (1 − α) θ_i + α θ_j, α on a grid from 0 to 1 (`metrics.interpolation_curve`);
    BatchNorm statistics, if the model has any, are re-estimated on training inputs at
    every α. Needs the record's final weights (`save_weights=True`).

    Returns one row per (pair, alpha): pair ("i-j"), alpha, error (%). Cached as a derived
    result of the record (`derived`), so a packed record without weights still has its curves.
    """
    grid = alphas if isinstance(alphas, int) else [float(a) for a in alphas]
    params = {"pairs": pairs, "alphas": grid, "bn": list(test.bn_request if test else (BN_BATCHES, BN_BATCH_SIZE))}
    return derived_frame(record, "barrier_curves", 1, params,
                         lambda: _barrier_curves(record, test or TestSet(record, device=device), pairs, alphas))


def _barrier_curves(record, test: TestSet, pairs: int, alphas) -> pd.DataFrame:
    models = record.models()
    bn = test.bn_batches if M.has_batchnorm(models[0]) else None
    rows = []
    for i, j in child_pairs(record.members, pairs):
        curve = M.interpolation_curve(models[i], models[j], test.error, alphas=alphas, bn_batches=bn)
        rows += [{"pair": f"{i}-{j}", "alpha": float(a), "error": 100 * float(e)}
                 for a, e in zip(curve.alphas, curve.values)]
    return pd.DataFrame(rows)


def barrier_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Error barrier (points) of every pair's path: max_α E(α) − ½ (E(0) + E(1)) (`metrics.error_barrier`).

    `curves`: frame(s) of :func:`barrier_curves`, with any extra key columns (kept as the
    grouping). Columns: the keys, pair, barrier, endpoint_error (mean of the two ends).
    """
    keys = [c for c in curves.columns if c not in ("alpha", "error")]
    rows = []
    for values, g in curves.groupby(keys, sort=False, dropna=False):
        g = g.sort_values("alpha")
        a, e = g["alpha"].to_numpy(), g["error"].to_numpy()
        rows.append({**dict(zip(keys, values if isinstance(values, tuple) else (values,))),
                     "barrier": M.error_barrier(a, e), "endpoint_error": 0.5 * (e[0] + e[-1])})
    return pd.DataFrame(rows)


def curve_area(share: Sequence[float], values: Sequence[float]) -> float:
    """Area under a piecewise-linear curve of `values` against the re-initialised `share`, over [0, 1].

    Both sides' curves start at share 0 (no re-init) and end at share 1 (everything), so
    their areas compare them over the whole range even when their layer boundaries differ.
    """
    order = np.argsort(np.asarray(share, dtype=float))
    x, y = np.asarray(share, dtype=float)[order], np.asarray(values, dtype=float)[order]
    if x[0] > 0 or x[-1] < 1:
        raise ValueError("the curve must cover shares 0 and 1 (add the no-re-init and all-re-init points)")
    return float(np.trapezoid(y, x) if hasattr(np, "trapezoid") else np.trapz(y, x))


def first_share_reaching(share: Sequence[float], values: Sequence[float], target: float) -> float:
    """Smallest re-initialised share whose value reaches `target` (NaN if none does)."""
    hits = [s for s, v in sorted(zip(share, values)) if v >= target]
    return float(hits[0]) if hits else float("nan")


def reinit_records_by_side(records: Mapping) -> dict[str, dict[float, object]]:
    """{side: {share: record}} with the no-re-init record (share 0) and the all record (share 1) in each side."""
    none = records.get(("none", 0.0))
    everything = {k: r for k, r in records.items() if k[0] == "all"}
    out = {}
    for side in SIDES:
        d = {0.0: none} if none is not None else {}
        d.update({share: r for (s, share), r in records.items() if s == side})
        d.update({share: r for (_, share), r in everything.items()})
        out[side] = dict(sorted(d.items()))
    return out


# ---------------------------------------------------------------------------- several seeds
def mean_over_seeds(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The numeric columns of a per-seed frame (a column seed) averaged over the seeds, one row per
    `keys` (in first-seen order; missing keys such as a reference's spawn_step kept)."""
    numeric = [c for c in frame.select_dtypes("number").columns if c not in ("seed", *keys)]
    return frame.groupby(list(keys), sort=False, dropna=False)[numeric].mean().reset_index()


def side_curves(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{side: its rows sorted by share}, each through the shared ends: no re-init ("none", share 0)
    and everything ("all", share 1). `frame`: one seed's rows with columns side and share."""
    return {side: frame[frame["side"].isin([side, "none", "all"])].sort_values("share") for side in SIDES}


def areas_by_seed(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`curve_area` of every column for each side, per seed: columns seed, then "<side> <column>"."""
    rows = []
    for seed, rows_of_seed in frame.groupby("seed", sort=False):
        curves = side_curves(rows_of_seed)
        rows.append({"seed": seed, **{f"{side} {col}": curve_area(curves[side]["share"], curves[side][col])
                                      for side in SIDES for col in columns}})
    return pd.DataFrame(rows)


def gaps_to_reference(frame: pd.DataFrame, reference: pd.DataFrame, column: str = "ensemble_acc") -> pd.DataFrame:
    """`column` of every (side, share) minus the reference's, paired by seed: columns side, share,
    gap (mean over seeds), se (NaN below `stats.MIN_SEEDS` seeds: no 2-SE rule on fewer) and seeds.
    `reference`: one row per seed."""
    ref = reference.set_index("seed")[column]
    diff = frame.assign(gap=frame[column] - frame["seed"].map(ref))
    rows = []
    for (side, share), g in diff.groupby(["side", "share"], sort=False):
        mean, se, n = mean_se(g["gap"], min_count=MIN_SEEDS)
        rows.append({"side": side, "share": share, "gap": mean, "se": se, "seeds": n})
    return pd.DataFrame(rows)

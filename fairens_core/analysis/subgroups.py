"""Part I, minority subgroups: does the ensemble help an under-represented group most?

Ko et al. (2023) §3.1-3.2 (CelebA: blond *males*), §4.2-4.3 (which source of randomness matters)
and App. H, Tables 2-3 (UCI Adult, >50K, by race and sex; an MLP and a decision-tree
ensemble). The protected attribute is not the target: every test example carries a subgroup
code (synthetic `group`, Adult `race` / `sex`, CelebA `Male`), and we compare the ensemble
with its average member on every subgroup, optionally within one class only (the paper's
">50K Female" row is the accuracy on the women who earn more than 50K).

The functions return tidy `pandas.DataFrame`s; accuracies are fractions in [0, 1] until
`summarize` turns them into percentages.
"""

from __future__ import annotations

import pandas as pd
import torch

from .. import metrics as M
from ..claims import exceeds
from ..randomness import parse_vary
from ..runner import run
from .fairness import subgroup_table
from .stats import MIN_SEEDS, mean_se

# Ko et al. (2023) §4.2 names of the ablations: which sources of randomness differ between members.
ABLATIONS = {
    "batch_order": "BatchOrder",
    "init": "Init",
    "augmentation": "DA",
    "init+batch_order": "Init&BatchOrder",
    "all": "All",
}


def subgroup_rows(probs: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, names: list[str],
                  label: int | None = None, pooled: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Average member vs ensemble on every subgroup of one ensemble.

    probs (M, N, C) member probabilities, y (N,) labels, groups (N,) codes indexing `names`.
    `label`: keep only the examples of that class (Ko et al. 2023, App. H rows are ">50K" examples).
    `pooled`: extra subgroups made of several names, e.g. {"Nonwhite": [...]} (App. H Table 2).

    One row per subgroup: "all" (every kept example), then `names` in code order (absent
    ones skipped), then the pooled ones. Columns: subgroup, n, base (mean accuracy of the
    members), ensemble (accuracy of the averaged probabilities), gain (ensemble / base, the
    relative gain of §3.2), fixed (the share of the average member's errors that the ensemble
    fixes, `metrics.errors_fixed`), churn (mean pairwise disagreement of the members, §4.1 eq. 1).
    """
    groups = torch.as_tensor(groups)
    if label is not None:
        keep = y == label
        probs, y, groups = probs[:, keep], y[keep], groups[keep]
    subsets = {"all": list(names)} | {name: [name] for name in names} | dict(pooled or {})
    rows = []
    for subgroup, members in subsets.items():
        mask = torch.isin(groups, torch.tensor([names.index(n) for n in members]))
        if not mask.any():
            continue
        one = torch.zeros(int(mask.sum()), dtype=torch.int64)  # the whole subset as one group
        row = subgroup_table(probs[:, mask], y[mask], one, [subgroup]).iloc[0]
        churn = M.mean_pairwise_churn(probs[:, mask]) if len(probs) > 1 else 0.0
        rows.append({"subgroup": subgroup, "n": row["n"], "base": row["single"], "ensemble": row["ensemble"],
                     "gain": row["gain"], "fixed": M.errors_fixed(row["ensemble"], row["single"]), "churn": churn})
    return pd.DataFrame(rows)


def effective_vary(config) -> str:
    """The sources of randomness that really differ between the members of `config`.

    Varying the augmentation seed changes nothing when nothing uses it (no augmentation and no
    dropout, e.g. the Adult MLPs), so "all" then trains exactly the members of
    "init+batch_order": same cache record.
    """
    sources = [s for s in parse_vary(config.vary) if s != "augmentation" or config.augment or config.dropout]
    return "+".join(sources) or "none"


def ablation_table(config, ablations, seeds, attribute: str, label: int | None = None,
                   pooled: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Train (or load) one ensemble per (ablation, seed) and measure every subgroup.

    `config` is a TrainConfig whose `vary` is replaced by each ablation (a key of ABLATIONS
    or any vary string) and whose `seed` by each of `seeds` (the repeats); `attribute` names
    the dataset's group attribute; `label` and `pooled` as in `subgroup_rows`. Returns the
    stacked `subgroup_rows` with first columns ablation (the paper's name), sources (what
    actually differs, see `effective_vary`) and seed.
    """
    frames = []
    for vary in ablations:
        sources = effective_vary(config.replace(vary=vary))
        for seed in seeds:
            record = run(config.replace(vary=sources, seed=seed), quiet=True)
            names = record.meta["group_names"][attribute]
            rows = subgroup_rows(record.probs(), record.y_test, record.groups_test[attribute], names, label, pooled)
            frames.append(rows.assign(ablation=ABLATIONS.get(vary, vary), sources=sources, seed=seed))
    return _columns_first(pd.concat(frames, ignore_index=True), ["ablation", "sources", "seed"])


def repeat_table(probs_by_seed: dict, data, attribute: str, model: str, label: int | None = None,
                 pooled: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """`ablation_table`'s format for ensembles trained elsewhere (e.g. `trees.train_tree_ensemble`).

    probs_by_seed {seed: (M, N_test, C) probs}; `data` has y_test, groups_test and group_names
    (a `data.Dataset`); `model` fills the ablation and sources columns.
    """
    y, groups, names = data.y_test, data.groups_test[attribute], data.group_names[attribute]
    frames = [subgroup_rows(p, y, groups, names, label, pooled).assign(ablation=model, sources=model, seed=seed)
              for seed, p in probs_by_seed.items()]
    return _columns_first(pd.concat(frames, ignore_index=True), ["ablation", "sources", "seed"])


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over the repeats of every (ablation, subgroup), in %.

    Columns: ablation, subgroup, n, base, base_std, ensemble, ensemble_std, points
    (ensemble - base), gain, gain_std, fixed (errors fixed, %), churn; rows in the order of `frame`.
    Standard deviations are population ones (ddof=0), as for a handful of repeats in Ko et al. 2023.
    """
    f = frame.assign(base=100 * frame["base"], ensemble=100 * frame["ensemble"], fixed=100 * frame["fixed"],
                     churn=100 * frame["churn"])
    f["points"] = f["ensemble"] - f["base"]
    grouped = f.groupby(["ablation", "subgroup"], sort=False)
    mean, std = grouped.mean(numeric_only=True), grouped.std(ddof=0, numeric_only=True)
    out = pd.DataFrame({
        "n": mean["n"].round().astype(int),
        "base": mean["base"], "base_std": std["base"],
        "ensemble": mean["ensemble"], "ensemble_std": std["ensemble"],
        "points": mean["points"], "gain": mean["gain"], "gain_std": std["gain"], "fixed": mean["fixed"],
        "churn": mean["churn"],
    })
    return out.reset_index()


def gain_by_role(frame: pd.DataFrame, minority: str | None = None, majority: str | None = None,
                 setting: str = "") -> pd.DataFrame:
    """The rows of one minority and one majority subgroup of every ablation and repeat.

    `frame` is an `ablation_table` / `repeat_table` frame. By default the minority is the
    subgroup with the fewest examples and the majority the one with the most ("all" is
    excluded, pooled rows are not: name them when you mean e.g. "Nonwhite" vs "White").
    Columns: ablation, seed, role ("minority" / "majority"), subgroup, n, base, ensemble,
    gain, fixed, churn, and setting (`setting` followed by the ablation's name: a chart's label).
    """
    parts = []
    for ablation, f in frame[frame["subgroup"] != "all"].groupby("ablation", sort=False):
        sizes = f.groupby("subgroup")["n"].mean()
        for role, name in (("minority", minority or sizes.idxmin()), ("majority", majority or sizes.idxmax())):
            parts.append(f[f["subgroup"] == name].assign(role=role))
    columns = ["ablation", "seed", "role", "subgroup", "n", "base", "ensemble", "gain", "fixed", "churn"]
    rows = pd.concat(parts, ignore_index=True)[columns]
    return rows.assign(setting=setting + rows["ablation"])


def relative_gain_text(gain: float) -> str:
    """A relative gain (ensemble / average member) as the percent change it means: 1.0104 → "+1.04 %"."""
    return f"{100 * (gain - 1):+.2f} %"


def minority_vs_majority(frame: pd.DataFrame, minority: str | None = None, majority: str | None = None) -> pd.DataFrame:
    """Per ablation: does the minority gain more than the majority? (Ko et al. 2023, §3.2, Fig. 3)

    Subgroups chosen as in `gain_by_role`. The gap (minority gain - majority gain) is taken
    within each repeat, then averaged. Columns: ablation, minority, majority, minority_gain,
    majority_gain, gap, gap_std (population std over the repeats), gap_se (standard error of the
    mean gap, NaN below two repeats), repeats, minority_points, majority_points (ensemble - base, in points),
    minority_fixed, majority_fixed (the share of the average member's errors the ensemble fixes, in %),
    fixed_gap (majority - minority, paired by repeat, in points of %) and fixed_gap_se (as gap_se).
    """
    roles = gain_by_role(frame, minority, majority)
    roles = roles.assign(points=100 * (roles["ensemble"] - roles["base"]))
    rows = []
    for ablation, f in roles.groupby("ablation", sort=False):
        wide = f.pivot(index="seed", columns="role", values=["gain", "points", "fixed"])
        gap = wide["gain"]["minority"] - wide["gain"]["majority"]
        fixed_gap = 100 * (wide["fixed"]["majority"] - wide["fixed"]["minority"])
        names = f.groupby("role")["subgroup"].first()
        rows.append({"ablation": ablation, "minority": names["minority"], "majority": names["majority"],
                     "minority_gain": wide["gain"]["minority"].mean(), "majority_gain": wide["gain"]["majority"].mean(),
                     "gap": gap.mean(), "gap_std": gap.std(ddof=0), "gap_se": mean_se(gap)[1],
                     "repeats": int(gap.notna().sum()),
                     "minority_points": wide["points"]["minority"].mean(),
                     "majority_points": wide["points"]["majority"].mean(),
                     "minority_fixed": 100 * wide["fixed"]["minority"].mean(),
                     "majority_fixed": 100 * wide["fixed"]["majority"].mean(),
                     "fixed_gap": fixed_gap.mean(), "fixed_gap_se": mean_se(fixed_gap)[1]})
    return pd.DataFrame(rows)


def describe_gap(gap: pd.Series) -> str:
    """One `minority_vs_majority` row as text: each role's relative gain over the average member in %
    ("Female +1.04% vs Male +0.33%"), then the gap between them in points of % ± its SE and the
    number of repeats."""
    return (f"{gap.minority} {100 * (gap.minority_gain - 1):+.2f}% vs {gap.majority} "
            f"{100 * (gap.majority_gain - 1):+.2f}% "
            f"(gap {100 * gap.gap:+.2f} ± {100 * gap.gap_se:.2f} SE, {int(gap.repeats)} repeats)")


def minority_gains_more(gap: pd.Series, min_repeats: int = 3) -> bool | None:
    """The pass rule of "the minority gains more" on one `minority_vs_majority` row: the gap exceeds
    two standard errors over the repeats; None (not testable) below ``min_repeats`` repeats or on an
    undefined gap."""
    return exceeds(gap.gap, gap.gap_se) if gap.repeats >= min_repeats else None


def same_members(frame: pd.DataFrame, a: str, b: str) -> bool:
    """Whether ablations ``a`` and ``b`` of an `ablation_table` frame trained the same members (the
    same effective sources of randomness, e.g. "All" with nothing to augment is "Init&BatchOrder");
    False when either is missing."""
    sources = frame.groupby("ablation")["sources"].first()
    return a in sources.index and b in sources.index and sources[a] == sources[b]


def churn_ratio(frame: pd.DataFrame, a: str, b: str, subgroup: str = "all") -> tuple[float, float, int]:
    """Churn of ablation ``a`` divided by that of ablation ``b`` on ``subgroup``, paired by seed:
    (mean, standard error, count) over the seeds of an `ablation_table` frame (a ratio, 1: equally
    diverse members)."""
    churn = churn_by_seed(frame, subgroup)
    return mean_se(churn[a] / churn[b])


def churn_by_seed(frame: pd.DataFrame, subgroup: str = "all") -> pd.DataFrame:
    """The members' churn on ``subgroup``: one row per seed, one column per ablation."""
    return frame[frame["subgroup"] == subgroup].pivot(index="seed", columns="ablation", values="churn")


def churn_by_setting(tables: dict, a: str, b: str, subgroup: str = "all") -> pd.DataFrame:
    """Churn of ablations ``a`` and ``b`` and their ratio in every setting {setting: `ablation_table`
    frame} (e.g. one per learning rate): one row per setting with columns setting, churn_a and
    churn_b (mean over seeds, %), ratio (a / b, paired by seed), ratio_se and seeds (no rows, same
    columns, for no settings)."""
    rows = []
    for setting, frame in tables.items():
        churn = churn_by_seed(frame, subgroup)
        ratio, se, n = churn_ratio(frame, a, b, subgroup)
        rows.append({"setting": setting, "churn_a": 100 * churn[a].mean(), "churn_b": 100 * churn[b].mean(),
                     "ratio": ratio, "ratio_se": se, "seeds": n})
    return pd.DataFrame(rows, columns=["setting", "churn_a", "churn_b", "ratio", "ratio_se", "seeds"])


def churn_ratio_change(tables: dict, a: str, b: str, low, high, subgroup: str = "all") -> tuple[float, float, int]:
    """How much the churn ratio a / b grows from setting ``low`` to setting ``high`` of `tables`
    ({setting: `ablation_table` frame}), paired by seed: (mean, standard error, count). It compares
    conditions, so the SE is NaN (a 2-SE rule not testable) below `MIN_SEEDS` seeds."""
    low_churn, high_churn = churn_by_seed(tables[low], subgroup), churn_by_seed(tables[high], subgroup)
    change = (high_churn[a] / high_churn[b] - low_churn[a] / low_churn[b]).dropna()
    return mean_se(change, min_count=MIN_SEEDS)


def minority_gain_difference(frame: pd.DataFrame, a: str, b: str, minority: str | None = None,
                             majority: str | None = None) -> tuple[float, float, int]:
    """The minority's relative gain (ensemble / average member) under ablation ``a`` minus under
    ablation ``b``, paired by seed, in points of %: (mean, standard error, count) over the seeds.
    Subgroups chosen as in `gain_by_role`."""
    roles = gain_by_role(frame, minority, majority)
    gain = roles[roles["role"] == "minority"].pivot(index="seed", columns="ablation", values="gain")
    return mean_se(100 * (gain[a] - gain[b]))


def ensemble_minus_base(frame: pd.DataFrame, subgroup: str = "all") -> tuple[float, float, int]:
    """Ensemble accuracy minus average-member accuracy on ``subgroup``, in points: (mean, standard
    error, count) over the rows (ablations and seeds) of an `ablation_table` / `repeat_table` frame."""
    rows = frame[frame["subgroup"] == subgroup]
    return mean_se(100 * (rows["ensemble"] - rows["base"]))


def paper_table(summary: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A `summarize` frame laid out like Ko et al. 2023, App. H: "mean ± std" for base and ensemble.

    Index (ablation, subgroup); columns n, base, ensemble (strings, %), points, gain, churn
    (rounded to `digits`, `digits + 2` for the gain).
    """
    spread = lambda m, s: f"{m:.{digits}f} ± {s:.{digits}f}"  # noqa: E731
    return pd.DataFrame({
        "n": summary["n"].to_numpy(),
        "base": [spread(m, s) for m, s in zip(summary["base"], summary["base_std"])],
        "ensemble": [spread(m, s) for m, s in zip(summary["ensemble"], summary["ensemble_std"])],
        "points": summary["points"].round(digits).to_numpy(),
        "gain": summary["gain"].round(digits + 2).to_numpy(),
        "churn": summary["churn"].round(digits).to_numpy(),
    }, index=pd.MultiIndex.from_frame(summary[["ablation", "subgroup"]]))


# Ko et al. 2023, App. H, Table 2: accuracy (%) of a 10-MLP ensemble on every Adult test example
# ("all examples"), then on the >50K examples of each subgroup; "base" is their single base model,
# then the mean over repeats of each ablation.
KO_TABLE_2 = {
    "all examples": {"base": 79.93, "BatchOrder": 79.87, "Init": 79.75, "Init&BatchOrder": 79.57, "All": 79.68},
    "Male": {"base": 25.98, "BatchOrder": 26.75, "Init": 26.10, "Init&BatchOrder": 27.17, "All": 26.96},
    "Female": {"base": 27.97, "BatchOrder": 28.63, "Init": 28.23, "Init&BatchOrder": 28.93, "All": 28.76},
    "White": {"base": 26.48, "BatchOrder": 27.22, "Init": 26.64, "Init&BatchOrder": 27.61, "All": 27.40},
    "Nonwhite": {"base": 24.44, "BatchOrder": 25.20, "Init": 24.25, "Init&BatchOrder": 25.83, "All": 25.62},
    "Black": {"base": 24.02, "BatchOrder": 25.29, "Init": 23.92, "Init&BatchOrder": 25.89, "All": 25.73},
    "Asian-Pac-Islander": {"base": 23.31, "BatchOrder": 23.64, "Init": 22.82, "Init&BatchOrder": 24.14, "All": 23.98},
    "Amer-Indian-Eskimo": {"base": 26.32, "BatchOrder": 26.32, "Init": 27.79, "Init&BatchOrder": 28.85, "All": 27.74},
    "Other": {"base": 32.00, "BatchOrder": 32.00, "Init": 31.44, "Init&BatchOrder": 32.12, "All": 32.04},
}


def ablation_columns(summary: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """A `summarize` frame laid out like Ko et al. 2023, Table 2: one row per subgroup, the
    average member's accuracy (mean over every ablation's repeats, since all members share one
    recipe), then per ablation its ensemble's accuracy, "mean ± std" over the repeats, in %."""
    subgroups = list(dict.fromkeys(summary["subgroup"]))
    table = pd.DataFrame(index=pd.Index(subgroups, name="subgroup"))
    table["n"] = summary.groupby("subgroup", sort=False)["n"].first().reindex(subgroups)
    table["average member"] = summary.groupby("subgroup", sort=False)["base"].mean().reindex(subgroups).map(
        lambda m: f"{m:.{digits}f}")
    for ablation, part in summary.groupby("ablation", sort=False):
        part = part.set_index("subgroup").reindex(subgroups)
        table[ablation] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(part["ensemble"], part["ensemble_std"])]
    return table


def points_against_paper(summary: pd.DataFrame, paper: dict = KO_TABLE_2) -> pd.DataFrame:
    """Ensemble minus base, in points, per subgroup and ablation: ours (a `summarize` frame) beside
    the paper's Table 2 (`KO_TABLE_2`). Rows: the subgroups both have; columns "<ablation>: paper"
    and "<ablation>: here" for every ablation both have."""
    ours = summary.pivot_table(index="subgroup", columns="ablation", values="points", sort=False)
    rows = [g for g in dict.fromkeys(summary["subgroup"]) if g in paper]
    columns = {}
    for ablation in ours.columns:
        if ablation in paper["all examples"]:
            columns[f"{ablation}: paper"] = [paper[g][ablation] - paper[g]["base"] for g in rows]
            columns[f"{ablation}: here"] = [ours.loc[g, ablation] for g in rows]
    return pd.DataFrame(columns, index=pd.Index(rows, name="subgroup"))


def chosen_ablation(names, preferred=("All", "Init&BatchOrder")) -> str:
    """The ablation a chapter's headline numbers use: the first of `preferred` that was run (the
    paper quotes All Sources), else the last one run."""
    names = list(names)
    return next((p for p in preferred if p in names), names[-1])


def _columns_first(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns + [c for c in frame.columns if c not in columns]]

"""PNG plots for reports (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


REFERENCE_STYLE = {  # baselines and ceilings: one horizontal tick per bucket, no error bars
    "legacy order": {"marker": "_", "s": 900, "color": "tab:gray", "linewidths": 2.5},
    "personal count, then position": {"marker": "_", "s": 900, "color": "tab:brown", "linewidths": 2.5},
    "oracle": {"marker": "_", "s": 900, "color": "black", "linewidths": 1.5},
    "relevance oracle": {"marker": "_", "s": 900, "color": "tab:purple", "linewidths": 1.5},
}
REFERENCE_LABEL = {"legacy order": "legacy order (baseline)", "personal count, then position": "personal count, then position (baseline)",
                   "oracle": "oracle (ceiling)", "relevance oracle": "relevance oracle (ceiling)"}


def _errorbar(ax, x, cells, **kwargs):
    """Seed means with their 95% intervals (seed-averaged bootstrap); too-small buckets: hollow, no bar; seeds: small dots."""
    values = np.array([c["value"] if c else np.nan for c in cells])
    has = np.array([bool(c) and "low" in c for c in cells])
    low = np.where(has, values - np.array([c["low"] if c and "low" in c else np.nan for c in cells]), 0)
    high = np.where(has, np.array([c["high"] if c and "high" in c else np.nan for c in cells]) - values, 0)
    line = ax.errorbar(np.asarray(x)[has], values[has], yerr=[low[has], high[has]], fmt="o", capsize=3, **kwargs)
    color = line[0].get_color()
    if (~has).any():
        ax.scatter(np.asarray(x)[~has], values[~has], facecolors="none", edgecolors=color)
    for xi, c in zip(x, cells):
        if c and len(c.get("per_seed", [])) > 1:
            ax.scatter([xi] * len(c["per_seed"]), c["per_seed"], s=6, color=color, alpha=0.6)
    return color


def slice_auc(results: dict, slice_name: str, models: list, path: Path, title: str, references=(), split_label: str = "test") -> None:
    """AUC per bucket of one slice: one series per model (seed mean, 95% interval, seeds as dots), baselines as ticks.

    ``split_label`` names the evaluated days on the axis (``"test"``, ``"validation"``)."""
    if isinstance(references, str):
        references = [references]
    buckets = list(results[models[0]][slice_name])
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(buckets) + 3) + 2.5, 4.2))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(buckets))
    for i, model in enumerate(models):
        _errorbar(ax, x - 0.4 + width * (i + 0.5), [results[model][slice_name][b].get("auc") for b in buckets], label=model)
    if any(results[models[0]][slice_name][b].get("too_few") for b in buckets):
        ax.set_xlabel("hollow marker: too few users/clicks for an interval; small dots: the seeds", fontsize=8)
    for reference in references:
        ref = [results[reference][slice_name].get(b, {}).get("auc", {}).get("value", np.nan) for b in buckets]
        style = dict(REFERENCE_STYLE.get(reference, {"marker": "_", "s": 900, "color": "black"}))
        ax.scatter(x, ref, label=REFERENCE_LABEL.get(reference, reference), **style)
    labels = [f"{b}\nn={results[models[0]][slice_name][b]['impressions']:,}" for b in buckets]
    ax.set_xticks(x, labels)
    ax.set_ylabel(f"{split_label} AUC (seed mean, 95% interval)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def storage_vs_auc(points: list, path: Path, baselines: dict | None = None, split_label: str = "test") -> None:
    """One point per model: storage per training example against overall AUC on the evaluated days (seed mean, 95% interval).

    ``baselines``: ``{name: AUC cell}``, drawn as dashed lines: they are not trained, so they have no x."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for p in points:
        _errorbar(ax, [p["bytes_per_example"]], [p["auc"]])
        ax.annotate(p["model"], (p["bytes_per_example"], p["auc"]["value"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    drawn = {name: cell for name, cell in (baselines or {}).items() if cell}
    for name, cell in drawn.items():
        ax.axhline(cell["value"], color=REFERENCE_STYLE.get(name, {}).get("color", "black"), linestyle="--",
                   label=REFERENCE_LABEL.get(name, name))
    if drawn:
        ax.legend(fontsize=8)
    ax.set_xlabel("training data stored, bytes per example (measured)")
    ax.set_ylabel(f"{split_label} AUC (seed mean, 95% interval)")
    ax.set_title("Storage against AUC")
    ax.grid(alpha=0.3)
    _save(fig, path)


def attention_profile(profile: dict, model: str, path: Path) -> None:
    """Mean attention weight by history position (target attention) and by neighbor rank (GAT)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind in ("query", "item"):
        weights = profile["history_position"][kind]
        axes[0].plot(np.arange(1, len(weights) + 1), weights, marker="o", label=f"{kind} history")
    axes[0].set_xlabel("history position (1 = most recent)")
    axes[0].set_ylabel("mean attention weight")
    axes[0].set_title(f"{model}: target attention by position")
    axes[0].legend()
    for kind in ("query", "item"):
        weights = profile["neighbor_rank"].get(kind)
        if weights:
            axes[1].plot(np.arange(len(weights)), weights, marker="o", label=f"{kind} neighbors ({'q2q' if kind == 'query' else 'i2i'})")
    axes[1].set_xlabel("neighbor rank (0 = the node itself; 1 = highest edge weight)")
    axes[1].set_ylabel("mean attention weight")
    axes[1].set_title(f"{model}: graph attention by neighbor rank")
    axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    _save(fig, path)


def online_lift(lifts: dict, buckets: list, requests: list, path: Path, title: str) -> None:
    """Expected-click lift over the legacy order per bucket: one series per scorer (95% interval; seeds as dots).

    ``lifts``: ``{scorer: [lift cell per bucket]}`` (fractions; drawn in percent)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(buckets) + 3) + 2.5, 4.2))
    width = 0.8 / max(len(lifts), 1)
    x = np.arange(len(buckets))
    for i, (name, cells) in enumerate(lifts.items()):
        percent = [None if not c else {k: 100 * v for k, v in c.items() if k in ("value", "low", "high")} for c in cells]
        _errorbar(ax, x - 0.4 + width * (i + 0.5), percent, label=REFERENCE_LABEL.get(name, name))
    ax.axhline(0.0, color=REFERENCE_STYLE["legacy order"]["color"], linestyle="--", label="legacy order")
    ax.set_xticks(x, [f"{b}\n{n:,} requests" for b, n in zip(buckets, requests)])
    ax.set_ylabel("expected clicks vs legacy order (%, 95% interval)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def examination_curves(curves: dict, world: list | None, path: Path) -> None:
    """Learned P(seen | position) relative to position 0 per model (seed mean as a line, each seed as dots) against the
    world's position factor (``world``, relative to position 0), when the log has one."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for model, per_seed in curves.items():
        relative = np.array([np.asarray(c) / c[0] for c in per_seed])
        positions = np.arange(relative.shape[1])
        line = ax.plot(positions, relative.mean(axis=0), marker="o", label=f"{model} (learned, {len(per_seed)} seed(s))")
        for row in relative:
            ax.scatter(positions, row, s=8, color=line[0].get_color(), alpha=0.5)
    if world is not None:
        ax.plot(np.arange(len(world)), np.asarray(world) / world[0], color="black", linestyle="--", label="the world's (1 + p)^-decay")
    ax.set_xlabel("logged position (0 = top)")
    ax.set_ylabel("P(seen | position) / P(seen | 0)")
    ax.set_ylim(bottom=0)
    ax.set_title("Position bias: learned examination against the world's")
    ax.legend(fontsize=8)
    _save(fig, path)


def profile_plots(profile: dict, activity: np.ndarray, per_day_path: Path, activity_path: Path) -> None:
    """A log profile's two plots: the first-time query share per day (warm-up days shaded), and the impressions by
    the user's activity at the request."""
    days = list(profile["first_time_query_share_per_day"])  # days with queries only: place them by date
    shares = [100 * v for v in profile["first_time_query_share_per_day"].values()]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(np.array(days, dtype="datetime64[D]"), shares, marker=".")
    warmup = profile["config"]["warmup_days"]
    if warmup and days:
        start = np.datetime64(profile["first_day"], "D")
        ax.axvspan(start, start + np.timedelta64(warmup, "D"), color="tab:gray", alpha=0.2, label=f"warm-up ({warmup} days)")
        ax.legend()
    fig.autofmt_xdate()
    ax.set_ylabel("queries issued for the first time (%)")
    ax.set_title("New queries per day")
    _save(fig, per_day_path)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    edges = np.concatenate([[0], np.unique(np.geomspace(1, max(2, activity.max(initial=1) + 1), 30).astype(int))])
    ax.hist(activity, bins=edges)
    ax.set_xscale("symlog")
    ax.set_xlabel(f"user's behaviors in the {profile['config']['lookback_days']:g} days before the request")
    ax.set_ylabel("impressions")
    ax.set_title("Activity at request time")
    _save(fig, activity_path)

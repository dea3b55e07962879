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


def slice_auc(results: dict, slice_name: str, models: list, path: Path, title: str, reference: str | None = None) -> None:
    """AUC per bucket of one slice, one series per model, 95% intervals as error bars."""
    buckets = list(results[models[0]][slice_name])
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(buckets) + 3), 4.2))
    series = [m for m in models if m != reference]
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(buckets))
    for i, model in enumerate(series):
        cells = [results[model][slice_name][b].get("auc") for b in buckets]
        values = np.array([c["value"] if c else np.nan for c in cells])
        low = np.array([c["value"] - c["low"] if c else 0 for c in cells])
        high = np.array([c["high"] - c["value"] if c else 0 for c in cells])
        ax.errorbar(x - 0.4 + width * (i + 0.5), values, yerr=[low, high], fmt="o", capsize=3, label=model)
    if reference is not None:
        ref = [results[reference][slice_name][b].get("auc", {}).get("value", np.nan) for b in buckets]
        ax.scatter(x, ref, marker="_", s=900, color="black", label=f"{reference} (ceiling)")
    labels = [f"{b}\nn={results[models[0]][slice_name][b]['impressions']:,}" for b in buckets]
    ax.set_xticks(x, labels)
    ax.set_ylabel("test AUC (95% interval)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    _save(fig, path)


def storage_vs_auc(points: list, path: Path) -> None:
    """One point per model: storage per training example against overall test AUC."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for p in points:
        ax.errorbar(p["bytes_per_example"], p["auc"]["value"], yerr=[[p["auc"]["value"] - p["auc"]["low"]], [p["auc"]["high"] - p["auc"]["value"]]],
                    fmt="o", capsize=3)
        ax.annotate(p["model"], (p["bytes_per_example"], p["auc"]["value"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("training data stored, bytes per example (measured)")
    ax.set_ylabel("test AUC (95% interval)")
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

"""Metrics with 95% intervals by a Poisson bootstrap over users, paired across models.

Resampling unit: the **user**. A user's impressions are correlated (same interests, same model
errors), so resampling impressions would understate the uncertainty. Each replicate draws a
Poisson(1) multiplicity per user; all of that user's impressions get it. The same replicate
weights are used for every model and slice, so differences between models are paired, and their
intervals reflect only the disagreement between the models, not the shared noise of the sample.

Intervals are bootstrap percentiles (2.5, 97.5). A difference is marked significant only when its
interval excludes 0. Everything is vectorized over chunks of replicates: an AUC replicate is one
cumulative sum over the negatives (see ``metrics.SortedScores``).
"""
from __future__ import annotations

import itertools

import numpy as np

from dropdown_rank.evaluate.metrics import SortedScores, gauc, per_user_auc

METRICS = ("auc", "gauc", "logloss")


def interval(replicates: np.ndarray, point: float) -> dict:
    finite = replicates[np.isfinite(replicates)]
    low, high = np.percentile(finite, [2.5, 97.5]) if len(finite) else (np.nan, np.nan)
    return {"value": float(point), "low": float(low), "high": float(high)}


class _Cell:
    """One model on one slice: everything fixed, ready for many replicate weightings."""

    def __init__(self, scores, labels, users, num_users):
        self.auc_scores = SortedScores(scores, labels, clusters=users)
        self.user_auc, self.user_count = per_user_auc(users, scores, labels, num_users)
        p = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
        self.loss = np.bincount(users, weights=-(labels * np.log(p) + (1 - labels) * np.log(1 - p)), minlength=num_users)

    def evaluate(self, user_weights) -> dict:
        """Metric values for each row of weights; NaN where a replicate drew no usable user."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "auc": self.auc_scores.auc(user_weights),
                "gauc": gauc(self.user_auc, self.user_count, user_weights),
                "logloss": (user_weights @ self.loss) / (user_weights @ self.user_count),
            }


def bootstrap_report(labels: np.ndarray, users: np.ndarray, scores: dict, slices: dict, replicates: int = 1000,
                     seed: int = 0, chunk: int = 100, reference: str | None = None) -> dict:
    """Point estimates, intervals and paired differences for every model and slice bucket.

    ``scores``: ``{model: [n] probabilities}``; ``slices``: ``{slice: {bucket: [n] bool mask}}``;
    ``users``: int codes 0..U-1. ``reference`` (e.g. "oracle") is compared with every model but
    left out of the model-vs-model pairs. Returns ``{"models": …, "pairs": …}``.
    """
    labels = np.asarray(labels).astype(np.float64)
    num_users = int(users.max()) + 1
    models = list(scores)
    cells, results = {}, {m: {} for m in models}
    for slice_name, buckets in slices.items():
        for bucket, mask in buckets.items():
            idx = np.flatnonzero(mask)
            y, u = labels[idx], users[idx]
            for model in models:
                s = np.asarray(scores[model])[idx]
                cell = _Cell(s, y, u, num_users) if len(idx) and 0 < y.sum() < len(y) else None
                cells[(model, slice_name, bucket)] = cell
                entry = {"impressions": int(len(idx)), "clicks": int(y.sum()), "users": int(len(np.unique(u)))}
                if cell is not None:
                    ones = np.ones(num_users)
                    entry.update({k: float(v) for k, v in cell.evaluate(ones).items()})
                results[model].setdefault(slice_name, {})[bucket] = entry

    draws = {key: {m: [] for m in METRICS} for key, cell in cells.items() if cell is not None}
    rng = np.random.default_rng(seed)
    for start in range(0, replicates, chunk):
        weights = rng.poisson(1.0, size=(min(chunk, replicates - start), num_users)).astype(np.float32)
        for key, cell in cells.items():
            if cell is not None:
                for metric, values in cell.evaluate(weights).items():
                    draws[key][metric].append(values)
    draws = {key: {m: np.concatenate(v) for m, v in per.items()} for key, per in draws.items()}

    for (model, slice_name, bucket), per in draws.items():
        entry = results[model][slice_name][bucket]
        for metric in METRICS:
            entry[metric] = interval(per[metric], entry[metric])

    pairs = [(a, b) for a, b in itertools.combinations([m for m in models if m != reference], 2)]
    if reference is not None:
        pairs += [(reference, m) for m in models if m != reference]
    differences = []
    for a, b in pairs:
        for slice_name, buckets in slices.items():
            for bucket in buckets:
                if (a, slice_name, bucket) not in draws or (b, slice_name, bucket) not in draws:
                    continue
                row = {"a": a, "b": b, "slice": slice_name, "bucket": bucket}
                for metric in METRICS:
                    point = results[a][slice_name][bucket][metric]["value"] - results[b][slice_name][bucket][metric]["value"]
                    diff = interval(draws[(a, slice_name, bucket)][metric] - draws[(b, slice_name, bucket)][metric], point)
                    diff["significant"] = bool(diff["low"] > 0 or diff["high"] < 0)
                    row[metric] = diff
                differences.append(row)
    return {"models": results, "pairs": differences, "replicates": replicates, "seed": seed, "unit": "user"}

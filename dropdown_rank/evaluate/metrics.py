"""Exact offline metrics, vectorized over bootstrap replicates.

Every function takes per-impression ``weights``: ``[n]`` for one evaluation, or ``[R, n]`` for R
bootstrap replicates at once (each replicate's weights are resampling multiplicities). With unit
weights the results equal scikit-learn's ``roc_auc_score`` and ``log_loss`` (tests check this).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


class SortedScores:
    """One model's scores, prepared once so that AUC under many weightings is one pass each.

    Negatives are sorted by score; for each positive, ``below``/``upto`` count the negatives with a
    strictly lower / lower-or-equal score (ties count half). With ``clusters`` (a cluster index per
    impression, e.g. the user), :meth:`auc` takes weights per cluster and gathers them itself.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray, clusters: np.ndarray | None = None):
        scores, positive = np.asarray(scores), np.asarray(labels).astype(bool)
        negative_index = np.flatnonzero(~positive)
        order = np.argsort(scores[negative_index], kind="mergesort")
        self.negative_index = negative_index[order]
        self.positive_index = np.flatnonzero(positive)
        negative_scores = scores[self.negative_index]
        positive_scores = scores[self.positive_index]
        self.below = np.searchsorted(negative_scores, positive_scores, side="left")
        self.upto = np.searchsorted(negative_scores, positive_scores, side="right")
        if clusters is not None:
            self.negative_index = np.asarray(clusters)[self.negative_index]
            self.positive_index = np.asarray(clusters)[self.positive_index]

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """AUC = P(score of a positive > score of a negative), ties counted half, weighted."""
        weights = np.asarray(weights)
        negative = weights[..., self.negative_index]
        cumulative = np.zeros(negative.shape[:-1] + (negative.shape[-1] + 1,), negative.dtype)
        np.cumsum(negative, axis=-1, out=cumulative[..., 1:])
        positive = weights[..., self.positive_index]
        lower = cumulative[..., self.below] + cumulative[..., self.upto]
        pairs = (positive * lower).sum(axis=-1, dtype=np.float64) * 0.5
        with np.errstate(invalid="ignore", divide="ignore"):
            return pairs / (positive.sum(axis=-1, dtype=np.float64) * cumulative[..., -1].astype(np.float64))


def auc(scores, labels, weights=None) -> np.ndarray:
    weights = np.ones(len(scores)) if weights is None else weights
    return SortedScores(np.asarray(scores), np.asarray(labels)).auc(weights)


def logloss(scores, labels, weights=None) -> np.ndarray:
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    per_impression = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    weights = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    return (weights * per_impression).sum(axis=-1) / weights.sum(axis=-1)


def per_user_auc(user_codes: np.ndarray, scores: np.ndarray, labels: np.ndarray, num_users: int):
    """Each user's AUC (NaN when the user's labels are all one class) and impression count.

    Mann-Whitney from average ranks within each user, computed by one grouped rank.
    """
    frame = pd.DataFrame({"user": user_codes, "score": scores, "label": labels})
    frame["rank"] = frame.groupby("user")["score"].rank(method="average")
    grouped = frame.groupby("user")
    positives = grouped["label"].sum()
    counts = grouped.size()
    rank_sum = frame[frame["label"] == 1].groupby("user")["rank"].sum().reindex(counts.index, fill_value=0.0)
    negatives = counts - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    values[(positives == 0) | (negatives == 0)] = np.nan
    out_auc = np.full(num_users, np.nan)
    out_count = np.zeros(num_users)
    out_auc[counts.index.to_numpy()] = values.to_numpy()
    out_count[counts.index.to_numpy()] = counts.to_numpy()
    return out_auc, out_count


def gauc(user_auc: np.ndarray, user_impressions: np.ndarray, user_weights=None) -> np.ndarray:
    """Impression-weighted mean of per-user AUC over users with both classes.

    ``user_weights`` ``[U]`` or ``[R, U]``: bootstrap multiplicities of users.
    """
    eligible = ~np.isnan(user_auc)
    values, sizes = user_auc[eligible], user_impressions[eligible]
    weights = np.ones(eligible.sum()) if user_weights is None else np.asarray(user_weights, dtype=np.float64)[..., eligible]
    with np.errstate(invalid="ignore", divide="ignore"):  # a replicate may draw none of the eligible users: NaN
        return (weights * sizes * values).sum(axis=-1) / (weights * sizes).sum(axis=-1)

"""Exact offline metrics, vectorized over bootstrap replicates: the pieces ``bootstrap.py`` sums.

:class:`SortedScores` gives the AUC under ``weights`` ``[C]`` for one evaluation or ``[R, C]`` for R
bootstrap replicates at once (each replicate's weights are resampling multiplicities); with unit
weights it equals scikit-learn's ``roc_auc_score`` (tests check this). :func:`per_user_auc` gives
each user's AUC, from which ``bootstrap.py`` forms GAUC; logloss is summed there directly.

Per-request ranking metrics (:func:`request_ranks`, :func:`ranking_values`): candidates are ranked by
score within their ``request_id``, 1 = top. **Ties are broken pessimistically**: among equal scores
the non-clicked candidates are ranked first. Gains are binary (clicked or not).

* MRR: ``1 / rank`` of the request's best-ranked clicked candidate;
* NDCG@10: ``DCG@10 / IDCG@10`` with ``DCG@10 = sum over clicked candidates ranked <= 10 of
  1 / log2(rank + 1)`` and IDCG@10 the same sum for ``min(clicks, 10)`` clicks at ranks 1, 2, ….

Requests without a click have no defined value: they are excluded and counted. A slice restricts
the clicked candidates that count, never the ranking: ranks are always within the whole request
(a PV slice scores the request by its clicked candidates of that PV bucket; an activity slice
holds whole requests, so there it is the plain definition).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

NDCG_CUTOFF = 10


class SortedScores:
    """One scorer's scores, prepared once so that AUC under many weightings is one pass each.

    AUC = P(score of a positive > score of a negative), ties counted half. For each positive,
    ``below`` / ``upto`` count the negatives (sorted by score) with a strictly lower / lower-or-equal
    score. Only the cumulative negative weight at those thresholds is needed, so negatives are
    summed per segment between consecutive thresholds and per cluster: the weighted AUC of R
    replicates is two sparse products ``[T, C] @ [C, R]`` and one cumulative sum over T thresholds
    (T <= 2 x positives). With ``clusters`` (a cluster index per impression, e.g. the user),
    :meth:`auc` takes weights per cluster; without, per impression.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray, clusters: np.ndarray | None = None,
                 num_clusters: int | None = None):
        scores, positive = np.asarray(scores), np.asarray(labels).astype(bool)
        clusters = np.arange(len(scores)) if clusters is None else np.asarray(clusters)
        self.num_clusters = int(num_clusters if num_clusters is not None else (clusters.max() + 1 if len(clusters) else 0))
        negative_index = np.flatnonzero(~positive)
        negative_index = negative_index[np.argsort(scores[negative_index], kind="mergesort")]
        positive_index = np.flatnonzero(positive)
        negative_scores = scores[negative_index]
        below = np.searchsorted(negative_scores, scores[positive_index], side="left")
        upto = np.searchsorted(negative_scores, scores[positive_index], side="right")
        thresholds, at = np.unique(np.concatenate([below, upto]), return_inverse=True)
        # Negative j is below threshold i iff j < thresholds[i] iff segment(j) <= i.
        segment = np.searchsorted(thresholds, np.arange(len(negative_index)), side="right")
        kept = segment < len(thresholds)
        shape = (len(thresholds), self.num_clusters)
        self._negatives = sp.csr_matrix((np.ones(int(kept.sum())), (segment[kept], clusters[negative_index][kept])), shape=shape)
        positive_clusters = clusters[positive_index]
        self._positives = sp.csr_matrix((np.full(2 * len(positive_index), 0.5), (at, np.concatenate([positive_clusters] * 2))),
                                        shape=shape)
        self.positive_count = np.bincount(positive_clusters, minlength=self.num_clusters).astype(np.float64)
        self.negative_count = np.bincount(clusters[negative_index], minlength=self.num_clusters).astype(np.float64)
        self._cache = {}

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """AUC per row of ``weights`` (``[C]`` or ``[R, C]``); NaN where a row weights no positive or no negative."""
        weights = np.asarray(weights)
        if weights.dtype not in (np.float32, np.float64):
            weights = weights.astype(np.float64)
        rows = np.atleast_2d(weights)
        pairs = (rows @ self.positive_count) * (rows @ self.negative_count)
        out = self.auc_columns(np.ascontiguousarray(rows.T), pairs)
        return out[0] if weights.ndim == 1 else out

    def auc_columns(self, columns: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """AUC per column of ``columns`` ``[C, R]`` (float32 or float64), the bootstrap's layout.

        ``pairs`` ``[R]``: each column's positive weight times its negative weight (the caller has
        them: in the bootstrap they are per-user sums like every other denominator).
        """
        dtype = columns.dtype
        if dtype not in self._cache:
            self._cache[dtype] = (self._negatives.astype(dtype), self._positives.astype(dtype))
        negatives, positives = self._cache[dtype]
        below = np.cumsum(negatives @ columns, axis=0)  # [T, R]: negative weight under each threshold
        ordered = np.einsum("tr,tr->r", below, positives @ columns, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return ordered / pairs


def per_user_auc(user_codes: np.ndarray, scores: np.ndarray, labels: np.ndarray, num_users: int):
    """Each user's AUC (NaN when the user's labels are all one class) and impression count.

    Mann-Whitney from average ranks within each user: one global average rank of the key
    (user, dense score rank), minus the impressions of the users before.
    """
    user_codes = np.asarray(user_codes, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.float64)
    counts = np.bincount(user_codes, minlength=num_users).astype(np.float64)
    if not len(user_codes):
        return np.full(num_users, np.nan), counts
    dense = np.unique(np.asarray(scores), return_inverse=True)[1].reshape(-1).astype(np.int64)
    rank = rankdata(user_codes * (int(dense.max()) + 1) + dense, method="average")
    before = np.cumsum(counts) - counts
    rank_sum = np.bincount(user_codes, weights=(rank - before[user_codes]) * labels, minlength=num_users)
    positives = np.bincount(user_codes, weights=labels, minlength=num_users)
    negatives = counts - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    values[(positives == 0) | (negatives == 0)] = np.nan
    return values, counts


def request_ranks(request_codes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each impression's rank within its request (1 = top), by score descending, ties pessimistic."""
    request_codes = np.asarray(request_codes)
    order = np.lexsort((np.asarray(labels), -np.asarray(scores, dtype=np.float64), request_codes))
    sorted_requests = request_codes[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_requests[1:] != sorted_requests[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order)) - start + 1
    return ranks


def _ideal_dcg(clicks: np.ndarray) -> np.ndarray:
    table = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, NDCG_CUTOFF + 2)))])
    return table[np.minimum(clicks, NDCG_CUTOFF)]


def ranking_values(request_codes: np.ndarray, ranks: np.ndarray, clicked: np.ndarray) -> dict:
    """Per clicked request: its code, reciprocal rank and NDCG@10, from the clicked impressions given.

    ``clicked`` is a bool mask of the impressions that count as clicks (a slice's clicks).
    """
    requests, rank = np.asarray(request_codes)[clicked], np.asarray(ranks)[clicked]
    codes, inverse, clicks = np.unique(requests, return_inverse=True, return_counts=True)
    best = np.full(len(codes), np.iinfo(np.int64).max)
    np.minimum.at(best, inverse, rank)
    gains = np.where(rank <= NDCG_CUTOFF, 1.0 / np.log2(rank + 1.0), 0.0)
    dcg = np.bincount(inverse, weights=gains, minlength=len(codes))
    return {"request": codes, "rr": 1.0 / best, "ndcg": dcg / _ideal_dcg(clicks)}

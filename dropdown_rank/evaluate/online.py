"""The simulated A/B test: the expected clicks of each scorer's order under the world's own click model.

Logged-click AUC and MRR score a ranker against clicks that the **legacy order** produced: a
candidate the legacy engine placed first was clicked more because it was first, so a ranker that
imitates the legacy order scores well offline and gains nothing online. A world with ground truth
(the synthetic world's ``truth.parquet``) knows each impression's click probability apart from
its position, so any order of a request's candidates can be scored as an online test would:

* the click model must be **separable**: ``p_click = f(position) * p_relevance`` with one factor
  per position for every impression (:func:`position_factor` reads ``f`` off the truth and
  refuses a truth that is not);
* a scorer's order of request ``r`` puts its candidates at positions ``0..n-1`` by score,
  descending, ties in the logged order; its **expected clicks** are ``sum_i p_relevance_i *
  f(new position_i)``, and its **CTR@1** is ``p_relevance * f(0)`` of the candidate it puts first;
* the legacy order reproduces the logged expected clicks; sorting by ``p_relevance`` (the
  relevance oracle) maximises them (``f`` decreases), so the oracle's lift over the legacy order is
  the lift available, and a model's share of it is what it captures.

Per request, nothing here depends on the logged clicks: the measure has no position bias.
"""
from __future__ import annotations

import dataclasses

import numpy as np

ONLINE_METRICS = ("expected_clicks", "ctr@1")
# The largest relative spread of p_click / p_relevance at one position that still counts as one factor (float noise).
SEPARABLE_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class ClickModel:
    """Per impression ``p_relevance`` and the factor ``f[position]`` of the separable click model."""

    p_relevance: np.ndarray
    factor: np.ndarray


def position_factor(p_click: np.ndarray, p_relevance: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``f[p]`` for p = 0 .. max position, such that ``p_click = f[position] * p_relevance``.

    Raises ``ValueError`` when the truth is not separable (two impressions at one position with
    different ratios) or leaves a position unobserved, or when ``f`` increases with position."""
    p_click, p_relevance = np.asarray(p_click, np.float64), np.asarray(p_relevance, np.float64)
    position = np.asarray(position, np.int64)
    usable = p_relevance > 0
    if (p_click[~usable] != 0).any():
        raise ValueError("the truth has impressions with p_relevance 0 and p_click above 0: not p_relevance times a position factor")
    ratio = p_click[usable] / p_relevance[usable]
    at = position[usable]
    size = int(position.max()) + 1
    low = np.full(size, np.inf)
    high = np.full(size, -np.inf)
    np.minimum.at(low, at, ratio)
    np.maximum.at(high, at, ratio)
    missing = np.flatnonzero(~np.isfinite(low))
    if len(missing):
        raise ValueError(f"the truth has no impression with p_relevance > 0 at position(s) {missing[:5].tolist()}: "
                         "their position factor is unknown")
    spread = (high - low) / np.maximum(high, 1e-300)
    if spread.max() > SEPARABLE_TOLERANCE:
        worst = int(spread.argmax())
        raise ValueError(f"the truth's click model is not p_relevance times a position factor: at position {worst} "
                         f"p_click / p_relevance ranges from {low[worst]:.6g} to {high[worst]:.6g}")
    factor = (low + high) / 2
    if (np.diff(factor) > SEPARABLE_TOLERANCE).any():
        raise ValueError(f"the truth's position factor increases with position ({np.round(factor, 4).tolist()}): "
                         "the relevance order would not be the best order")
    return factor


def order_positions(requests: np.ndarray, scores: np.ndarray, logged_position: np.ndarray) -> np.ndarray:
    """Each impression's 0-based position when its request is sorted by score (descending, ties by logged position)."""
    order = np.lexsort((np.asarray(logged_position), -np.asarray(scores, dtype=np.float64), np.asarray(requests)))
    sorted_requests = np.asarray(requests)[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_requests[1:] != sorted_requests[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    positions = np.empty(len(order), dtype=np.int64)
    positions[order] = np.arange(len(order)) - start
    return positions


def request_values(requests: np.ndarray, scores: np.ndarray, logged_position: np.ndarray, model: ClickModel,
                   num_requests: int) -> dict:
    """``{"expected_clicks": [R], "ctr@1": [R]}`` of the scorer's order, indexed by request code."""
    positions = order_positions(requests, scores, logged_position)
    if positions.max(initial=0) >= len(model.factor):
        raise ValueError(f"a request has {positions.max() + 1} candidates but the truth's position factor covers "
                         f"{len(model.factor)} positions")
    clicks = model.p_relevance * model.factor[positions]
    return {"expected_clicks": np.bincount(requests, weights=clicks, minlength=num_requests),
            "ctr@1": np.bincount(requests, weights=np.where(positions == 0, clicks, 0.0), minlength=num_requests)}

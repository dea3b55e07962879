"""Slices of the evaluated split's impressions (test or valid): user activity, candidate PV and candidate neighbor-degree buckets.

Defaults (shown in every report):

* activity: behaviors in the look-back window before the request, edges ``5, 20, 50`` →
  ``0-4 / 5-19 / 20-49 / 50+``;
* PV: the candidate's training-period impressions, split at the evaluated impressions' 1/3 and 2/3
  quantiles → ``tail / torso / head`` (in that order: the tail first), each holding about a third
  of the impressions (ties at an edge go to the upper bucket, so shares can differ; reports print
  them);
* degree: the candidate's real q2q neighbors (ids > 0) in the graph snapshot its row reads (the
  latest whose ``snapshot_ts`` is at or before ``request_ts``, as the model picks it), edges
  ``1, 5`` → ``0 / 1-4 / 5+``; edges above the graph's K are dropped (no node has more than K).
  A candidate outside the vocabulary, or not yet known on that day, has no row content: degree 0.

* request kind: ``repeat`` (a clicked candidate is a query the user issued before the request, in
  the ``--personal-days`` window of ``user_candidate_count``), ``new intent`` (the request has a
  click and none of its clicked candidates was issued by the user before), ``no click`` (nothing
  to classify). The kind is read off the logged clicks, which the legacy order produced, so the
  simulated A/B test does not slice by it;
* candidate novelty, per impression: ``new to the user`` (``user_candidate_count`` 0) or
  ``issued before``;
* candidate freshness, per impression, from the build's query vocabulary (training period only) and
  each token's ``known_since`` (the day after its ``min_count``-th occurrence): ``outside the
  vocabulary`` (not in it, or known only after the request, as a lagged vocabulary reads it),
  ``entered within N days`` (``known_since`` less than ``fresh_days`` N = 7 days before the
  request) or ``known longer``. This is the log's own view of a candidate born or trending
  recently, the same for every model of the report, and computable on any log.

When a fixed activity bucket would hold fewer than :data:`MIN_ACTIVITY_USERS` users (a log of heavy
users puts everyone in ``50+``), the activity edges become the quartiles of the evaluated
requests' activity, so the low-activity comparison is made within what the log has; the report
says which edges it used and why.

A value equal to an edge belongs to the bucket that starts at that edge.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from dropdown_rank.logs.schema import DAY
from dropdown_rank.tables import DailyTables


MIN_ACTIVITY_USERS = 30
ACTIVITY_QUANTILES = (0.25, 0.5, 0.75)
REPEAT, NEW_INTENT, NO_CLICK = "repeat", "new intent", "no click"
CANDIDATE_NEW, CANDIDATE_ISSUED = "new to the user", "issued before"
OUTSIDE_VOCABULARY, KNOWN_LONGER = "outside the vocabulary", "known longer"


@dataclasses.dataclass(frozen=True)
class SliceConfig:
    activity_edges: tuple = (5, 20, 50)
    activity_explicit: bool = False  # True: keep activity_edges even when a bucket is nearly empty
    pv_quantiles: tuple = (1 / 3, 2 / 3)
    pv_edges: tuple | None = None  # explicit PV edges instead of quantiles
    degree_edges: tuple = (1, 5)
    fresh_days: int = 7

    def __post_init__(self):
        # Unsorted or repeated edges would label buckets "50-19" or "PV 100-9" and still write a report.
        for option, edges in (("--activity-edges", self.activity_edges), ("--pv-edges", self.pv_edges),
                              ("degree edges", self.degree_edges)):
            if edges is not None and (len(edges) == 0 or edges[0] < 0 or any(b <= a for a, b in zip(edges, edges[1:]))):
                raise ValueError(f"{option} must be non-negative and strictly increasing, not {' '.join(map(str, edges))}")
        if self.fresh_days < 1:
            raise ValueError(f"--fresh-days must be at least 1, not {self.fresh_days}")


def bucket_labels(edges) -> list[str]:
    """``lo-hi`` per bucket (both inclusive), ``lo`` for a bucket of one value, ``lo+`` for the last."""
    edges = [int(e) for e in edges]
    bounds = ([(0, edges[0] - 1)] if edges[0] > 0 else []) + [(lo, hi - 1) for lo, hi in zip(edges, edges[1:])]
    return [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in bounds] + [f"{edges[-1]}+"]


def assign(values: np.ndarray, edges) -> np.ndarray:
    """Bucket index per value: 0 below the first edge, i for edges[i-1] <= value < edges[i]."""
    return np.searchsorted(np.asarray(edges), values, side="right")


def pv_edges(candidate_pv: np.ndarray, config: SliceConfig) -> list[int]:
    if config.pv_edges is not None:
        return [int(e) for e in config.pv_edges]
    edges = np.quantile(candidate_pv, config.pv_quantiles, method="higher")  # edges are observed PV values
    return sorted({max(1, int(np.ceil(e))) for e in edges})


def candidate_degree(candidates: np.ndarray, request_ts: np.ndarray, tables: DailyTables) -> np.ndarray:
    """Per row, the candidate's real neighbors (ids > 0) in the snapshot the row reads.

    The snapshot is the latest one starting at or before ``request_ts``; a row before every snapshot
    reads the first, as ``DropdownRanker.snapshot_index`` does, so the slice describes the graph the
    GNN actually saw.
    """
    snapshot = np.maximum(np.searchsorted(tables.snapshot_ts, np.asarray(request_ts, dtype=np.int64), side="right") - 1, 0)
    row = pd.Index(tables.nodes).get_indexer(np.asarray(candidates, dtype=object))
    # Row 0 is the padding node (no neighbors): where an unknown candidate's ids are read.
    # Per version its degree, then 0 for "no version" (index -1), which also covers a history with no versions.
    degree = np.append((tables.ids > 0).sum(axis=1), 0)
    return degree[tables.version_at(snapshot, np.maximum(row, 0))]


def fresh_label(fresh_days: int) -> str:
    return f"entered within {fresh_days} day{'s' if fresh_days != 1 else ''}"


def candidate_freshness(candidates: np.ndarray, request_ts: np.ndarray, vocabulary: list, known_since: np.ndarray,
                        fresh_days: int) -> np.ndarray:
    """Per row, its freshness label (module docstring): how long before the request the candidate entered the query
    vocabulary, if it had."""
    row = pd.Index(vocabulary).get_indexer(np.asarray(candidates, dtype=object))
    since = np.where(row >= 0, np.asarray(known_since, dtype=np.int64)[np.maximum(row, 0)], np.iinfo(np.int64).max)
    request_ts = np.asarray(request_ts, dtype=np.int64)
    outside = since > request_ts
    recent = ~outside & (request_ts - since < fresh_days * DAY)
    return np.where(outside, OUTSIDE_VOCABULARY, np.where(recent, fresh_label(fresh_days), KNOWN_LONGER))


def activity_edges(activity: np.ndarray, users: np.ndarray, requests: np.ndarray, config: SliceConfig) -> tuple[list, str]:
    """The activity edges and where they come from: the configured ones, or the requests' quartiles when a configured
    bucket would hold fewer than :data:`MIN_ACTIVITY_USERS` users."""
    edges = [int(e) for e in config.activity_edges]
    bucket = assign(activity, edges)
    users_per_bucket = [len(np.unique(users[bucket == i])) for i in range(len(edges) + 1)]
    if config.activity_explicit or min(users_per_bucket) >= MIN_ACTIVITY_USERS:
        return edges, "fixed"
    _, first = np.unique(requests, return_index=True)
    quantiles = np.quantile(activity[first], ACTIVITY_QUANTILES, method="higher")
    edges_q = sorted({max(1, int(e)) for e in quantiles})
    small = ", ".join(f"{label} {n}" for label, n in zip(bucket_labels(edges), users_per_bucket) if n < MIN_ACTIVITY_USERS)
    return edges_q, (f"quartiles {list(ACTIVITY_QUANTILES)} of the requests' activity, because fixed edges {edges} leave "
                     f"fewer than {MIN_ACTIVITY_USERS} users in a bucket (users: {small})")


def request_kind(requests: np.ndarray, labels: np.ndarray, personal_count: np.ndarray) -> np.ndarray:
    """Per impression, its request's kind: ``repeat``, ``new intent`` or ``no click`` (module docstring)."""
    requests, clicked = np.asarray(requests), np.asarray(labels).astype(bool)
    size = int(requests.max()) + 1 if len(requests) else 0
    has_click = np.bincount(requests, weights=clicked, minlength=size) > 0
    repeat = np.bincount(requests, weights=clicked & (np.asarray(personal_count) > 0), minlength=size) > 0
    kind = np.where(repeat, REPEAT, np.where(has_click, NEW_INTENT, NO_CLICK))
    return kind[requests]


def make_slices(activity: np.ndarray, candidate_pv: np.ndarray, config: SliceConfig, degree: np.ndarray | None = None,
                neighbors: int | None = None, split_label: str = "test", users: np.ndarray | None = None,
                requests: np.ndarray | None = None, labels: np.ndarray | None = None,
                personal_count: np.ndarray | None = None, freshness: np.ndarray | None = None) -> tuple[dict, dict]:
    """``{"all": {"all": mask}, "activity": {label: mask}, "pv": {label: mask}}`` plus the edges used.

    With ``degree`` (:func:`candidate_degree`) and the graph's K (``neighbors``), also ``"degree"``.
    With ``users`` and ``requests`` (int codes), the activity edges may fall back to quartiles
    (:func:`activity_edges`); with ``labels`` and ``personal_count`` (``user_candidate_count``) too, also
    ``"request_kind"`` and ``"candidate_novelty"``; with ``freshness`` (:func:`candidate_freshness`), ``"freshness"``.
    ``split_label`` names the impressions the PV quantiles come from (``"test"``, ``"validation"``).
    """
    slices = {"all": {"all": np.ones(len(activity), dtype=bool)}}
    edges_a, edges_from = (activity_edges(activity, users, requests, config) if users is not None and requests is not None
                           else ([int(e) for e in config.activity_edges], "fixed"))
    act = assign(activity, edges_a)
    slices["activity"] = {label: act == i for i, label in enumerate(bucket_labels(edges_a))}
    edges = pv_edges(candidate_pv, config)
    pv = assign(candidate_pv, edges)
    names = ["tail", "torso", "head"] if len(edges) == 2 else [f"pv{i}" for i in range(len(edges) + 1)]
    ranges = bucket_labels(edges)
    slices["pv"] = {f"{name} (PV {rng})": pv == i for i, (name, rng) in enumerate(zip(names, ranges))}
    info = {"activity_edges": edges_a, "activity_edges_from": edges_from, "pv_edges": edges,
            "pv_edges_from": "explicit" if config.pv_edges is not None else f"{split_label}-impression quantiles {list(config.pv_quantiles)}"}
    if degree is not None:
        degree_edges = [int(e) for e in config.degree_edges if neighbors is None or e <= neighbors]
        bucket = assign(degree, degree_edges)
        slices["degree"] = {label: bucket == i for i, label in enumerate(bucket_labels(degree_edges))}
        info.update({"degree_edges": degree_edges, "degree_neighbors": neighbors})
    if personal_count is not None and labels is not None and requests is not None:
        kind = request_kind(requests, labels, personal_count)
        slices["request_kind"] = {k: kind == k for k in (REPEAT, NEW_INTENT, NO_CLICK)}
        new = np.asarray(personal_count) == 0
        slices["candidate_novelty"] = {CANDIDATE_NEW: new, CANDIDATE_ISSUED: ~new}
    if freshness is not None:
        slices["freshness"] = {label: freshness == label for label in (OUTSIDE_VOCABULARY, fresh_label(config.fresh_days), KNOWN_LONGER)}
        info["fresh_days"] = config.fresh_days
    return slices, info

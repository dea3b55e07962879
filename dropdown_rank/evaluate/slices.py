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

A value equal to an edge belongs to the bucket that starts at that edge.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from dropdown_rank.graph import DailyTables


@dataclasses.dataclass(frozen=True)
class SliceConfig:
    activity_edges: tuple = (5, 20, 50)
    pv_quantiles: tuple = (1 / 3, 2 / 3)
    pv_edges: tuple | None = None  # explicit PV edges instead of quantiles
    degree_edges: tuple = (1, 5)


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
    return (tables.ids[snapshot, np.maximum(row, 0)] > 0).sum(axis=1)


def make_slices(activity: np.ndarray, candidate_pv: np.ndarray, config: SliceConfig, degree: np.ndarray | None = None,
                neighbors: int | None = None, split_label: str = "test") -> tuple[dict, dict]:
    """``{"all": {"all": mask}, "activity": {label: mask}, "pv": {label: mask}}`` plus the edges used.

    With ``degree`` (:func:`candidate_degree`) and the graph's K (``neighbors``), also ``"degree"``.
    ``split_label`` names the impressions the PV quantiles come from (``"test"``, ``"validation"``).
    """
    slices = {"all": {"all": np.ones(len(activity), dtype=bool)}}
    act = assign(activity, config.activity_edges)
    slices["activity"] = {label: act == i for i, label in enumerate(bucket_labels(config.activity_edges))}
    edges = pv_edges(candidate_pv, config)
    pv = assign(candidate_pv, edges)
    names = ["tail", "torso", "head"] if len(edges) == 2 else [f"pv{i}" for i in range(len(edges) + 1)]
    ranges = bucket_labels(edges)
    slices["pv"] = {f"{name} (PV {rng})": pv == i for i, (name, rng) in enumerate(zip(names, ranges))}
    info = {"activity_edges": list(config.activity_edges), "pv_edges": edges,
            "pv_edges_from": "explicit" if config.pv_edges is not None else f"{split_label}-impression quantiles {list(config.pv_quantiles)}"}
    if degree is not None:
        degree_edges = [int(e) for e in config.degree_edges if neighbors is None or e <= neighbors]
        bucket = assign(degree, degree_edges)
        slices["degree"] = {label: bucket == i for i, label in enumerate(bucket_labels(degree_edges))}
        info.update({"degree_edges": degree_edges, "degree_neighbors": neighbors})
    return slices, info

"""Slices of the test impressions: user activity buckets and candidate-PV buckets.

Defaults (shown in every report):

* activity: behaviors in the look-back window before the request, edges ``5, 20, 50`` →
  ``0-4 / 5-19 / 20-49 / 50+``;
* PV: the candidate's training-period impressions, split at the test impressions' 1/3 and 2/3
  quantiles → ``tail / torso / head``, each holding about a third of the impressions (ties at an
  edge go to the upper bucket, so shares can differ; reports print them).

A value equal to an edge belongs to the bucket that starts at that edge.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SliceConfig:
    activity_edges: tuple = (5, 20, 50)
    pv_quantiles: tuple = (1 / 3, 2 / 3)
    pv_edges: tuple | None = None  # explicit PV edges instead of quantiles


def bucket_labels(edges) -> list[str]:
    edges = [int(e) for e in edges]
    labels = [f"0-{edges[0] - 1}"] if edges[0] > 0 else []
    labels += [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])]
    return labels + [f"{edges[-1]}+"]


def assign(values: np.ndarray, edges) -> np.ndarray:
    """Bucket index per value: 0 below the first edge, i for edges[i-1] <= value < edges[i]."""
    return np.searchsorted(np.asarray(edges), values, side="right")


def pv_edges(candidate_pv: np.ndarray, config: SliceConfig) -> list[int]:
    if config.pv_edges is not None:
        return [int(e) for e in config.pv_edges]
    edges = np.quantile(candidate_pv, config.pv_quantiles, method="higher")  # edges are observed PV values
    return sorted({max(1, int(np.ceil(e))) for e in edges})


def make_slices(activity: np.ndarray, candidate_pv: np.ndarray, config: SliceConfig) -> dict:
    """``{"all": {"all": mask}, "activity": {label: mask}, "pv": {label: mask}}`` plus the edges used."""
    slices = {"all": {"all": np.ones(len(activity), dtype=bool)}}
    act = assign(activity, config.activity_edges)
    slices["activity"] = {label: act == i for i, label in enumerate(bucket_labels(config.activity_edges))}
    edges = pv_edges(candidate_pv, config)
    pv = assign(candidate_pv, edges)
    names = ["tail", "torso", "head"] if len(edges) == 2 else [f"pv{i}" for i in range(len(edges) + 1)]
    ranges = bucket_labels(edges)
    slices["pv"] = {f"{name} (PV {rng})": pv == i for i, (name, rng) in enumerate(zip(names, ranges))}
    return slices, {"activity_edges": list(config.activity_edges), "pv_edges": edges,
                    "pv_edges_from": "explicit" if config.pv_edges is not None else f"test-impression quantiles {list(config.pv_quantiles)}"}

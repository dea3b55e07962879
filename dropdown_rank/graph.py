"""First-order query→query (q2q) and item→item (i2i) co-occurrence graphs, as neighbor tables.

Built from training-period events only. Events are sorted by (user, ts). Two behaviors of the same
kind co-occur when they belong to the same user and

* ``mode="session"`` (default): the same session, where a session ends after a gap longer than
  ``session_gap_minutes`` between consecutive behaviors of the user (of either kind); or
* ``mode="window"``: they are at most ``window_minutes`` apart.

Either way the pair must be at most ``max_distance`` same-kind behaviors apart, which bounds the
pairs a very long session can produce. A pair of identical ids is not an edge.

Per directed edge a→b:

* ``count``: in session mode, the number of sessions in which a and b co-occur; in window mode, the
  number of co-occurring event pairs;
* ``weight``: count(a, b) / sum over b' of count(a, b'), the share of a's co-occurrences that go to b,
  computed before the top-K cut so it keeps its meaning;
* ``last_ts``: the last time the pair co-occurred (the later event's ts).

Edges with ``count < min_count`` or ``weight < min_weight`` are dropped; each node keeps its top-K
neighbors by weight (ties: count, then recency, then id). Counting is vectorized: one shifted
comparison per distance 1..max_distance over the sorted arrays, then pandas groupbys.

Tables index nodes as the vocabulary does, shifted by one: row 0 is the padding node (no
neighbors, and neighbor id 0 means "no neighbor"); row i is vocabulary entry i-1.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank._io import write_npz

RELATIONS = {"q2q": ("query", "queries"), "i2i": ("item", "items")}


@dataclasses.dataclass(frozen=True)
class GraphConfig:
    neighbors: int = 10
    mode: str = "session"
    session_gap_minutes: float = 30.0
    window_minutes: float = 60.0
    max_distance: int = 10
    min_count: int = 1
    min_weight: float = 0.0

    def __post_init__(self):
        if self.mode not in ("session", "window"):
            raise ValueError(f"co-occurrence mode must be 'session' or 'window', not {self.mode!r}")
        if self.neighbors < 1 or self.max_distance < 1:
            raise ValueError("neighbors and max_distance must be at least 1")


@dataclasses.dataclass
class NeighborTable:
    """Top-K neighbors per node. Arrays are [num_nodes + 1, K]; row 0 is padding.

    ``nodes[i]`` is the id string of row i (``nodes[0] == ""``). ``snapshot_ts`` is the end of the
    period the graph was built from; an edge's age is ``snapshot_ts - last_ts``.
    """

    relation: str
    nodes: np.ndarray
    ids: np.ndarray
    weight: np.ndarray
    last_ts: np.ndarray
    count: np.ndarray
    snapshot_ts: int

    @property
    def k(self) -> int:
        return self.ids.shape[1]

    def degree(self) -> np.ndarray:
        return (self.ids[1:] > 0).sum(axis=1)

    def save(self, path: str | Path) -> None:
        # Node strings live in the vocabulary files; the table stores only their row order.
        write_npz(path, relation=np.array(self.relation), ids=self.ids, weight=self.weight,
                  last_ts=self.last_ts, count=self.count, snapshot_ts=np.array(self.snapshot_ts))

    @classmethod
    def load(cls, path: str | Path, vocabulary: list[str]) -> "NeighborTable":
        with np.load(path) as data:
            nodes = np.array([""] + list(vocabulary), dtype=object)
            if data["ids"].shape[0] != len(nodes):
                raise ValueError(f"{path}: {data['ids'].shape[0]} rows, but the vocabulary has {len(vocabulary)} tokens (+1 padding)")
            return cls(str(data["relation"]), nodes, data["ids"], data["weight"], data["last_ts"], data["count"], int(data["snapshot_ts"]))

    def neighbors_of(self, node: str) -> list[tuple[str, float, int, int]]:
        row = int(np.flatnonzero(self.nodes == node)[0])
        keep = self.ids[row] > 0
        return list(zip(self.nodes[self.ids[row][keep]], self.weight[row][keep].tolist(),
                        self.count[row][keep].tolist(), self.last_ts[row][keep].tolist()))


def session_ids(user_codes: np.ndarray, ts: np.ndarray, gap_seconds: float) -> np.ndarray:
    """Session number per behavior; arrays must be sorted by (user, ts)."""
    new = np.ones(len(ts), dtype=bool)
    new[1:] = (user_codes[1:] != user_codes[:-1]) | (np.diff(ts) > gap_seconds)
    return np.cumsum(new) - 1


def cooccurrence_edges(user_codes, ts, session, node, config: GraphConfig) -> pd.DataFrame:
    """Directed edges (src, dst, count, last_ts) among ``node`` codes; inputs sorted by (user, ts).

    ``node`` < 0 marks behaviors outside the vocabulary: they keep their place in the sequence (so
    distances are real) but form no edge.
    """
    srcs, dsts, sessions, lasts = [], [], [], []
    window = config.window_minutes * 60.0
    for d in range(1, min(config.max_distance, len(node) - 1) + 1):
        a, b = node[:-d], node[d:]
        together = user_codes[:-d] == user_codes[d:]
        if config.mode == "session":
            together &= session[:-d] == session[d:]
        else:
            together &= (ts[d:] - ts[:-d]) <= window
        keep = together & (a != b) & (a >= 0) & (b >= 0)
        srcs += [a[keep], b[keep]]
        dsts += [b[keep], a[keep]]
        sessions += [session[d:][keep]] * 2
        lasts += [ts[d:][keep]] * 2
    pairs = pd.DataFrame({
        "src": np.concatenate(srcs or [np.zeros(0, np.int64)]),
        "dst": np.concatenate(dsts or [np.zeros(0, np.int64)]),
        "session": np.concatenate(sessions or [np.zeros(0, np.int64)]),
        "last_ts": np.concatenate(lasts or [np.zeros(0, np.int64)]),
    })
    if config.mode == "session":
        # A pair repeated inside one session counts once.
        pairs = pairs.groupby(["session", "src", "dst"], sort=False)["last_ts"].max().reset_index()
    return pairs.groupby(["src", "dst"], sort=False).agg(count=("last_ts", "size"), last_ts=("last_ts", "max")).reset_index()


def neighbor_table(edges: pd.DataFrame, num_nodes: int, config: GraphConfig, relation: str, nodes, snapshot_ts: int):
    """Normalize, threshold and cut ``edges`` (0-based node codes) to a top-K table. Returns (table, stats)."""
    edges = edges[edges["count"] >= config.min_count].copy()
    edges["weight"] = edges["count"] / edges.groupby("src")["count"].transform("sum")
    edges = edges[edges["weight"] >= config.min_weight]
    edges = edges.sort_values(["src", "weight", "count", "last_ts", "dst"], ascending=[True, False, False, False, True], kind="stable")
    rank = edges.groupby("src", sort=False).cumcount().to_numpy()
    kept = edges[rank < config.neighbors]
    rank = rank[rank < config.neighbors]
    k = config.neighbors
    ids = np.zeros((num_nodes + 1, k), dtype=np.int32)
    weight = np.zeros((num_nodes + 1, k), dtype=np.float32)
    last_ts = np.zeros((num_nodes + 1, k), dtype=np.int64)
    count = np.zeros((num_nodes + 1, k), dtype=np.int32)
    row = kept["src"].to_numpy() + 1
    ids[row, rank] = kept["dst"].to_numpy() + 1
    weight[row, rank] = kept["weight"].to_numpy()
    last_ts[row, rank] = kept["last_ts"].to_numpy()
    count[row, rank] = kept["count"].to_numpy()
    table = NeighborTable(relation, np.asarray(nodes, dtype=object), ids, weight, last_ts, count, int(snapshot_ts))
    degree = table.degree()
    stats = {
        "nodes": int(num_nodes),
        "nodes_with_neighbors": int((degree > 0).sum()),
        "edges_before_top_k": int(len(edges)),
        "edges_kept": int(len(kept)),
        "degree_histogram": {str(d): int(n) for d, n in enumerate(np.bincount(degree, minlength=k + 1))},
        "mean_degree": float(degree.mean()) if len(degree) else 0.0,
        "weight_quantiles": _quantiles(kept["weight"].to_numpy()),
        "count_quantiles": _quantiles(kept["count"].to_numpy()),
        "age_days_quantiles": _quantiles((snapshot_ts - kept["last_ts"].to_numpy()) / 86400.0),
    }
    return table, stats


def _quantiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    return {str(q): float(np.quantile(values, q)) for q in (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)}


def build_graphs(train_events: pd.DataFrame, vocabs: dict, snapshot_ts: int, config: GraphConfig, progress=print):
    """q2q and i2i tables from training events. Returns ({relation: table}, {relation: stats})."""
    events = train_events.sort_values(["user_id", "ts"], kind="stable")
    user_codes = pd.factorize(events["user_id"])[0]
    ts = events["ts"].to_numpy(dtype=np.int64)
    session = session_ids(user_codes, ts, config.session_gap_minutes * 60.0)
    kinds = events["kind"].to_numpy()
    tables, stats = {}, {}
    for relation, (kind, vocab_name) in RELATIONS.items():
        mask = kinds == kind
        vocab = vocabs[vocab_name]["token"]
        codes = pd.Index(vocab).get_indexer(events["id"].to_numpy()[mask])
        edges = cooccurrence_edges(user_codes[mask], ts[mask], session[mask], codes, config)
        tables[relation], stats[relation] = neighbor_table(edges, len(vocab), config, relation, [""] + list(vocab), snapshot_ts)
        stats[relation]["behaviors"] = int(mask.sum())
        stats[relation]["behaviors_outside_vocabulary"] = int((codes < 0).sum())
        progress(
            f"graph {relation}: {stats[relation]['nodes']:,} nodes, {stats[relation]['edges_kept']:,} edges kept "
            f"of {stats[relation]['edges_before_top_k']:,}, mean degree {stats[relation]['mean_degree']:.2f}"
        )
    return tables, stats

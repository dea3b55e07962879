"""The graph's stored form, which training and serving read: neighbor tables, one day's or every day's as changes.

``graph.py`` builds them from the logs; everything after the build (the work directory's read side, the
model, export, evaluation) needs only this module, not the build's code.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank._io import write_npz

RELATIONS = {"q2q": ("query", "queries"), "i2i": ("item", "items")}  # relation: (node kind, vocabulary)


@dataclasses.dataclass
class NeighborTable:
    """Top-K neighbors per node, one snapshot. Arrays are [num_nodes + 1, K]; row 0 is padding.

    ``nodes[i]`` is the id string of row i (``nodes[0] == ""``). ``snapshot_ts`` is the start of the
    day the snapshot serves; every edge's ``last_ts`` is before it, and its age is
    ``snapshot_ts - last_ts``.
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
        DailyTables.from_snapshots([self]).save(path)

    @classmethod
    def load(cls, path: str | Path, vocabulary: list[str]) -> "NeighborTable":
        """The latest snapshot stored at ``path``: what serving loads."""
        return DailyTables.load(path, vocabulary).latest()


ROW_FIELDS = ("ids", "weight", "last_ts", "count")  # a neighbor row's arrays, [rows, K] each


@dataclasses.dataclass
class DailyTables:
    """One relation's daily snapshots, oldest first (day starts ``snapshot_ts`` ``[S]``), **stored as changes**.

    A node's neighbor row is stored once per day it changes, not once per day: version ``v`` is row
    ``node[v]`` (1..num_nodes) from snapshot index ``day[v]`` until that node's next version, with
    arrays ``ids``/``weight``/``last_ts``/``count`` ``[V, K]``, sorted by (node, day). A node has no
    neighbors before its first version; a row that empties gets a version of zeros. An edge keeps the
    time it last co-occurred, not its age, so a day passing changes no row: ages are measured from
    the snapshot that reads the row (``snapshot_ts[d] - last_ts``). Snapshot ``d`` (``self[d]``) is
    exactly the table a build of that day alone gives (``tests/test_graph.py``).

    Stored as one ``.npz`` (node strings live in the vocabulary files; the file stores row order).
    A run directory stores the single snapshot it serves with, in the same format (S = 1).
    """

    relation: str
    nodes: np.ndarray
    snapshot_ts: np.ndarray
    node: np.ndarray
    day: np.ndarray
    ids: np.ndarray
    weight: np.ndarray
    last_ts: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.snapshot_ts)

    @property
    def versions(self) -> int:
        return len(self.node)

    def version_at(self, snapshot, rows) -> np.ndarray:
        """Per (snapshot index, table row) pair (broadcast), the version that holds then, or -1 (no neighbors)."""
        snapshot, rows = np.broadcast_arrays(np.asarray(snapshot, np.int64), np.asarray(rows, np.int64))
        days = len(self)
        if snapshot.size and (snapshot.min() < 0 or snapshot.max() >= days):
            raise IndexError(f"{self.relation}: snapshot index out of range 0..{days - 1}")
        found = np.searchsorted(self.node.astype(np.int64) * days + self.day, rows * days + snapshot, side="right") - 1
        hit = (found >= 0) & (self.node[np.maximum(found, 0)] == rows) if self.versions else np.zeros(rows.shape, bool)
        return np.where(hit, found, -1)

    def __getitem__(self, index: int) -> NeighborTable:
        index = range(len(self))[index]  # negative indices count from the last day; out of range raises
        rows = len(self.nodes)
        version = self.version_at(index, np.arange(rows))
        held = version >= 0
        arrays = {}
        for field in ROW_FIELDS:
            values = getattr(self, field)
            arrays[field] = np.zeros((rows, self.ids.shape[1]), values.dtype)
            arrays[field][held] = values[version[held]]
        return NeighborTable(self.relation, self.nodes, snapshot_ts=int(self.snapshot_ts[index]), **arrays)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def latest(self) -> NeighborTable:
        return self[len(self) - 1]

    def at(self, snapshot_ts: int) -> NeighborTable:
        found = np.flatnonzero(self.snapshot_ts == snapshot_ts)
        if not len(found):
            days = ", ".join(iso_day(t) for t in self.snapshot_ts)
            raise KeyError(f"{self.relation}: no snapshot for {iso_day(snapshot_ts)} (have {days})")
        return self[int(found[0])]

    @classmethod
    def from_snapshots(cls, tables) -> "DailyTables":
        changes = SnapshotChanges(tables[0].relation)
        for table in tables:
            changes.add(table.snapshot_ts, *(getattr(table, f) for f in ROW_FIELDS))
        return changes.finish(tables[0].nodes)

    def save(self, path: str | Path) -> None:
        write_npz(path, relation=np.array(self.relation), rows=np.array(len(self.nodes)), snapshot_ts=self.snapshot_ts,
                  node=self.node, day=self.day, **{f: getattr(self, f) for f in ROW_FIELDS})

    @classmethod
    def load(cls, path: str | Path, vocabulary: list[str]) -> "DailyTables":
        with np.load(path) as data:
            nodes = np.array([""] + list(vocabulary), dtype=object)
            if "node" not in data.files:
                raise ValueError(f"{path}: not a neighbor-history file (an older dropdown_rank stored every day whole): "
                                 f"rebuild the work directory, or retrain the run that holds it")
            if int(data["rows"]) != len(nodes):
                raise ValueError(f"{path}: {int(data['rows'])} rows, but the vocabulary has {len(vocabulary)} tokens (+1 padding)")
            return cls(str(data["relation"]), nodes, data["snapshot_ts"].astype(np.int64), data["node"], data["day"],
                       *(data[f] for f in ROW_FIELDS))


class SnapshotChanges:
    """Collects one relation's daily snapshots, given in day order, as :class:`DailyTables` changes.

    Holds the previous snapshot and the changed rows only, so a build never keeps every day whole."""

    def __init__(self, relation: str):
        self.relation = relation
        self.snapshot_ts, self.node, self.day, self.rows = [], [], [], {f: [] for f in ROW_FIELDS}
        self.previous = None

    def add(self, snapshot_ts: int, ids, weight, last_ts, count) -> None:
        """The snapshot of day start ``snapshot_ts``: arrays ``[num_nodes + 1, K]`` (row 0 padding)."""
        arrays = dict(zip(ROW_FIELDS, (ids, weight, last_ts, count)))
        if self.snapshot_ts and snapshot_ts <= self.snapshot_ts[-1]:
            raise ValueError(f"{self.relation}: snapshot {iso_day(snapshot_ts)} after {iso_day(self.snapshot_ts[-1])}: days must come in order")
        if self.previous is None:
            changed = (ids > 0).any(axis=1)
        else:
            if ids.shape != self.previous["ids"].shape:
                raise ValueError(f"{self.relation}: snapshot {iso_day(snapshot_ts)} has shape {ids.shape}, the previous "
                                 f"{self.previous['ids'].shape}")
            changed = np.zeros(len(ids), bool)
            for field, values in arrays.items():
                changed |= (values != self.previous[field]).any(axis=1)
        rows = np.flatnonzero(changed)
        self.node.append(rows.astype(np.int32))
        self.day.append(np.full(len(rows), len(self.snapshot_ts), np.int32))
        for field, values in arrays.items():
            self.rows[field].append(values[rows])
        self.snapshot_ts.append(int(snapshot_ts))
        self.previous = arrays

    def finish(self, nodes) -> DailyTables:
        node, day = np.concatenate(self.node), np.concatenate(self.day)
        order = np.lexsort((day, node))
        rows = {f: np.concatenate(v)[order] for f, v in self.rows.items()}
        return DailyTables(self.relation, np.asarray(nodes, dtype=object), np.array(self.snapshot_ts, dtype=np.int64),
                           node[order], day[order], **rows)


def iso_day(ts) -> str:
    """The UTC date of an epoch-seconds time, as YYYY-MM-DD."""
    return pd.Timestamp(int(ts), unit="s", tz="UTC").strftime("%Y-%m-%d")

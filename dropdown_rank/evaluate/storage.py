"""What each model's training data costs to store, measured on written files.

For the training split, this writes (to a scratch directory, then deletes) one Parquet file per
variant, with the same writer settings (snappy, dictionary encoding), and measures its bytes:

* ``sequences L`` (the sample rows): the model's input features with histories cut to L (base_20,
  base_50, and the GNN's L=20 sequences): user_id, candidate, request_ts, position, label, the two
  histories and their timestamps, and the per-row features every model reads when the samples hold
  them (:data:`ROW_FEATURES`: the user's and the candidate's point-in-time counts and the prefix;
  ``measured["row_features"]`` lists those counted; they are counted for every model, so a ``-nofeat``
  ablation, which reads none of them, is overcounted by those columns). The slicing fields (``activity``,
  ``candidate_pv``) and ``request_id`` are not model input and are not counted;
* ``neighbor tables``: the work directory's ``graph/*.npz`` files, counted once, for GNN models:
  their real bytes, so every daily snapshot they hold is counted (the report says how many when
  ``stats.json`` records it);
* ``vocabularies``: ``vocab/*.parquet``, needed by every model (StringLookup);
* ``neighbors in every example``: what a pipeline that writes each node's neighbors into every
  example would store instead of the tables: the L=20 sequences plus, for the candidate and every
  history query and item, its neighbor ids, weights, last co-occurrence times and counts (from one
  snapshot, the latest: each example would carry one day's neighbors).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dropdown_rank.features import HISTORY_FIELDS, ROW_FEATURES, TRAINING_FIELDS
from dropdown_rank.tables import NeighborTable
from dropdown_rank.workdir import shard_files

MODEL_COLUMNS = [name for name in TRAINING_FIELDS if name not in ROW_FEATURES]  # ids, time, position, label, sequences


def _cut(table: pa.Table, seq_len: int) -> pa.Table:
    for name in HISTORY_FIELDS:
        table = table.set_column(table.schema.get_field_index(name), name, pc.list_slice(table.column(name), 0, seq_len))
    return table


def _nested(values: pa.Array, node_offsets: np.ndarray, example_offsets: np.ndarray) -> pa.Array:
    inner = pa.ListArray.from_arrays(pa.array(node_offsets.astype(np.int32)), values)
    return pa.ListArray.from_arrays(pa.array(example_offsets.astype(np.int32)), inner)


def _neighbor_columns(prefix: str, nodes: pa.ChunkedArray, table: NeighborTable, dictionary: pa.Array) -> dict:
    """For list<str> ``nodes`` per example: their neighbors as list<list<…>> columns."""
    nodes = nodes.combine_chunks()
    if isinstance(nodes, pa.StringArray):  # the candidate: one node per example
        nodes = pa.ListArray.from_arrays(pa.array(np.arange(len(nodes) + 1, dtype=np.int32)), nodes)
    flat = nodes.values.to_numpy(zero_copy_only=False)
    rows = pd.Index(table.nodes).get_indexer(flat)
    ids = np.where(rows[:, None] >= 0, table.ids[np.maximum(rows, 0)], 0)
    real = ids > 0
    node_offsets = np.concatenate([[0], np.cumsum(real.sum(axis=1))])
    example_offsets = np.asarray(nodes.offsets)
    pick = lambda array: array[np.maximum(rows, 0)][real]
    return {
        f"{prefix}_neighbor_ids": _nested(pa.DictionaryArray.from_arrays(pa.array(ids[real].astype(np.int32)), dictionary), node_offsets, example_offsets),
        f"{prefix}_neighbor_weight": _nested(pa.array(pick(table.weight)), node_offsets, example_offsets),
        f"{prefix}_neighbor_last_ts": _nested(pa.array(pick(table.last_ts)), node_offsets, example_offsets),
        f"{prefix}_neighbor_count": _nested(pa.array(pick(table.count)), node_offsets, example_offsets),
    }


def _write_variant(samples_dir: Path, path: Path, seq_len: int, columns: list, tables: dict | None = None) -> int:
    writer = None
    dictionaries = {r: pa.array(t.nodes.astype(str)) for r, t in (tables or {}).items()}
    try:
        for shard in shard_files(samples_dir, "train"):
            table = _cut(pq.read_table(shard, columns=columns), seq_len)
            if tables:
                extra = {}
                extra.update(_neighbor_columns("candidate", table.column("candidate"), tables["q2q"], dictionaries["q2q"]))
                extra.update(_neighbor_columns("query", table.column("query_history"), tables["q2q"], dictionaries["q2q"]))
                extra.update(_neighbor_columns("item", table.column("item_history"), tables["i2i"], dictionaries["i2i"]))
                for name, column in extra.items():
                    table = table.append_column(name, column)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return path.stat().st_size


def _dir_bytes(paths) -> int:
    return int(sum(Path(p).stat().st_size for p in paths))


def measure_storage(work, seq_lens, with_gnn: bool, scratch: Path, progress=print) -> dict:
    """Bytes per variant on the training split of ``work`` (a :class:`~dropdown_rank.workdir.Work`)."""
    scratch.mkdir(parents=True, exist_ok=True)
    shards = shard_files(work.samples_dir, "train")
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in shards)
    # Older work directories lack the per-row features: their rows are measured without them.
    names = set(pq.read_schema(shards[0]).names)
    features = [c for c in ROW_FEATURES if c in names]
    columns = MODEL_COLUMNS + features
    out = {"train_examples": int(rows),
           "row_features": features,
           "vocabularies": _dir_bytes((work.path / "vocab").glob("*.parquet")),
           "neighbor_tables": _dir_bytes((work.path / "graph").glob("*.npz")),
           "sequences": {}}
    try:
        for seq_len in sorted(set(seq_lens)):
            progress(f"storage: writing L={seq_len} sequences")
            out["sequences"][str(seq_len)] = _write_variant(work.samples_dir, scratch / f"sequences_{seq_len}.parquet", seq_len, columns)
        if with_gnn:
            progress("storage: writing L=20 sequences with neighbors in every example")
            tables = {r: work.neighbor_table(r) for r in ("q2q", "i2i")}
            out["neighbors_in_every_example_20"] = _write_variant(work.samples_dir, scratch / "neighbors_20.parquet", 20, columns, tables)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def model_storage(kind: str, seq_len: int, measured: dict) -> dict:
    """Bytes a model's training data needs, split by part, from :func:`measure_storage`'s output."""
    parts = {"sequences": measured["sequences"][str(seq_len)], "vocabularies": measured["vocabularies"]}
    if kind != "base":
        parts["neighbor_tables"] = measured["neighbor_tables"]
    total = sum(parts.values())
    out = {"parts": parts, "total_bytes": total, "bytes_per_example": total / measured["train_examples"]}
    if kind != "base" and "neighbors_in_every_example_20" in measured and seq_len == 20:
        inline = measured["neighbors_in_every_example_20"] + measured["vocabularies"]
        out["if_neighbors_in_every_example"] = {"total_bytes": inline, "bytes_per_example": inline / measured["train_examples"]}
    return out

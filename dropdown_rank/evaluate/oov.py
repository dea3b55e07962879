"""Out-of-vocabulary shares of the evaluated split's impressions (test or valid), per slice, for a run's vocabulary.

An impression counts as OOV for

* ``user``: its user id is not in ``RUN/vocab/users.parquet``;
* ``candidate``: its candidate is not in ``queries.parquet``;
* ``history``: any of the first L ids of its query history (``queries``) or item history
  (``items``) is not in the vocabulary, L = the model's ``seq_len`` (what the model reads;
  ``""`` padding never counts). ``query_history`` / ``item_history`` give the two parts.

The model maps such ids to its OOV bucket. Computed with pyarrow (``is_in`` on flattened lists).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dropdown_rank.workdir import shard_files

SAMPLE_COLUMNS = ["request_id", "candidate", "user_id", "query_history", "item_history"]
KINDS = ("user", "candidate", "history", "query_history", "item_history")


def read_split_samples(samples_dir: str | Path, split: str = "test", columns=SAMPLE_COLUMNS) -> pa.Table:
    """``columns`` of every shard of one split (``test`` or ``valid``), in sample order, as one Arrow table."""
    return pa.concat_tables([pq.read_table(f, columns=list(columns)) for f in shard_files(samples_dir, split)])


def read_run_vocabulary(run_dir: str | Path) -> dict:
    """``{"users"|"queries"|"items": pa.Array of tokens}`` from ``RUN/vocab/*.parquet``."""
    return {name: pq.read_table(Path(run_dir) / "vocab" / f"{name}.parquet", columns=["token"]).column("token").combine_chunks().cast(pa.string())
            for name in ("users", "queries", "items")}


def _numpy(array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False) if isinstance(array, (pa.Array, pa.ChunkedArray)) else np.asarray(array)


def _missing(values, vocabulary: pa.Array) -> np.ndarray:
    values = values.cast(pa.string()) if values.type != pa.string() else values
    return ~_numpy(pc.fill_null(pc.is_in(values, value_set=vocabulary, skip_nulls=True), True)).astype(bool)


def _history_missing(column: pa.ChunkedArray, vocabulary: pa.Array, seq_len: int, rows: int) -> np.ndarray:
    lists = pc.list_slice(column, 0, seq_len)
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    values = pc.list_flatten(lists)
    parents = _numpy(pc.list_parent_indices(lists))
    missing = _missing(values, vocabulary) & _numpy(pc.fill_null(pc.not_equal(values.cast(pa.string()), ""), False)).astype(bool)
    return np.bincount(parents[missing], minlength=rows) > 0


def oov_flags(samples: pa.Table, vocabulary: dict, seq_len: int) -> dict:
    """Per impression, bool arrays: ``user``, ``candidate``, ``query_history``, ``item_history``, ``history``."""
    rows = samples.num_rows
    flags = {"user": _missing(samples.column("user_id"), vocabulary["users"]),
             "candidate": _missing(samples.column("candidate"), vocabulary["queries"]),
             "query_history": _history_missing(samples.column("query_history"), vocabulary["queries"], seq_len, rows),
             "item_history": _history_missing(samples.column("item_history"), vocabulary["items"], seq_len, rows)}
    flags["history"] = flags["query_history"] | flags["item_history"]
    return flags


def oov_shares(flags: dict, slices: dict) -> dict:
    """``{slice: {bucket: {kind: share of the bucket's impressions}}}``."""
    out = {}
    for slice_name, buckets in slices.items():
        for bucket, mask in buckets.items():
            count = int(mask.sum())
            out.setdefault(slice_name, {})[bucket] = {k: float(flags[k][mask].mean()) if count else None for k in KINDS}
    return out

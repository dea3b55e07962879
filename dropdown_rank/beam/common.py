"""What both Beam pipelines share: options, bucket keys, and the Arrow/pandas conversions of their elements."""
from __future__ import annotations

import itertools
import math
import pickle
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.typehints import Any, Tuple

from dropdown_rank._io import atomic_path

HOUR = 3600
KEYED = Tuple[Any, Any]  # the output type of DoFns that also yield tagged small results
ROW_BITS = 40  # a clean row's key: (file index << ROW_BITS) + row in its file

EVENT_DTYPES = {"user_id": object, "ts": np.int64, "kind": object, "id": object, "_row": np.int64}
IMPRESSION_DTYPES = {"request_id": object, "user_id": object, "ts": np.int64, "prefix": object, "candidate": object,
                     "position": np.int32, "clicked": np.int8, "_row": np.int64, "_rank": np.int64}


class BuildOptions(PipelineOptions):
    """dropdown_rank's own pipeline options (given after ``--`` with Beam's)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--user_buckets", type=int, default=0,
                            help="partitions of the users (and of tokens and graph nodes) the build works on; one partition's "
                                 "events and impressions are held by one worker at a time (default: one per 250,000 input rows)")
        parser.add_argument("--chunk_rows", type=int, default=250_000,
                            help="rows per chunk when reading and validating the logs (default 250,000)")


def pipeline_options(pipeline_args) -> PipelineOptions:
    """Beam options from the command line after ``--``. Without ``--runner``, the local ``FnApiRunner`` (named, since
    the default DirectRunner tries to download a runner binary)."""
    args = list(pipeline_args or [])
    options = PipelineOptions(args)
    if not options.view_as(StandardOptions).runner:
        options = PipelineOptions(args + ["--runner=FnApiRunner"])
    return options


def default_buckets(total_rows: int) -> int:
    return max(1, min(4096, math.ceil(total_rows / 250_000)))


def bucket_of(values, buckets: int) -> np.ndarray:
    """A stable partition of string keys (the same in every process, unlike ``hash``)."""
    values = np.asarray(values, dtype=object)
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    return (pd.util.hash_array(values) % np.uint64(buckets)).astype(np.int64)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def to_frame(tables, dtypes: dict) -> pd.DataFrame:
    """Arrow tables (elements of a group) as one frame with the dtypes of the in-memory build's frames."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in dtypes.items()})
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    return frame.astype({c: d for c, d in dtypes.items() if c in frame.columns})


def split_by(frame: pd.DataFrame, keys: np.ndarray):
    """``(key, rows)`` for each key present, rows in frame order."""
    if not len(frame):
        return
    order = np.argsort(keys, kind="stable")
    keys_sorted = keys[order]
    bounds = np.flatnonzero(np.diff(keys_sorted)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(keys_sorted)]):
        yield keys_sorted[lo].item(), frame.iloc[order[lo:hi]]


def split_table(table: pa.Table, keys: np.ndarray):
    """:func:`split_by` for an Arrow table (cheaper than converting many small frames)."""
    if not table.num_rows:
        return
    order = np.argsort(keys, kind="stable")
    keys_sorted = keys[order]
    bounds = np.flatnonzero(np.diff(keys_sorted)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(keys_sorted)]):
        yield keys_sorted[lo].item(), table.take(order[lo:hi])


class StashFile:
    """An Arrow IPC file of tables written one after another under ``tmp/stash/<stage>/``; :meth:`add` returns each
    table's reference ``(path, batch)``.

    Steps pass these references through ``GroupByKey`` instead of the rows: the local runner holds a grouping
    step's whole input in its own memory and sends each worker its share in one message, so rows passed as
    elements made the runner and the workers grow with the data (8.1 GB and 4.3 GB on the 10x world). Use the
    references once the file is closed. A retried bundle writes another file; files nobody references are
    ignored, and the build's scratch directory goes at the end.
    """

    def __init__(self, tmp: str | Path, stage: str):
        self.path = Path(tmp) / "stash" / stage / f"{uuid.uuid4().hex}.arrow"
        self._writer, self._batches = None, 0

    def add(self, table: pa.Table) -> tuple[str, int]:
        """Append a table with rows (its schema must be the file's); its reference."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pa.ipc.new_file(str(self.path), table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4"))
        self._writer.write_batch(table.combine_chunks().to_batches()[0])
        self._batches += 1
        return str(self.path), self._batches - 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._writer is not None:
            self._writer.close()


def stash(tmp, stage: str, table: pa.Table, keys: np.ndarray):
    """:func:`split_table`, with each key's rows as a reference into one :class:`StashFile`: ``(key, (path, batch))``."""
    with StashFile(tmp, stage) as file:
        refs = [(key, file.add(part)) for key, part in split_table(table, keys)]
    yield from refs


def unstash(refs) -> list[pa.Table]:
    """The tables behind :class:`StashFile` references (``None`` entries skipped), in sorted reference order."""
    tables = []
    for path, group in itertools.groupby(sorted(r for r in refs if r is not None), key=lambda ref: ref[0]):
        with pa.ipc.open_file(path) as reader:
            tables += [pa.Table.from_batches([reader.get_batch(batch)]) for _, batch in group]
    return tables


def bucket_path(tmp: str | Path, table: str, bucket: int) -> Path:
    return Path(tmp) / table / f"bucket-{bucket:05d}.parquet"


def write_bucket(tmp, table: str, bucket: int, rows) -> None:
    """One partition's rows (a frame or an Arrow table), in source row order."""
    with atomic_path(bucket_path(tmp, table, bucket)) as path:
        pq.write_table(rows if isinstance(rows, pa.Table) else to_arrow(rows), path)


def read_bucket(tmp, table: str, bucket: int) -> pd.DataFrame:
    """A partition written by the validation pipeline (empty if it has no rows), in source row order."""
    path = bucket_path(tmp, table, bucket)
    dtypes = EVENT_DTYPES if table == "events" else IMPRESSION_DTYPES
    return to_frame([pq.read_table(path)] if path.exists() else [], dtypes)


def dump(records, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(list(records)))


def load(path) -> list:
    return pickle.loads(Path(path).read_bytes())

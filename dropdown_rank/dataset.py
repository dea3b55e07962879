"""tf.data pipeline over sample shards: shuffle, batch, prefetch.

Parquet shards are read with pyarrow one batch at a time (never one example at a time): histories
are cut to the model's ``seq_len`` by ``pyarrow.compute.list_slice`` (the stored lists are most recent
first, so this keeps the latest behaviors) and handed to TensorFlow as flat values plus row splits;
a ``map`` pads them to dense ``[batch, seq_len]`` tensors with "" (ids) and 0 (timestamps).

Shuffling: each epoch visits the shards in a seeded random order and shuffles rows within windows
of ``window_rows`` rows (a shuffle buffer that spans shards). Epoch ``e`` with seed ``s`` always
yields the same batches: :class:`SampleStream` counts epochs itself, or takes the epoch from
``set_epoch`` (training sets it from Keras, so a run resumed by BackupAndRestore sees the batches
an uninterrupted run would). Evaluation (``shuffle=False``) yields the rows in ``read_samples``
order, so predictions line up with it.

The dataset knows its length: every batch but the last is full, so an epoch has
``ceil(rows / batch_size)`` batches, with ``rows`` read from the shards' Parquet metadata (no data is
read). ``tf.data.experimental.assert_cardinality`` attaches that count, so Keras shows a total and
an ETA from the first epoch (not ``1/Unknown``), also after a resume.

Each element is ``(features, label)``; ``features`` holds :data:`FEATURES` (``position`` too, for
the position-bias tower), ``label`` is float32 ``[batch]``.
"""
from __future__ import annotations

from pathlib import Path

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tensorflow as tf

from dropdown_rank.samples import COUNTER_FIELDS, HISTORY_FIELDS, shard_files

SCALAR_FIELDS = {"user_id": tf.string, "candidate": tf.string, "prefix": tf.string, "request_ts": tf.int64, "position": tf.int32,
                 **{name: tf.int64 for name in COUNTER_FIELDS}}
FEATURES = ("user_id", "candidate", "prefix", "query_history", "query_history_ts", "item_history", "item_history_ts", "request_ts",
            "position") + COUNTER_FIELDS
_HISTORY_DTYPES = {"query_history": tf.string, "query_history_ts": tf.int64, "item_history": tf.string, "item_history_ts": tf.int64}
_COLUMNS = list(SCALAR_FIELDS) + list(HISTORY_FIELDS) + ["label"]
PREFETCH_BATCHES = 16


def _numpy_batch(table: pa.Table) -> dict:
    out = {name: table.column(name).to_numpy() for name in SCALAR_FIELDS}
    for name in COUNTER_FIELDS:  # int32 on disk (samples.py), int64 in the model and the serving signature
        out[name] = out[name].astype(np.int64)
    out["label"] = table.column("label").to_numpy().astype(np.float32)
    for name in HISTORY_FIELDS:
        column = table.column(name).combine_chunks()
        out[f"{name}/values"] = column.values.to_numpy(zero_copy_only=False)
        out[f"{name}/splits"] = (column.offsets.to_numpy() - column.offsets[0].as_py()).astype(np.int64)
    return out


def _signature():
    sig = {name: tf.TensorSpec([None], dtype) for name, dtype in SCALAR_FIELDS.items()}
    sig["label"] = tf.TensorSpec([None], tf.float32)
    for name, dtype in _HISTORY_DTYPES.items():
        sig[f"{name}/values"] = tf.TensorSpec([None], dtype)
        sig[f"{name}/splits"] = tf.TensorSpec([None], tf.int64)
    return sig


class SampleStream:
    """Batches of one split's shards as a ``tf.data.Dataset`` (:meth:`dataset`); one pass per epoch."""

    def __init__(self, samples_dir, split, seq_len, batch_size=1024, shuffle=False, seed=0, window_rows=131072):
        self.files, self.seq_len, self.batch_size = shard_files(samples_dir, split), seq_len, batch_size
        self.shuffle, self.seed, self.window_rows = shuffle, seed, window_rows
        self.epoch = 0
        self.rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)

    @property
    def batches(self) -> int:
        """Batches per epoch: all full but the last (``_drain`` carries a window's remainder over)."""
        return math.ceil(self.rows / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _tables(self, rng):
        order = rng.permutation(len(self.files)) if self.shuffle else range(len(self.files))
        for index in order:
            table = pq.read_table(self.files[index], columns=_COLUMNS)
            for name in HISTORY_FIELDS:
                cut = pc.list_slice(table.column(name), 0, self.seq_len)
                table = table.set_column(table.schema.get_field_index(name), name, cut)
            yield table

    def _batches(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        pending = None
        for table in self._tables(rng):
            pending = table if pending is None else pa.concat_tables([pending, table])
            if pending.num_rows >= self.window_rows:
                pending = yield from self._drain(pending, rng, keep_remainder=True)
        if pending is not None and pending.num_rows:
            yield from self._drain(pending, rng, keep_remainder=False)

    def _drain(self, window: pa.Table, rng, keep_remainder: bool):
        """Yield a window's batches in shuffled order; return the rows left for the next window.

        Each batch is gathered on its own: one ``take`` of the whole window would stall training
        at every window boundary instead of overlapping with it."""
        order = rng.permutation(window.num_rows) if self.shuffle else np.arange(window.num_rows)
        stop = window.num_rows // self.batch_size * self.batch_size if keep_remainder else window.num_rows
        for lo in range(0, stop, self.batch_size):
            rows = order[lo: lo + self.batch_size]
            yield _numpy_batch(window.take(rows) if self.shuffle else window.slice(int(rows[0]), len(rows)))
        return window.take(order[stop:])

    def dataset(self) -> tf.data.Dataset:
        """``(features, label)`` batches, histories padded to ``seq_len``."""
        seq_len = self.seq_len

        def to_model_inputs(batch):
            features = {name: batch[name] for name in SCALAR_FIELDS}
            for name, dtype in _HISTORY_DTYPES.items():
                ragged = tf.RaggedTensor.from_row_splits(batch[f"{name}/values"], batch[f"{name}/splits"], validate=False)
                features[name] = ragged.to_tensor(default_value="" if dtype == tf.string else 0, shape=[None, seq_len])
            return features, batch["label"]

        dataset = tf.data.Dataset.from_generator(self._batches, output_signature=_signature())
        # A sequential map: padding is cheap, and the parallel map logs a spurious NodeDef error on TF 2.21.
        # 16 batches of prefetch cover a window refill (reading two shards, ~0.5 s), which AUTOTUNE's
        # few buffered batches did not: the boundary step fell from 450-570 ms to 60-75 ms.
        dataset = dataset.map(to_model_inputs).apply(tf.data.experimental.assert_cardinality(self.batches))
        return dataset.prefetch(PREFETCH_BATCHES)


def make_dataset(samples_dir: str | Path, split: str, seq_len: int, batch_size: int = 1024, shuffle: bool = False,
                 seed: int = 0, window_rows: int = 131072) -> tf.data.Dataset:
    """``(features, label)`` batches of one split, histories padded to ``seq_len``."""
    return SampleStream(samples_dir, split, seq_len, batch_size, shuffle, seed, window_rows).dataset()

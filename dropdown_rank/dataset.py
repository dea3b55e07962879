"""tf.data pipeline over a split's training records: interleave, shuffle, batch, parse, prefetch.

Everything after the epoch's file order runs inside tf.data, on its own threads: TFRecord files are
read with ``interleave`` (several files at once, in parallel, in blocks of rows), serialized rows are
shuffled, cut into batches with ``rebatch``, then parsed a whole batch at a time by ``records.decode``
in a parallel ``map`` (histories cut to the model's ``seq_len``, the most recent first, and padded
with "" and 0).

Shuffling: each epoch visits the files in a seeded random order (reading ``READ_FILES_AT_ONCE`` at a
time) and shuffles the serialized rows within consecutive windows of ``window_rows`` rows, seeded
too. Epoch ``e`` with seed ``s`` always yields the same batches: :class:`SampleStream` counts epochs
itself, or takes the epoch from ``set_epoch`` (training sets it from Keras, so a run resumed by
BackupAndRestore sees the batches an uninterrupted run would).
The epoch's file order and shuffle seed come from NumPy, once per epoch, through a one-element
generator; no data passes through Python. Evaluation (``shuffle=False``) reads the files one after
the other and yields the rows in ``read_samples`` order, so predictions line up with it.

Workers: ``num_shards``/``shard_index`` (``tf.distribute.InputContext``'s ``num_input_pipelines`` and
``input_pipeline_id``) give each worker every ``num_shards``-th file, the file-level sharding of
``AutoShardPolicy.FILE``, done here because the epoch's file list is made inside the pipeline.
Workers then hold different row counts, so a synchronous strategy must run a common number of
steps per epoch: :meth:`SampleStream.passes` gives each epoch as that many batches of its pass (a
short shard's pass repeats, a long one's is cut), and ``train`` feeds it to such strategies.

The dataset knows its length: every batch but the last is full, so an epoch has
``ceil(rows / batch_size)`` batches, with ``rows`` read from the Parquet shards' metadata (no data is
read). ``tf.data.experimental.assert_cardinality`` attaches that count, so Keras shows a total and
an ETA from the first epoch (not ``1/Unknown``), also after a resume.

Each element is ``(features, label)``; ``features`` holds :data:`FEATURES` (the model inputs and
``position``, for the position-bias tower), ``label`` is float32 ``[batch]``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf

from dropdown_rank.features import LABEL, TRAINING_FIELDS
from dropdown_rank.logs.schema import DAY
from dropdown_rank.records import COMPRESSION, decode
from dropdown_rank.workdir import record_files, shard_files

FEATURES = tuple(name for name in TRAINING_FIELDS if name != LABEL)
PREFETCH_BATCHES = 16
READ_FILES_AT_ONCE = 4
READ_BUFFER_BYTES = 1 << 20
READ_BLOCK_ROWS = 256
SHUFFLE_WINDOW_ROWS = 131072


class SampleStream:
    """Batches of one split's training records as a ``tf.data.Dataset`` (:meth:`dataset`); one pass per epoch."""

    def __init__(self, samples_dir, split, seq_len, batch_size=1024, shuffle=False, seed=0, window_rows=SHUFFLE_WINDOW_ROWS,
                 num_shards=1, shard_index=0):
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index {shard_index} is not in [0, {num_shards})")
        records, shards = record_files(samples_dir, split), shard_files(samples_dir, split)
        if len(records) < num_shards:
            raise ValueError(f"{samples_dir}: {split} has {len(records)} file(s) for {num_shards} workers: every worker needs one; "
                             "use fewer workers, or build smaller shards (SampleConfig.shard_rows)")
        self.files = [os.fsencode(f) for f in records[shard_index::num_shards]]
        self.seq_len, self.batch_size = seq_len, batch_size
        self.shuffle, self.seed, self.window_rows = shuffle, seed, window_rows
        self.epoch = 0
        self.rows = sum(pq.ParquetFile(f).metadata.num_rows for f in shards[shard_index::num_shards])

    @property
    def batches(self) -> int:
        """Batches per epoch: all full but the last."""
        return math.ceil(self.rows / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self, epoch: int):
        """Epoch ``epoch``'s file order and row-shuffle seed."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.files)) if self.shuffle else np.arange(len(self.files))
        return np.array([self.files[i] for i in order], dtype=object), rng.integers(2 ** 62)

    def _epoch_plan(self):
        """One element per pass: the current epoch's plan."""
        self.epoch += 1
        yield self._plan(self.epoch - 1)

    def _serialized_batches(self, files, shuffle_seed):
        """This epoch's serialized rows in ``[batch_size]`` string tensors."""
        files = tf.data.Dataset.from_tensor_slices(files)
        # Blocks of rows, not single rows, cross the dataset boundaries: every element costs tf.data
        # a few microseconds, which per row capped the pipeline near 60k rows/s on any number of cores.
        read = lambda path: tf.data.TFRecordDataset(path, compression_type=COMPRESSION, buffer_size=READ_BUFFER_BYTES).batch(READ_BLOCK_ROWS)
        if not self.shuffle:
            return files.flat_map(read).rebatch(self.batch_size)
        blocks = files.interleave(read, cycle_length=READ_FILES_AT_ONCE, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return shuffled_batches(blocks, self.window_rows, shuffle_seed, self.batch_size)

    def dataset(self) -> tf.data.Dataset:
        """``(features, label)`` batches, histories padded to ``seq_len``."""
        plan = tf.data.Dataset.from_generator(self._epoch_plan, output_signature=(tf.TensorSpec([None], tf.string),
                                                                                  tf.TensorSpec([], tf.int64)))
        seq_len = self.seq_len
        dataset = (plan.flat_map(self._serialized_batches)
                   .map(lambda serialized: decode(serialized, seq_len), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                   .apply(tf.data.experimental.assert_cardinality(self.batches)))
        return dataset.prefetch(PREFETCH_BATCHES)

    def passes(self, first_epoch: int, epochs: int, steps_per_epoch: int) -> tf.data.Dataset:
        """Epochs ``first_epoch .. epochs - 1`` in one stream of ``steps_per_epoch`` batches each, for
        ``fit`` with ``steps_per_epoch`` (a distribution strategy's ``DatasetCreator`` keeps one
        iterator for the whole run). Epoch ``e`` is its pass of :meth:`dataset`, repeated if it is
        short and cut where it is long, so it depends on ``(seed, e)`` and the shard only: a run
        resumed at epoch ``e`` reads what an uninterrupted run would have read.

        The plans are constants, not a generator: under ``ParameterServerStrategy`` the pipeline runs on
        a remote worker, where no Python runs it."""
        plans = [self._plan(epoch) for epoch in range(first_epoch, max(epochs, first_epoch + 1))]
        plan = tf.data.Dataset.from_tensor_slices((np.stack([files for files, _ in plans]), np.array([seed for _, seed in plans])))
        seq_len = self.seq_len
        dataset = (plan.flat_map(lambda files, seed: self._serialized_batches(files, seed).repeat().take(steps_per_epoch))
                   .map(lambda serialized: decode(serialized, seq_len), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
        return dataset.prefetch(PREFETCH_BATCHES)


def shuffled_batches(blocks: tf.data.Dataset, window_rows: int, seed, batch_size: int) -> tf.data.Dataset:
    """Blocks of serialized rows shuffled within consecutive windows of ``window_rows`` rows, in ``[batch_size]`` batches.

    A stateless shuffle per window, not ``Dataset.shuffle``: its seed must be a Python int once a global
    seed is set (``tf.keras.utils.set_random_seed``), and this seed changes with the epoch or day."""
    windows = blocks.rebatch(window_rows).enumerate()
    shuffled = windows.map(lambda index, window: tf.random.experimental.stateless_shuffle(window, tf.stack([seed, index])))
    return shuffled.rebatch(batch_size)


class DayStream:
    """One split's training records one UTC day at a time, for day-by-day training (``daily.py``).

    Rows are stored in time order (``logs.schema.SAMPLE_ORDER``), so a day is a run of consecutive rows
    across the shards; :meth:`spans` finds it from the shards' ``request_ts`` column alone. Day ``d``
    is shuffled within windows of ``window_rows`` rows, seeded by ``(seed, d)`` with ``d`` the day's
    number since 1970: it gives the same batches whichever run reads it, and a continued or resumed
    run reads what one uninterrupted run would have.
    """

    def __init__(self, samples_dir, split, seq_len, batch_size=1024, seed=0, window_rows=SHUFFLE_WINDOW_ROWS):
        self.files = [os.fsencode(f) for f in record_files(samples_dir, split)]
        shards = shard_files(samples_dir, split)
        self.request_ts = [pq.read_table(f, columns=["request_ts"])["request_ts"].to_numpy() for f in shards]
        unsorted = [str(f) for f, ts in zip(shards, self.request_ts) if np.any(np.diff(ts) < 0)]
        ends = [(ts[0], ts[-1]) for ts in self.request_ts if len(ts)]
        if unsorted or any(later[0] < earlier[1] for earlier, later in zip(ends, ends[1:])):
            raise ValueError(f"{samples_dir}/{split}: rows are not in request_ts order ({', '.join(unsorted) or 'across shards'}); "
                             "a day's rows must be consecutive: rebuild with `dropdown-rank build`")
        self.seq_len, self.batch_size, self.seed, self.window_rows = seq_len, batch_size, seed, window_rows

    def spans(self, day_start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(files, first rows, row counts)`` of the rows whose ``request_ts`` falls in ``[day_start, day_start + DAY)``."""
        bounds = [np.searchsorted(ts, [day_start, day_start + DAY], side="left") for ts in self.request_ts]
        chosen = [i for i, (lo, hi) in enumerate(bounds) if hi > lo]
        return (np.array([self.files[i] for i in chosen], dtype=object), np.array([bounds[i][0] for i in chosen], dtype=np.int64),
                np.array([bounds[i][1] - bounds[i][0] for i in chosen], dtype=np.int64))

    def rows(self, day_start: int) -> int:
        return int(self.spans(day_start)[2].sum())

    def dataset(self, day_start: int) -> tf.data.Dataset:
        """``(features, label)`` batches of one day, shuffled; the day must hold rows."""
        files, starts, counts = self.spans(day_start)
        if not len(files):
            raise ValueError(f"no training rows on the day starting at {day_start}")
        seed = int(np.random.default_rng([self.seed, day_start // DAY]).integers(2 ** 62))
        read = lambda path, start, count: (tf.data.TFRecordDataset(path, compression_type=COMPRESSION, buffer_size=READ_BUFFER_BYTES)
                                           .skip(start).take(count).batch(READ_BLOCK_ROWS))
        blocks = tf.data.Dataset.from_tensor_slices((files, starts, counts)).flat_map(read)
        seq_len = self.seq_len
        dataset = (shuffled_batches(blocks, self.window_rows, seed, self.batch_size)
                   .map(lambda serialized: decode(serialized, seq_len), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                   .apply(tf.data.experimental.assert_cardinality(math.ceil(counts.sum() / self.batch_size))))
        return dataset.prefetch(PREFETCH_BATCHES)


def make_dataset(samples_dir: str | Path, split: str, seq_len: int, batch_size: int = 1024, shuffle: bool = False,
                 seed: int = 0, window_rows: int = SHUFFLE_WINDOW_ROWS) -> tf.data.Dataset:
    """``(features, label)`` batches of one split, histories padded to ``seq_len``."""
    return SampleStream(samples_dir, split, seq_len, batch_size, shuffle, seed, window_rows).dataset()

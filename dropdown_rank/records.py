"""Training records: the training fields of a sample shard as a GZIP TFRecord file, one ``tf.train.Example`` per row.

Why TFRecord: tf.data reads it natively, so the input pipeline (``dataset.py``) reads files on every
core with ``interleave``, shards by file across workers, and parses a whole batch of serialized rows in
one ``tf.io.parse_example`` call, with no Python per batch. The Parquet shard beside each record file
stays the copy that evaluation, export and storage accounting read (every column, including the
``slice`` fields, which training does not need).

Encoding runs no Python per row: ``tf.io.encode_proto`` builds a shard's protos layer by layer
(value lists, features, map entries, examples), and strings go from Arrow's buffers to TensorFlow
through ``tf.strings.substr`` on the data buffer, not through Python objects. GZIP, because
histories repeat their strings row after row; decompression runs in the reading threads, so it
scales with cores. ``benchmarks/bench_data.py`` measures the encoding time per row and the bytes
of the records beside the Parquet shards, ``benchmarks/bench_input.py`` the reading rate.

Every row holds :data:`features.TRAINING_FIELDS` at their stored length (histories up to the build's
``max_len``); :func:`decode` cuts histories to the model's length, pads them, and casts each field to
its model dtype.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from dropdown_rank._io import atomic_path
from dropdown_rank.features import ARROW_SCHEMA, BY_NAME, LABEL, TRAINING_FIELDS

COMPRESSION = "GZIP"
COMPRESSION_LEVEL = 1  # zlib's fastest: writing is on the build's path, reading decompresses in parallel
_LIST_FIELD = {"string": "bytes_list", "float32": "float_list"}  # every integer type: int64_list
_LIST_TYPE = {"bytes_list": "tensorflow.BytesList", "float_list": "tensorflow.FloatList", "int64_list": "tensorflow.Int64List"}


def _strings(array: pa.Array) -> tf.Tensor:
    """A string array as a ``tf.string`` vector, sliced out of Arrow's data buffer in one op."""
    _, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32)[array.offset: array.offset + len(array) + 1]
    if len(array) == 0 or offsets[-1] == offsets[0]:
        return tf.fill([len(array)], "")
    blob = tf.constant(memoryview(data)[offsets[0]: offsets[-1]].tobytes())
    return tf.strings.substr(blob, offsets[:-1] - offsets[0], np.diff(offsets))


def _values(array: pa.Array, dtype: str) -> tf.Tensor:
    if dtype == "string":
        return _strings(array)
    return tf.constant(array.to_numpy(zero_copy_only=False).astype(np.float32 if dtype == "float32" else np.int64))


def _encode(message: str, fields: list, values: list, sizes) -> tf.Tensor:
    return tf.io.encode_proto(tf.cast(sizes, tf.int32), values, fields, message)


def _feature(column: pa.ChunkedArray, dtype: str, history: bool) -> tf.Tensor:
    """Serialized ``tf.train.Feature`` per row of ``column``."""
    column = column.combine_chunks()
    rows = len(column)
    if history:
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        padded = tf.RaggedTensor.from_row_lengths(_values(column.flatten(), dtype), lengths).to_tensor()
        values, sizes = padded, lengths[:, None]
    else:
        values, sizes = _values(column, dtype)[:, None], np.ones([rows, 1])
    field = _LIST_FIELD.get(dtype, "int64_list")
    value_list = _encode(_LIST_TYPE[field], ["value"], [values], sizes)
    return _encode("tensorflow.Feature", [field], [value_list[:, None]], np.ones([rows, 1]))


def _training_columns(table: pa.Table) -> pa.Table:
    """The training fields in their schema types (``_strings`` reads int32 offsets); nulls refused, not guessed."""
    schema = pa.schema([ARROW_SCHEMA.field(name) for name in TRAINING_FIELDS])
    table = table.select(list(TRAINING_FIELDS)).cast(schema)
    for name in TRAINING_FIELDS:
        column = table.column(name)
        nulls = column.null_count + (pc.list_flatten(column).null_count if BY_NAME[name].history else 0)
        if nulls:
            raise ValueError(f"sample column {name!r} holds {nulls} null value(s): a training record has no null")
    return table


def encode(table: pa.Table) -> tf.Tensor:
    """Serialized ``tf.train.Example`` per row of a sample table (``string`` [rows])."""
    table = _training_columns(table)
    rows = table.num_rows
    entries = []
    for name in TRAINING_FIELDS:
        field = BY_NAME[name]
        feature = _feature(table.column(name), field.dtype, field.history)
        entries.append(_encode("tensorflow.Features.FeatureEntry", ["key", "value"], [tf.fill([rows, 1], name), feature[:, None]],
                               np.ones([rows, 2])))
    features = _encode("tensorflow.Features", ["feature"], [tf.stack(entries, axis=1)], np.full([rows, 1], len(entries)))
    return _encode("tensorflow.Example", ["features"], [features[:, None]], np.ones([rows, 1]))


ENCODE_ROWS = 8192  # rows encoded at a time: the encoder's padded tensors and protos then hold a slice, not a whole shard


def write_records(table: pa.Table, path: str | Path) -> None:
    """The table's training records, written atomically to ``path``."""
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp), tf.io.TFRecordOptions(compression_type=COMPRESSION, compression_level=COMPRESSION_LEVEL)) as writer:
            for start in range(0, table.num_rows, ENCODE_ROWS):
                for example in encode(table.slice(start, ENCODE_ROWS)).numpy():
                    writer.write(example)


def _spec() -> dict:
    spec = {}
    for name in TRAINING_FIELDS:
        field = BY_NAME[name]
        dtype = tf.string if field.dtype == "string" else tf.float32 if field.dtype == "float32" else tf.int64
        spec[name] = tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64) if field.history else tf.io.FixedLenFeature([], dtype)
    return spec


PARSE_SPEC = _spec()


def decode(serialized: tf.Tensor, seq_len: int) -> tuple[dict, tf.Tensor]:
    """A batch of serialized records (``string`` [B]) as ``(features, label)``: histories ``[B, seq_len]``
    (the most recent ``seq_len``, padded), every field in its model dtype, ``label`` float32 [B]."""
    parsed = tf.io.parse_example(serialized, PARSE_SPEC)
    features = {}
    for name, value in parsed.items():
        field = BY_NAME[name]
        if field.history:
            value = value.to_tensor(default_value=field.padding, shape=[None, seq_len])
        features[name] = tf.cast(value, field.dtype) if value.dtype != tf.as_dtype(field.dtype) else value
    return features, features.pop(LABEL)

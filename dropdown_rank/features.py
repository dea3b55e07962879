"""The sample schema, defined once: every field of a sample row, its types on disk and in the model.

Samples (``samples.py``) write rows of :data:`FIELDS` to Parquet with :data:`ARROW_SCHEMA`, and the
training fields to TFRecord (``records.py``); the input pipeline (``dataset.py``) parses and pads
them; the model's serving signature (``model.SIGNATURE``), storage accounting and export read the
same names and types from here.

A field has one of four roles:

* ``input``: a model input, in the serving signature (the ranker reads it at serving time);
* ``train``: training only (``position`` for the position-bias tower, ``label`` the target);
* ``slice``: for evaluation only (``request_id`` groups a dropdown; ``activity`` and
  ``candidate_pv`` slice the reports);

and ``history`` fields are lists, **most recent first**, padded to the model's length with
``padding``. ``dtype`` is the type in the model (and in TFRecord, which holds int64, float and
bytes only); ``stored`` the Parquet type, narrower where the range allows. This module imports no
TensorFlow: dtypes are names ``tf.as_dtype`` reads.

**Adding a scalar request feature** takes its ``Field`` here, with ``encode`` set (how the ranker
reads it), and its computation in ``samples.sample_columns`` (how it is counted, from data before the
request). Everything else reads the schema: both build engines write it, the records and the input
pipeline carry it, the serving signature and the serving example include it, and
``layers.RequestFeatures`` appends it to the request vector (``tests/test_features.py`` adds one).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa

ENCODINGS = (None, "log1p", "value")
ENCODED_DTYPES = ("int64", "float32")  # records.py writes these two number types exactly (any other as int64)


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    dtype: str
    stored: pa.DataType
    role: str
    history: bool = False
    padding: object = None  # histories: the pad value; scalars: the value of an empty row (example_features)
    counter: bool = False  # a point-in-time count of counters.py
    # How RequestFeatures reads a scalar input its fixed groups do not: "log1p" (a count, log1p of max(x, 0)) or
    # "value" (already on a unit scale, as float). None: not read there (ids, sequences, and the groups' own inputs).
    encode: str | None = None

    def __post_init__(self):
        if self.encode not in ENCODINGS:
            raise ValueError(f"field {self.name}: encode must be one of {ENCODINGS}, not {self.encode!r}")
        if self.encode and (self.role != "input" or self.history):
            raise ValueError(f"field {self.name}: only a scalar model input (role 'input', not a history) is encoded")
        if self.encode and (self.dtype not in ENCODED_DTYPES or self.padding is None):
            raise ValueError(f"field {self.name}: an encoded field is a number the training records carry exactly "
                             f"(dtype one of {ENCODED_DTYPES}) with a padding (its value in an empty row)")

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.list_(self.stored) if self.history else self.stored


def _string(name, role, history=False):
    return Field(name, "string", pa.string(), role, history, "")


def _int(name, role, stored=pa.int64(), dtype="int64", history=False, padding=0, counter=False):
    return Field(name, dtype, stored, role, history, padding, counter)


FIELDS = (
    _string("request_id", "slice"),
    _string("user_id", "input"),
    _int("request_ts", "input"),
    _string("candidate", "input"),
    _string("prefix", "input"),
    _int("position", "train", pa.int32(), "int32"),
    Field("label", "float32", pa.int8(), "train", padding=0.0),
    _string("query_history", "input", history=True),
    _int("query_history_ts", "input", history=True),
    _string("item_history", "input", history=True),
    _int("item_history_ts", "input", history=True),
    _int("activity", "slice", pa.int32(), "int32"),
    _int("candidate_pv", "slice", pa.int32(), "int32"),
    # int32 on disk: a count above 2**31 in one window would be one candidate taking most of a 1e8-a-day
    # system's impressions for a month (clipped, never wrapped); the model reads them as int64.
    _int("user_candidate_count", "input", pa.int32(), counter=True),
    _int("user_candidate_age", "input", padding=-1, counter=True),  # -1: the user never issued the candidate
    _int("candidate_query_count", "input", pa.int32(), counter=True),
    _int("candidate_impressions", "input", pa.int32(), counter=True),
    _int("candidate_clicks", "input", pa.int32(), counter=True),
)
BY_NAME = {f.name: f for f in FIELDS}
ARROW_SCHEMA = pa.schema([(f.name, f.arrow_type) for f in FIELDS])
MODEL_INPUTS = tuple(f.name for f in FIELDS if f.role == "input")
TRAINING_FIELDS = tuple(f.name for f in FIELDS if f.role in ("input", "train"))  # what a training record holds
HISTORY_FIELDS = tuple(f.name for f in FIELDS if f.history)
COUNTER_FIELDS = tuple(f.name for f in FIELDS if f.counter)
ROW_FEATURES = tuple(f.name for f in FIELDS if f.role == "input" and not f.history
                     and f.name not in ("user_id", "candidate", "request_ts"))  # beside ids, sequences and time
ENCODED_FEATURES = tuple((f.name, f.encode) for f in FIELDS if f.encode)  # appended to the request vector, in this order
LABEL = "label"


# -- the training records' files (``records.py`` writes and reads them; here so that finding them needs no TensorFlow)
RECORDS_FORMAT_VERSION = 1  # part of the work directory's fingerprint: a codec change must not pass for the same data
RECORDS_SUFFIX = ".tfrecord.gz"


def record_path(parquet_path: str | Path) -> Path:
    """The record file beside a Parquet shard (``part-00000.parquet`` -> ``part-00000.tfrecord.gz``)."""
    parquet_path = Path(parquet_path)
    return parquet_path.with_name(parquet_path.name.removesuffix(".parquet") + RECORDS_SUFFIX)

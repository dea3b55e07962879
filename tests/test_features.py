"""The schema is defined once (``features.py``): a new scalar request feature needs its field there and its computation."""
import json
import subprocess
import sys

import pyarrow as pa
import pytest

from dropdown_rank.features import Field
from dropdown_rank.layers import RequestFeatures

# In a fresh interpreter: features.py's source gains one Field before any module reads the schema, and
# samples.sample_columns gains its computation. Nothing else is touched: the build, training and export must carry it.
ADDED_FEATURE = r"""
import importlib.util, json, sys, types
import dropdown_rank

spec = importlib.util.find_spec("dropdown_rank.features")
source = open(spec.origin).read()
anchor = "BY_NAME = {f.name: f for f in FIELDS}"
assert source.count(anchor) == 1
source = source.replace(anchor, 'FIELDS = FIELDS + (Field("candidate_chars", "int64", pa.int32(), "input", padding=0, encode="log1p"), '
                        'Field("candidate_words", "float32", pa.float32(), "input", padding=0.0, encode="value"))\n' + anchor)
features = types.ModuleType("dropdown_rank.features")
features.__file__ = spec.origin
sys.modules["dropdown_rank.features"] = dropdown_rank.features = features
exec(compile(source, spec.origin, "exec"), features.__dict__)

import numpy as np
import pyarrow as pa
from dropdown_rank import samples

computed = samples.sample_columns

def with_candidate_chars(histories, chunk, *args):
    return {**computed(histories, chunk, *args),
            "candidate_chars": pa.array(chunk["candidate"].str.len().to_numpy(np.int32), pa.int32()),
            "candidate_words": pa.array(chunk["candidate"].str.split().str.len().to_numpy(np.float32) / 10, pa.float32())}

samples.sample_columns = with_candidate_chars

import tensorflow as tf
from dropdown_rank.build import BuildConfig, build
from dropdown_rank.dataset import make_dataset
from dropdown_rank.export import export
from dropdown_rank.model import SIGNATURE, ModelConfig
from dropdown_rank.split import SplitConfig
from dropdown_rank.train import TrainConfig, load_run, train
from dropdown_rank.workdir import read_samples

logs, out = sys.argv[1], sys.argv[2]
build(logs, out + "/work", BuildConfig(split=SplitConfig(valid_days=2, test_days=2)), progress=lambda *a: None, progress_bar=False)
frame = read_samples(out + "/work/samples", "test", columns=["candidate", "candidate_chars", "candidate_words"])
metrics = train(out + "/work", out + "/run", ModelConfig(kind="base"), TrainConfig(epochs=1, batch_size=512), verbose=0)
ranker = load_run(out + "/run")
batch, _ = next(iter(make_dataset(out + "/work/samples", "test", 20, 64)))
vector = ranker.request_features(batch).numpy()
export(out + "/run", out + "/export")
served = tf.saved_model.load(out + "/export").signatures["serving_default"]
scores = served(**{name: batch[name] for name in SIGNATURE})["ctr"].numpy()
example = json.load(open(out + "/export/serving_example.json"))
chars = tf.strings.length(batch["candidate"], unit="UTF8_CHAR").numpy()
words = np.array([len(c.split()) / 10 for c in batch["candidate"].numpy()])
print("RESULT", json.dumps({
    "stored": bool((frame["candidate_chars"] == frame["candidate"].str.len()).all()
                   and np.allclose(frame["candidate_words"], frame["candidate"].str.split().str.len() / 10)),
    "records": [float(np.abs(batch["candidate_chars"].numpy() - chars).max()), float(np.abs(batch["candidate_words"].numpy() - words).max())],
    "width": ranker.request_features.width,
    "columns": [float(np.abs(vector[:, -2] - np.log1p(chars)).max()), float(np.abs(vector[:, -1] - words).max())],
    "serving_error": float(np.abs(scores - tf.sigmoid(ranker(batch)).numpy()).max()),
    "example": all(instance["candidate_chars"] == len(instance["candidate"])
                   and abs(instance["candidate_words"] - len(instance["candidate"].split()) / 10) < 1e-6 for instance in example["instances"]),
    "trained_on": metrics["train_examples"],
}))
"""


@pytest.mark.slow
def test_a_request_feature_added_to_the_schema_is_built_trained_on_and_served(tiny_logs, tmp_path):
    done = subprocess.run([sys.executable, "-c", ADDED_FEATURE, str(tiny_logs), str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["stored"] and result["example"]
    assert max(result["records"]) < 1e-6, "the training records carry the stored values"
    assert result["width"] == RequestFeatures().width + 2, "the request vector: the built-in groups, then the two new features"
    assert max(result["columns"]) < 1e-5 and result["serving_error"] < 1e-5
    assert result["trained_on"] > 0


def test_a_field_is_encoded_only_as_a_scalar_number_the_records_carry():
    with pytest.raises(ValueError, match="encode must be one of"):
        Field("x", "int64", pa.int64(), "input", encode="sqrt")
    with pytest.raises(ValueError, match="only a scalar model input"):
        Field("x", "int64", pa.int64(), "slice", encode="log1p")
    with pytest.raises(ValueError, match="only a scalar model input"):
        Field("x", "int64", pa.int64(), "input", history=True, encode="log1p")
    with pytest.raises(ValueError, match="a number the training records carry exactly"):
        Field("x", "float64", pa.float64(), "input", padding=0.0, encode="value")
    with pytest.raises(ValueError, match="with a padding"):
        Field("x", "int64", pa.int64(), "input", encode="log1p")

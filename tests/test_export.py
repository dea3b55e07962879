"""The exported SavedModel: parity, precomputed context, fresh-process serving, bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dropdown_rank.build import BuildConfig, build
from dropdown_rank.cli import main
from dropdown_rank.dataset import make_dataset
from dropdown_rank.export import SIGNATURE, instances_to_tensors
from dropdown_rank.graph import GraphConfig
from dropdown_rank.split import SplitConfig
from dropdown_rank.train import load_run, predict, predictor


@pytest.fixture(scope="module")
def exports(tiny_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    paths = {"base": root / "base", "attention": root / "attention", "attention_precomputed": root / "attention_pre"}
    assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(paths["base"])]) == 0
    assert main(["export", "--run", str(tiny_runs["attention_20"]), "--out", str(paths["attention"])]) == 0
    assert main(["export", "--run", str(tiny_runs["attention_20"]), "--out", str(paths["attention_precomputed"]), "--precompute-context"]) == 0
    return paths


def serve(path):
    model = tf.saved_model.load(str(path))
    return model, model.signatures["serving_default"]


def scores_on_test_split(tiny_work, path):
    _, signature = serve(path)
    scores = []
    for features, _ in make_dataset(tiny_work / "samples", "test", 50, batch_size=1024):
        scores.append(signature(**{k: features[k] for k in SIGNATURE})["ctr"].numpy())
    return np.concatenate(scores)


@pytest.mark.parametrize("name,run", [("base", "base_20"), ("attention", "attention_20"), ("attention_precomputed", "attention_20")])
def test_saved_model_matches_the_in_memory_model_on_the_whole_test_split(tiny_work, tiny_runs, exports, name, run):
    expected = predict(predictor(load_run(tiny_runs[run])), make_dataset(tiny_work / "samples", "test", 20, 1024))
    got = scores_on_test_split(tiny_work, exports[name])  # fed 50-long histories: the model keeps the latest 20
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_model_card_example_request_and_cli_listing(exports):
    card = json.loads((exports["attention"] / "model_card.json").read_text())
    assert card["model"] == "attention_20" and card["seq_len"] == 20 and card["neighbors"] == 10
    assert card["graph"]["context_precomputed"] is False and set(card["signature"]["inputs"]) == set(SIGNATURE)
    assert 0.0 < card["test_auc"] < 1.0 and card["training_period"]["start_ts"] < card["training_period"]["end_ts"]
    body = json.loads((exports["attention"] / "serving_example.json").read_text())
    assert 1 <= len(body["instances"]) <= 10
    _, signature = serve(exports["attention"])
    assert signature(**instances_to_tensors(body))["ctr"].shape == (len(body["instances"]),)
    listing = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
                              str(exports["attention"]), "--all"], capture_output=True, text=True, timeout=300).stdout
    assert "signature_def['serving_default']" in listing
    assert "inputs['query_history'] tensor_info" in listing and "outputs['ctr'] tensor_info" in listing


BARE_PROCESS = """
import importlib.abc, json, sys
# Not installed in a serving process: make importing them fail loudly.
BLOCKED = {"dropdown_rank", "spektral", "tensorflow_recommenders", "tf_keras"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(name + " is not installed here")
sys.meta_path.insert(0, Blocker())
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
signature = model.signatures["serving_default"]
body = json.load(open(sys.argv[1] + "/serving_example.json"))
spec = signature.structured_input_signature[1]
inputs = {k: tf.constant(np.array([i[k] for i in body["instances"]]), dtype=spec[k].dtype) for k in spec}
print(json.dumps(signature(**inputs)["ctr"].numpy().tolist()))
"""


@pytest.mark.slow
def test_loads_and_serves_in_a_process_with_only_tensorflow(exports):
    env = {"PATH": "/usr/bin:/bin"}  # no TF_USE_LEGACY_KERAS: a plain tensorflow user
    for name in ("attention", "attention_precomputed"):
        result = subprocess.run([sys.executable, "-c", BARE_PROCESS, str(exports[name])], capture_output=True, text=True,
                                env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        body = json.loads((exports[name] / "serving_example.json").read_text())
        _, signature = serve(exports[name])
        expected = signature(**instances_to_tensors(body))["ctr"].numpy()
        np.testing.assert_allclose(json.loads(result.stdout.strip().splitlines()[-1]), expected, atol=1e-6)


def request(rows=3, length=4, **override):
    features = {
        "user_id": tf.constant(["never-seen-user"] * rows), "candidate": tf.constant(["an unseen query"] * rows),
        "query_history": tf.constant([["unseen q"] + [""] * (length - 1)] * rows),
        "query_history_ts": tf.constant([[1767225000] + [0] * (length - 1)] * rows, tf.int64),
        "item_history": tf.constant([["unseen item"] + [""] * (length - 1)] * rows),
        "item_history_ts": tf.constant([[1767225100] + [0] * (length - 1)] * rows, tf.int64),
        "request_ts": tf.constant([1767226000] * rows, tf.int64),
    }
    features.update(override)
    return features


def test_unseen_ids_map_to_oov_and_still_score(exports):
    _, signature = serve(exports["attention"])
    scores = signature(**request())["ctr"].numpy()
    assert scores.shape == (3,) and np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()


def test_empty_histories_score_and_padding_does_not_matter(exports):
    _, signature = serve(exports["attention"])
    none = {"query_history": tf.zeros([3, 0], tf.string), "query_history_ts": tf.zeros([3, 0], tf.int64),
            "item_history": tf.zeros([3, 0], tf.string), "item_history_ts": tf.zeros([3, 0], tf.int64)}
    padded = {"query_history": tf.fill([3, 7], ""), "query_history_ts": tf.fill([3, 7], tf.constant(5, tf.int64)),
              "item_history": tf.fill([3, 2], ""), "item_history_ts": tf.zeros([3, 2], tf.int64)}
    empty = signature(**request(**none))["ctr"].numpy()
    assert np.isfinite(empty).all()
    np.testing.assert_allclose(signature(**request(**padded))["ctr"].numpy(), empty, atol=1e-6)


def test_histories_longer_than_l_keep_the_most_recent(tiny_work, exports):
    _, signature = serve(exports["base"])
    features, _ = next(iter(make_dataset(tiny_work / "samples", "test", 50, batch_size=64)))
    full = {k: features[k] for k in SIGNATURE}
    cut = {k: (v[:, :20] if v.shape.rank == 2 else v) for k, v in full.items()}
    np.testing.assert_allclose(signature(**full)["ctr"].numpy(), signature(**cut)["ctr"].numpy(), atol=1e-6)


def test_mismatched_history_and_timestamps_are_a_clear_error(exports):
    _, signature = serve(exports["attention"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="query_history and query_history_ts must have the same shape"):
        signature(**request(query_history_ts=tf.zeros([3, 2], tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="candidate has a different batch size than user_id"):
        signature(**request(candidate=tf.constant(["a", "b"])))


def test_empty_batch_is_a_clear_error(exports):
    _, signature = serve(exports["base"])
    empty = {k: tf.zeros([0] + [0] * (spec.shape.rank - 1), spec.dtype) for k, spec in SIGNATURE.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch: send at least one"):
        signature(**empty)


def test_a_new_graph_is_swapped_in_at_export_without_retraining(tiny_logs, tiny_work, tiny_runs, exports, tmp_path):
    # Another build of the same logs with a different co-occurrence rule stands in for a new day's graph.
    config = BuildConfig(split=SplitConfig(valid_days=2, test_days=2), graph=GraphConfig(mode="window", window_minutes=5))
    build(tiny_logs, tmp_path / "work2", config, progress=lambda *a: None, progress_bar=False)
    assert main(["export", "--run", str(tiny_runs["attention_20"]), "--out", str(tmp_path / "swapped"), "--graph", str(tmp_path / "work2")]) == 0
    card = json.loads((tmp_path / "swapped" / "model_card.json").read_text())
    assert card["graph"]["swapped"] is True
    before = scores_on_test_split(tiny_work, exports["attention"])
    after = scores_on_test_split(tiny_work, tmp_path / "swapped")
    assert after.shape == before.shape and not np.allclose(after, before, atol=1e-4)
    expected = predict(predictor(load_run(tiny_runs["attention_20"], graph_dir=tmp_path / "work2")),
                       make_dataset(tiny_work / "samples", "test", 20, 1024))
    np.testing.assert_allclose(after, expected, atol=1e-5)

"""The exported SavedModel: parity, precomputed context, fresh-process serving, the serving contract, and an
output directory that is never half-written and never an unrelated directory."""
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from dropdown_rank.build import BuildConfig, build
from dropdown_rank.cli import main
from dropdown_rank.dataset import make_dataset
from dropdown_rank.export import instances_to_tensors
from dropdown_rank.model import COUNTS, SIGNATURE, check_serving_features
from dropdown_rank.graph import GraphConfig
from dropdown_rank.logs.schema import MAX_ID_CHARS, TS_MAX, TS_MIN, WHITESPACE
from dropdown_rank.logs.synth import write_world
from dropdown_rank.split import SplitConfig
from dropdown_rank.train import load_run, predict, predictor
from dropdown_rank.vocab import read_vocabulary

import children
from conftest import made_once


@pytest.fixture(scope="module")
def exports(tiny_runs, tmp_path_factory):
    def make(root):
        assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(root / "base")]) == 0
        assert main(["export", "--run", str(tiny_runs["gat_20"]), "--out", str(root / "gat")]) == 0
        assert main(["export", "--run", str(tiny_runs["gat_20"]), "--out", str(root / "gat_pre"), "--precompute-context"]) == 0

    root = made_once(tmp_path_factory, "exports", make)
    return {"base": root / "base", "gat": root / "gat", "gat_precomputed": root / "gat_pre"}


def serve(path):
    model = tf.saved_model.load(str(path))
    return model, model.signatures["serving_default"]


def scores_on_test_split(tiny_work, path):
    _, signature = serve(path)
    scores = []
    for features, _ in make_dataset(tiny_work / "samples", "test", 50, batch_size=1024):
        scores.append(signature(**{k: features[k] for k in SIGNATURE})["ctr"].numpy())
    return np.concatenate(scores)


@pytest.mark.parametrize("name,run", [("base", "base_20"), ("gat", "gat_20"), ("gat_precomputed", "gat_20")])
def test_saved_model_matches_the_in_memory_model_on_the_whole_test_split(tiny_work, tiny_runs, exports, name, run):
    expected = predict(predictor(load_run(tiny_runs[run])), make_dataset(tiny_work / "samples", "test", 20, 1024))
    got = scores_on_test_split(tiny_work, exports[name])  # fed 50-long histories: the model keeps the latest 20
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_model_card_example_request_and_cli_listing(exports, tiny_work):
    card = json.loads((exports["gat"] / "model_card.json").read_text())
    assert card["model"] == "gat_20" and card["seq_len"] == 20 and card["neighbors"] == 10
    assert card["graph"]["context_precomputed"] is False and set(card["signature"]["inputs"]) == set(SIGNATURE)
    windows = card["signature"]["counter_windows"]  # the tiny world's build used the defaults
    assert (windows["personal_days"], windows["popularity_days"]) == (365.0, 30)
    # the tiny world's 12 days hold no whole 365-day window: the card says so, as the build measured it
    assert windows["complete"] == json.loads((tiny_work / "build.json").read_text())["windows"]
    assert windows["complete"]["personal_days"]["truncated_share"]["train"] == 1.0
    assert 0.0 < card["test_auc"] < 1.0 and card["training_period"]["start_ts"] < card["training_period"]["end_ts"]
    body = json.loads((exports["gat"] / "serving_example.json").read_text())
    assert 1 <= len(body["instances"]) <= 10
    _, signature = serve(exports["gat"])
    assert signature(**instances_to_tensors(body))["ctr"].shape == (len(body["instances"]),)
    listing = children.run(["-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", str(exports["gat"]), "--all"]).stdout
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
for export in sys.argv[1:]:  # one process loads every export given: each start loads TensorFlow
    model = tf.saved_model.load(export)
    signature = model.signatures["serving_default"]
    body = json.load(open(export + "/serving_example.json"))
    spec = signature.structured_input_signature[1]
    inputs = {k: tf.constant(np.array([i[k] for i in body["instances"]]), dtype=spec[k].dtype) for k in spec}
    scores = signature(**inputs)["ctr"].numpy().tolist()
    # The serving contract: each bad request must fail with an InvalidArgumentError; report its message.
    n = len(body["instances"])
    ts = int(inputs["request_ts"][0])
    # Row 0 has a query a minute after the request; the "" entry is padding, so its timestamp is ignored.
    qh = [["a query", ""]] + [["a query", ""]] * (n - 1)
    qts = [[ts + 60, ts + 3600]] + [[ts - 60, ts + 3600]] * (n - 1)
    bad = {
        "blank_candidate": {"candidate": tf.constant(["", "a real query"] + [" "] * (n - 2) if n > 2 else [" "] * n)},
        "whitespace_candidate": {"candidate": tf.constant([" \t"] * n)},
        "request_ts_in_ms": {"request_ts": inputs["request_ts"] * 1000},
        "history_after_request": {"query_history": tf.constant(qh), "query_history_ts": tf.constant(qts, tf.int64)},
        "one_d_history": {"item_history": tf.constant(["sku"] * n), "item_history_ts": tf.constant([ts - 1] * n, tf.int64)},
        "batch_mismatch": {"user_id": inputs["user_id"][:1]} if n > 1 else {"user_id": tf.constant(["a", "b"])},
        "empty_batch": {k: tf.zeros([0] * len(spec[k].shape), spec[k].dtype) for k in spec},
    }
    errors = {}
    for name, change in bad.items():
        try:
            signature(**{**inputs, **change})
            errors[name] = "scored"
        except tf.errors.InvalidArgumentError as error:
            errors[name] = "InvalidArgumentError: " + " ".join(str(error).split())
    print(json.dumps({"scores": scores, "errors": errors}))
"""

# What each bad request's error must say (and so name the input).
CONTRACT_ERRORS = {
    "blank_candidate": 'candidate is blank (empty or whitespace only)',
    "whitespace_candidate": 'candidate is blank (empty or whitespace only)',
    "request_ts_in_ms": "request_ts is after 2100: send epoch seconds, not milliseconds",
    "history_after_request": "query_history_ts has entries at or after request_ts",
    "one_d_history": "is not compatible with expected shape [?,?]",
    "batch_mismatch": "has a different batch size than user_id",
    "empty_batch": "empty batch: send at least one (request, candidate) row",
}


@pytest.mark.slow
def test_loads_and_serves_in_a_process_with_only_tensorflow(exports):
    env = {"PATH": "/usr/bin:/bin"}  # no TF_USE_LEGACY_KERAS: a plain tensorflow user
    names = ("gat", "gat_precomputed")
    result = subprocess.run([sys.executable, "-c", BARE_PROCESS, *(str(exports[name]) for name in names)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.strip().splitlines()[-len(names):]
    for name, line in zip(names, printed, strict=True):
        body = json.loads((exports[name] / "serving_example.json").read_text())
        _, signature = serve(exports[name])
        expected = signature(**instances_to_tensors(body))["ctr"].numpy()
        got = json.loads(line)
        np.testing.assert_allclose(got["scores"], expected, atol=1e-6)
        assert set(got["errors"]) == set(CONTRACT_ERRORS)
        for case, message in CONTRACT_ERRORS.items():
            assert got["errors"][case].startswith("InvalidArgumentError: ") and message in got["errors"][case], (case, got["errors"][case])
        assert "item_history" in got["errors"]["one_d_history"]  # the error names the input


def request(rows=3, length=4, **override):
    features = {
        "user_id": tf.constant(["never-seen-user"] * rows), "candidate": tf.constant(["an unseen query"] * rows),
        "query_history": tf.constant([["unseen q"] + [""] * (length - 1)] * rows),
        "query_history_ts": tf.constant([[1767225000] + [0] * (length - 1)] * rows, tf.int64),
        "item_history": tf.constant([["unseen item"] + [""] * (length - 1)] * rows),
        "item_history_ts": tf.constant([[1767225100] + [0] * (length - 1)] * rows, tf.int64),
        "request_ts": tf.constant([1767226000] * rows, tf.int64),
        "prefix": tf.constant(["an"] * rows), "user_candidate_age": tf.constant([-1] * rows, tf.int64),
        **{name: tf.zeros([rows], tf.int64) for name in COUNTS},
    }
    features.update(override)
    return features


def test_unseen_ids_read_the_one_oov_row(tiny_runs, exports):
    """Unseen ids of every kind share the OOV row: two different sets of unseen ids score the same, while a known
    candidate (known by the request's day) scores differently, and the in-memory ranker agrees."""
    _, signature = serve(exports["gat"])
    late = {"request_ts": tf.constant([1799999999] * 3, tf.int64)}  # after every id's known-since day
    unseen = signature(**request(**late))["ctr"].numpy()
    # The candidate's length is a feature (the characters it adds to the prefix): unseen strings of equal length.
    other_unseen = request(**late, user_id=tf.constant(["another new user"] * 3), candidate=tf.constant(["an unheard item"] * 3),
                           query_history=tf.constant([["other q", "", "", ""]] * 3), item_history=tf.constant([["other i", "", "", ""]] * 3))
    np.testing.assert_array_equal(signature(**other_unseen)["ctr"].numpy(), unseen)
    known = read_vocabulary(tiny_runs["gat_20"] / "vocab", "queries")[1:4]
    with_known = signature(**request(**late, candidate=tf.constant(known)))["ctr"].numpy()
    with_unseen = signature(**request(**late, candidate=tf.constant(["#" * len(k) for k in known])))["ctr"].numpy()
    assert np.all(np.abs(with_known - with_unseen) > 1e-6)
    # Ids are read verbatim, as the build keeps them: another case is another (here unseen) id, not the known one.
    assert all(k != k.upper() for k in known)
    with_upper = signature(**request(**late, candidate=tf.constant([k.upper() for k in known])))["ctr"].numpy()
    assert np.all(np.abs(with_upper - with_known) > 1e-6)
    ranker = load_run(tiny_runs["gat_20"])
    in_memory = tf.sigmoid(ranker({k: v for k, v in request(**late).items()}, training=False)).numpy()
    np.testing.assert_allclose(in_memory, unseen, atol=1e-6)


def test_empty_histories_score_and_padding_does_not_matter(exports):
    _, signature = serve(exports["gat"])
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
    _, signature = serve(exports["gat"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="query_history and query_history_ts must have the same shape"):
        signature(**request(query_history_ts=tf.zeros([3, 2], tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="candidate has a different batch size than user_id"):
        signature(**request(candidate=tf.constant(["a", "b"])))


def test_blank_candidates_millisecond_times_and_future_histories_are_refused(exports):
    _, signature = serve(exports["gat"])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r'candidate is blank \(empty or whitespace only\).*first rows:\] \[0 2\]'):
        signature(**request(candidate=tf.constant(["", "an unseen query", " "])))
    # blank exactly as the build's str.strip() sees it: every character it strips, U+00A0 among them, and nothing else
    spaces = [c for c in map(chr, range(0x3001)) if c.isspace()]
    assert "".join(spaces) == WHITESPACE and "\xa0" in spaces
    for space in spaces:
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"candidate is blank .*first rows:\] \[1\]"):
            signature(**request(candidate=tf.constant(["a", space * 2, "b"])))
    signature(**request(candidate=tf.constant(["\u200b", "\xa0x", "-"])))  # zero-width space: not stripped, not blank
    # The build refuses ids longer than MAX_ID_CHARS as bad rows, so serving refuses such a candidate or prefix.
    signature(**request(candidate=tf.constant(["é" * MAX_ID_CHARS] * 3), prefix=tf.constant(["é" * MAX_ID_CHARS] * 3)))
    for name in ("candidate", "prefix"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{name} is longer than 1,000 characters.*first rows:\] \[1\]"):
            signature(**request(**{name: tf.constant(["a", "q" * 10 ** 6, "b"])}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="request_ts is after 2100: send epoch seconds, not milliseconds"):
        signature(**request(request_ts=tf.constant([1767226000 * 1000] * 3, tf.int64)))
    for early in (-1, 1000, TS_MIN - 1):
        with pytest.raises(tf.errors.InvalidArgumentError, match="request_ts is before 1990"):
            signature(**request(request_ts=tf.constant([early] * 3, tf.int64)))
    at_the_bounds = {f"{kind}_history": tf.constant([[""] * 4] + [[f"unseen {kind}"] + [""] * 3] * 2) for kind in ("query", "item")}
    signature(**request(request_ts=tf.constant([TS_MIN, TS_MAX, 1767226000], tf.int64), **at_the_bounds,
                        query_history_ts=tf.constant([[TS_MIN] + [0] * 3] * 3, tf.int64),
                        item_history_ts=tf.constant([[TS_MIN] + [0] * 3] * 3, tf.int64)))  # the bounds themselves score
    future = tf.constant([[1767225100, 0, 0, 0], [1767226001, 0, 0, 0], [1767225100, 0, 0, 0]], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"item_history_ts has entries at or after request_ts.*first rows:\] \[1\]"):
        signature(**request(item_history_ts=future))
    # The request's own second is not history: the build's histories are strictly earlier, and so are its counters.
    same_second = tf.constant([[1767225100, 0, 0, 0], [1767225100, 0, 0, 0], [1767226000, 0, 0, 0]], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"query_history_ts has entries at or after request_ts.*first rows:\] \[2\]"):
        signature(**request(query_history_ts=same_second))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"user_candidate_age is 0: count only the queries strictly before.*\[0\]"):
        signature(**request(user_candidate_count=tf.constant([1, 1, 0], tf.int64), user_candidate_age=tf.constant([0, 1, -1], tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="candidate_clicks is negative"):
        signature(**request(candidate_clicks=tf.constant([0, -2, 0], tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="user_candidate_age is below -1"):
        signature(**request(user_candidate_age=tf.constant([-5, -1, -1], tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"user_candidate_count and user_candidate_age disagree.*\[1\]"):
        signature(**request(user_candidate_count=tf.constant([0, 3, 0], tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"candidate_clicks exceeds candidate_impressions.*\[2\]"):
        signature(**request(candidate_clicks=tf.constant([0, 0, 1], tf.int64)))
    # The counters are inputs the exported model reads: a user who issued the candidate before scores differently.
    repeat = request(user_candidate_count=tf.constant([4] * 3, tf.int64), user_candidate_age=tf.constant([600] * 3, tf.int64))
    assert not np.allclose(signature(**repeat)["ctr"].numpy(), signature(**request())["ctr"].numpy())
    # A history entry a second before the request is fine, and a padded ("") entry's timestamp is ignored.
    padded_future = tf.constant([[1767225999, 1767229999, 0, 0]] * 3, tf.int64)
    scores = signature(**request(query_history_ts=padded_future))["ctr"].numpy()
    assert np.isfinite(scores).all()


def test_a_1d_history_is_a_clear_error_that_names_the_input(exports):
    _, signature = serve(exports["base"])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Shape of tensor query_history(_ts)? \[3\] is not compatible with "
                                                             r"expected shape \[\?,\?\]"):
        signature(**request(query_history=tf.constant(["a", "b", "c"]), query_history_ts=tf.constant([1, 2, 3], tf.int64)))


def test_the_contract_helper_guards_an_in_memory_ranker(tiny_runs, exports):
    ranker = load_run(tiny_runs["base_20"])
    _, signature = serve(exports["base"])
    good = request()
    np.testing.assert_allclose(ranker.score(good).numpy(), signature(**good)["ctr"].numpy(), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="candidate is blank"):
        ranker.score(request(candidate=tf.constant(["a", "", "b"])))
    with pytest.raises(tf.errors.InvalidArgumentError, match="milliseconds"):
        check_serving_features(request(request_ts=tf.constant([1767226000123] * 3, tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="query_history_ts has entries at or after request_ts"):
        check_serving_features(request(query_history_ts=tf.constant([[1767226000, 0, 0, 0]] * 3, tf.int64)))


def test_empty_batch_is_a_clear_error(exports):
    _, signature = serve(exports["base"])
    empty = {k: tf.zeros([0] + [0] * (spec.shape.rank - 1), spec.dtype) for k, spec in SIGNATURE.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch: send at least one"):
        signature(**empty)


def test_a_new_graph_is_swapped_in_at_export_without_retraining(tiny_logs, tiny_work, tiny_runs, exports, tmp_path):
    # Another build of the same logs with a different co-occurrence rule stands in for a new day's graph.
    config = BuildConfig(split=SplitConfig(valid_days=2, test_days=2), graph=GraphConfig(mode="window", window_minutes=5))
    build(tiny_logs, tmp_path / "work2", config, progress=lambda *a: None, progress_bar=False)
    assert main(["export", "--run", str(tiny_runs["gat_20"]), "--out", str(tmp_path / "swapped"), "--graph", str(tmp_path / "work2")]) == 0
    card = json.loads((tmp_path / "swapped" / "model_card.json").read_text())
    assert card["graph"]["swapped"] is True
    coverage = card["graph"]["coverage"]
    assert set(coverage) == {"q2q", "i2i"} and all(c["swapped"] >= 0.5 * c["own"] > 0 for c in coverage.values()), coverage
    before = scores_on_test_split(tiny_work, exports["gat"])
    after = scores_on_test_split(tiny_work, tmp_path / "swapped")
    assert after.shape == before.shape and not np.allclose(after, before, atol=1e-4)
    expected = predict(predictor(load_run(tiny_runs["gat_20"], graph_dir=tmp_path / "work2")),
                       make_dataset(tiny_work / "samples", "test", 20, 1024))
    np.testing.assert_allclose(after, expected, atol=1e-5)


def test_the_graph_of_another_world_is_refused_unless_forced(tiny_runs, tmp_path, capsys):
    write_world(tmp_path / "other_logs", scale="tiny", seed=8, progress=lambda *a: None)
    build(tmp_path / "other_logs", tmp_path / "other", BuildConfig(split=SplitConfig(valid_days=2, test_days=2)),
          progress=lambda *a: None, progress_bar=False)
    command = ["export", "--run", str(tiny_runs["gat_20"]), "--out", str(tmp_path / "swapped"), "--graph", str(tmp_path / "other")]
    assert main(command) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(rf"dropdown-rank export: error: --graph {re.escape(str(tmp_path / 'other'))} gives neighbors to far fewer of "
                    r"the run's ids than its own graph did \(q2q: \d+\.\d% against \d+\.\d%, i2i: .*pass --force-graph", line), line
    assert not (tmp_path / "swapped").exists() and siblings(tmp_path / "swapped") == []  # refused before anything is staged
    assert main(command + ["--force-graph"]) == 0
    coverage = card_of(tmp_path / "swapped")["graph"]["coverage"]
    assert all(c["swapped"] < 0.5 * c["own"] for c in coverage.values()), coverage


# -- the output directory ---------------------------------------------------------------------------------------

def card_of(path):
    return json.loads((path / "model_card.json").read_text())


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_export_replaces_only_an_earlier_export(tiny_runs, tmp_path, capsys):
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "keep.parquet").write_bytes(b"precious")
    assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(unrelated)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"dropdown-rank export: error: --out {unrelated} exists and is not an export of this tool")
    assert "--overwrite" in err
    assert sorted(p.name for p in unrelated.iterdir()) == ["keep.parquet"] and siblings(unrelated) == []
    # A directory that merely has a model_card.json is not an export of this tool either.
    (unrelated / "model_card.json").write_text('{"model": "someone else\'s"}')
    assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(unrelated)]) == 2
    assert (unrelated / "keep.parquet").read_bytes() == b"precious"

    out = tmp_path / "export"
    out.mkdir()  # an empty directory is fine
    assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(out)]) == 0
    assert card_of(out)["tool"] == "dropdown_rank export" and card_of(out)["model"] == "base_20"
    assert main(["export", "--run", str(tiny_runs["gat_20"]), "--out", str(out)]) == 0  # an earlier export: replaced
    assert card_of(out)["model"] == "gat_20" and siblings(out) == []
    serve(out)

    assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(unrelated), "--overwrite"]) == 0
    assert card_of(unrelated)["model"] == "base_20" and not (unrelated / "keep.parquet").exists()
    # Never the run being exported, even with --overwrite.
    assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(tiny_runs["base_20"].parent), "--overwrite"]) == 2
    assert "which this export reads" in capsys.readouterr().err
    assert (tiny_runs["base_20"] / "config.json").exists()


# Runs an export that is killed (SIGKILL, no cleanup) at a chosen point.
KILLED_EXPORT = """
import os, pathlib, signal, sys
import dropdown_rank
import tensorflow as tf
from dropdown_rank import export as ex

run, out, point = sys.argv[1:4]
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if point == "after_saved_model":  # the SavedModel is written, the card is not
    save = tf.saved_model.save
    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        die()
    ex.tf.saved_model.save = save_then_die
elif point == "before_swap":  # everything is staged
    ex._swap_in = die
elif point == "between_renames":  # the non-atomic swap: the old export moved aside, the new one not yet in
    ex._exchange = lambda a, b: False
    rename, calls = pathlib.Path.rename, []
    def rename_then_die(self, target):
        calls.append(target)
        if len(calls) == 2:
            die()
        return rename(self, target)
    pathlib.Path.rename = rename_then_die
ex.export(run, out, progress=lambda *a: None)
"""


@pytest.mark.slow
def test_a_killed_export_leaves_the_previous_export_intact(tiny_runs, tmp_path):
    first = tmp_path / "first"
    assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(first)]) == 0
    good = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    # One earlier export per kill point, each killed in its own process, side by side.
    points = ("after_saved_model", "before_swap", "between_renames")
    outs = {point: tmp_path / point / "export" for point in points}
    processes = {}
    for point in points:
        shutil.copytree(first, outs[point])
        processes[point] = children.Child(["-c", KILLED_EXPORT, str(tiny_runs["gat_20"]), str(outs[point]), point])
    for point in points:
        out = outs[point]
        processes[point].communicate(timeout=300)
        assert processes[point].returncode == -signal.SIGKILL, point
        if point == "between_renames":
            assert not out.exists()  # the only window of the non-atomic swap: DIR is absent, never half-written
            assert any(name.endswith(".old") for name in siblings(out))
        else:
            assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == good, point
            assert any(name.endswith(".partial") for name in siblings(out))
        # The next export cleans up (restoring the previous export first if the kill came between the renames).
        assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(out)]) == 0
        assert siblings(out) == [] and card_of(out)["model"] == "base_20"


@pytest.mark.slow
def test_an_export_killed_at_a_random_time_leaves_either_export_complete(tiny_runs, tmp_path):
    out = tmp_path / "export"
    assert main(["export", "--run", str(tiny_runs["base_20"]), "--out", str(out)]) == 0
    rng = random.Random(11)
    kills = 0
    for attempt in range(6):  # at least 3 random times, more until 2 kills landed while the export was staging
        if attempt >= 3 and kills >= 2:
            break
        left_before = set(siblings(out))  # an earlier kill's leftovers, which this export clears first
        process = children.Child(["-m", "dropdown_rank.cli", "export", "--run", str(tiny_runs["gat_20"]), "--out", str(out)])
        # Timed from the export's own start of work (its staging directory appears), which another process's load
        # cannot shift; from staging to the swap took about 3 s on this idle 2-core machine.
        deadline, staging = time.monotonic() + 300, []
        while not staging and process.poll() is None:
            assert time.monotonic() < deadline, "the export never started staging"
            staging = [name for name in siblings(out) if name.endswith(".partial") and name not in left_before]
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 2.5))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=300)
        kills += process.returncode == -signal.SIGKILL and bool(staging) and staging[0] in siblings(out)
        assert card_of(out)["model"] in ("base_20", "gat_20")  # the previous or the new export, whole
        _, signature = serve(out)
        assert signature(**request())["ctr"].shape == (3,)
    assert kills >= 2


def test_the_serving_example_comes_only_from_the_data_the_run_was_trained_on(tiny_logs, tiny_runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_runs["base_20"], run)
    config = json.loads((run / "config.json").read_text())
    other = tmp_path / "rebuilt"  # the run's work directory, rebuilt from the same logs with another split
    build(tiny_logs, other, BuildConfig(split=SplitConfig(valid_days=3, test_days=2)), progress=lambda *a: None, progress_bar=False)
    (run / "config.json").write_text(json.dumps({**config, "work": str(other)}))
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "export")]) == 0
    assert not (tmp_path / "export" / "serving_example.json").exists()
    assert "was rebuilt from other data since training" in capsys.readouterr().out
    (run / "config.json").write_text(json.dumps(config))
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "serving_example.json").exists()

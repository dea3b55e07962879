"""Day-by-day training (``daily.py``): the day streams, lineage, refusal and exact resume."""
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from dropdown_rank.daily import LOG, train_daily, training_days
from dropdown_rank.dataset import DayStream, make_dataset
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import TrainConfig, load_run
from dropdown_rank.workdir import Work, read_samples
from conftest import made_once

CONFIG = ModelConfig(kind="hgcn", dim=8)
TRAINING = TrainConfig(batch_size=256, seed=5)  # calibrated: the state must hold the uncalibrated ranker


def weights(run_dir):
    return [w.numpy() for w in load_run(run_dir).weights]


def keys(batches):
    return [(f["request_ts"].numpy(), f["candidate"].numpy()) for f, _ in batches]


@pytest.mark.parametrize("built", ["tiny_work", "tiny_work_short_windows"])  # one train shard; several (days span shards)
def test_a_day_stream_yields_exactly_that_days_rows_shuffled_by_seed_and_day(built, request):
    work = Work.open(request.getfixturevalue(built))
    frame = read_samples(work.samples_dir, "train", columns=["request_ts", "candidate"])
    days = training_days(work)
    stream = DayStream(work.samples_dir, "train", 20, batch_size=64, seed=1, window_rows=100)
    assert sum(stream.rows(day) for day in days) == len(frame)
    day = days[len(days) // 2]
    batches = list(stream.dataset(day))
    ts = np.concatenate([f["request_ts"].numpy() for f, _ in batches])
    wanted = frame[(frame["request_ts"] >= day) & (frame["request_ts"] < day + 86400)]
    assert len(ts) == len(wanted) > 64
    assert sorted(zip(ts, np.concatenate([f["candidate"].numpy() for f, _ in batches]))) == \
        sorted(zip(wanted["request_ts"], wanted["candidate"].str.encode("utf-8")))
    assert not np.all(np.diff(ts) >= 0), "the day's rows are shuffled"
    again = DayStream(work.samples_dir, "train", 20, batch_size=64, seed=1, window_rows=100)
    other_seed = DayStream(work.samples_dir, "train", 20, batch_size=64, seed=2, window_rows=100)
    np.testing.assert_array_equal(np.concatenate([k[0] for k in keys(again.dataset(day))]), ts)
    assert not np.array_equal(np.concatenate([k[0] for k in keys(other_seed.dataset(day))]), ts)


@pytest.fixture(scope="module")
def daily_runs(tiny_work, tmp_path_factory):
    """One uninterrupted daily run over every training day, and the same days as a parent (2 days) and its continuation."""
    def make(root):  # no validation after each day: the tests here compare weights and logs
        train_daily(tiny_work, root / "whole", CONFIG, TRAINING, validate_daily=False, verbose=0)
        train_daily(tiny_work, root / "parent", CONFIG, TRAINING, days=2, validate_daily=False, verbose=0)
        train_daily(tiny_work, root / "child", CONFIG, TRAINING, parent=root / "parent", validate_daily=False, verbose=0)

    return made_once(tmp_path_factory, "daily_runs", make)


def test_a_continuation_ends_with_the_weights_of_one_uninterrupted_daily_run(daily_runs, tiny_work):
    whole, child = weights(daily_runs / "whole"), weights(daily_runs / "child")
    assert len(whole) == len(child)
    for a, b in zip(whole, child, strict=True):
        np.testing.assert_array_equal(a, b)
    parent = weights(daily_runs / "parent")
    assert any(not np.array_equal(a, b) for a, b in zip(parent, whole)), "the continuation trained on"
    days = training_days(Work.open(tiny_work))
    log = json.loads((daily_runs / "child" / LOG).read_text())
    assert [entry["day_start"] for entry in log["days"]] == days[2:]
    assert log["lineage"] == [{"run": str((daily_runs / "parent").resolve()), "first_day": log["lineage"][0]["first_day"],
                               "last_day": json.loads((daily_runs / "parent" / LOG).read_text())["last_day"]}]
    metrics = json.loads((daily_runs / "child" / "metrics.json").read_text())
    assert metrics["days_run"] == len(days) - 2 and metrics["lineage"] == log["lineage"]
    assert metrics["test_auc"] == json.loads((daily_runs / "whole" / "metrics.json").read_text())["test_auc"]


class StopAfter(tf.keras.callbacks.Callback):
    """Raises in the middle of the ``day``-th day's pass (counted from 1): a kill after some days were checkpointed."""

    def __init__(self, day):
        super().__init__()
        self.day, self.days = day, 0

    def on_train_begin(self, logs=None):
        self.days += 1

    def on_train_batch_end(self, batch, logs=None):
        if self.days == self.day and batch == 1:
            raise KeyboardInterrupt("killed")


class DaysTrained(tf.keras.callbacks.Callback):
    """Counts the days a call trains (one ``fit`` each)."""

    days = 0

    def on_train_begin(self, logs=None):
        self.days += 1


def test_an_interrupted_continuation_resumes_from_its_own_state_to_the_uninterrupted_weights(daily_runs, tiny_work, tmp_path):
    run, parent = tmp_path / "run", daily_runs / "parent"
    left = len(training_days(Work.open(tiny_work))) - 2  # the days after the parent's two
    with pytest.raises(KeyboardInterrupt):
        train_daily(tiny_work, run, CONFIG, TRAINING, parent=parent, verbose=0, callbacks=[StopAfter(2)])
    assert len(json.loads((run / LOG).read_text())["days"]) == 1 and not (run / "metrics.json").exists()
    # A kill between the log and the checkpoint: the logged day is not in the state, and runs again.
    log = json.loads((run / LOG).read_text())
    (run / LOG).write_text(json.dumps({**log, "days": log["days"] + [dict(log["days"][-1], day="logged, not checkpointed")]}))
    resumed = DaysTrained()
    train_daily(tiny_work, run, CONFIG, TRAINING, parent=parent, verbose=0, callbacks=[resumed])
    assert resumed.days == left - 1, "resumed from its own first day's state, not from the parent's"
    for a, b in zip(weights(daily_runs / "whole"), weights(run), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [e["day"] for e in json.loads((run / LOG).read_text())["days"]] == \
        [e["day"] for e in json.loads((daily_runs / "whole" / LOG).read_text())["days"]][2:]
    # A kill after the last day's checkpoint, before metrics.json: the same command trains no day again.
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()
    again = DaysTrained()
    assert train_daily(tiny_work, run, CONFIG, TRAINING, parent=parent, verbose=0, callbacks=[again])["test_auc"] == metrics["test_auc"]
    assert again.days == 0


def test_a_continuation_refuses_what_it_cannot_continue(daily_runs, tiny_work, tiny_work_short_windows, tmp_path):
    with pytest.raises(ValueError, match="another model configuration"):
        train_daily(tiny_work, tmp_path / "a", ModelConfig(kind="hgcn", dim=16), TRAINING, parent=daily_runs / "parent", verbose=0)
    with pytest.raises(ValueError, match="another train configuration"):
        train_daily(tiny_work, tmp_path / "b", CONFIG, TrainConfig(batch_size=256, seed=6),
                    parent=daily_runs / "parent", verbose=0)
    with pytest.raises(ValueError, match="no training day after"):
        train_daily(tiny_work, tmp_path / "c", CONFIG, TRAINING, parent=daily_runs / "whole", verbose=0)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(daily_runs / "parent", unfinished)
    (unfinished / "metrics.json").unlink()
    with pytest.raises(ValueError, match="has not finished"):
        train_daily(tiny_work, tmp_path / "d", CONFIG, TRAINING, parent=unfinished, verbose=0)
    with pytest.raises(ValueError, match=r"samples or graphs differently .*differs: samples.personal_days, samples.popularity_days\)"):
        train_daily(tiny_work_short_windows, tmp_path / "e", CONFIG, TRAINING, parent=daily_runs / "parent", verbose=0)
    other_vocabulary = tmp_path / "other_vocabulary"  # a parent whose recorded vocabularies are another build's
    shutil.copytree(daily_runs / "parent", other_vocabulary)
    log = json.loads((other_vocabulary / LOG).read_text())
    (other_vocabulary / LOG).write_text(json.dumps({**log, "vocabulary_fingerprint": "another build's"}))
    with pytest.raises(ValueError, match="vocabularies differ"):
        train_daily(tiny_work, tmp_path / "e", CONFIG, TRAINING, parent=other_vocabulary, verbose=0)
    stateless = tmp_path / "stateless"
    shutil.copytree(daily_runs / "parent", stateless)
    shutil.rmtree(stateless / "state")
    with pytest.raises(ValueError, match="no state checkpoint"):
        train_daily(tiny_work, tmp_path / "g", CONFIG, TRAINING, parent=stateless, verbose=0)
    with pytest.raises(ValueError, match="not a daily run"):
        train_daily(tiny_work, tmp_path / "f", CONFIG, TRAINING, parent=tiny_work, verbose=0)
    assert not any((tmp_path / name).exists() for name in "abcdefg"), "a refused run writes nothing"


def test_the_command_trains_the_days_asked_and_writes_a_run_evaluate_and_export_read(tiny_work, tmp_path):
    from dropdown_rank.cli import main

    run = tmp_path / "run"
    assert main(["train-daily", "--data", str(tiny_work), "--out", str(run), "--model", "base", "--dim", "8",
                 "--days", "2", "--no-daily-validation", "--seed", "5"]) == 0
    log = json.loads((run / LOG).read_text())
    assert [e["day_start"] for e in log["days"]] == training_days(Work.open(tiny_work))[:2]
    assert all("val_auc" not in e and e["rows"] > 0 and e["fit_seconds"] > 0 for e in log["days"])
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["train"]["epochs"] == 1
    assert run_json["daily"] == {"parent": None, "parent_checkpoint": None, "days": [e["day"] for e in log["days"]]}
    scores = load_run(run)(next(iter(make_dataset(Work.open(tiny_work).samples_dir, "test", 20, 64)))[0])
    assert scores.shape == (64,)
    assert main(["train-daily", "--data", str(tiny_work), "--out", str(tmp_path / "next"), "--model", "base", "--dim", "8",
                 "--from", str(run), "--days", "1", "--no-daily-validation", "--seed", "5"]) == 0
    assert json.loads((tmp_path / "next" / "metrics.json").read_text())["lineage"][0]["run"] == str(run.resolve())


def test_a_daily_run_is_its_own_model_in_a_report(daily_runs, tiny_work, tiny_runs, tmp_path):
    from dropdown_rank.evaluate.report import evaluate

    report = evaluate(tiny_work, [daily_runs / "whole", daily_runs / "parent", daily_runs / "child", tiny_runs["base_20"]],
                      tmp_path / "report", replicates=20)
    days = [e["day"] for e in json.loads((daily_runs / "whole" / LOG).read_text())["days"]]
    # the whole run and the parent + continuation cover the same days (seeds of one model); the parent alone is another
    assert report["seeds"] == {f"hgcn_20 [daily {days[0]}..{days[-1]}]": [5, 5], f"hgcn_20 [daily {days[0]}..{days[1]}]": [5],
                               "base_20": [3]}


def test_a_continuation_carries_the_position_tower(tiny_work, tmp_path):
    """The PAL tower lives beside the ranker (training only): a continuation restores it with the ranker, so parent +
    child learn the examination one uninterrupted daily run learns."""
    config, training = ModelConfig(kind="base", dim=8, position_bias=True), TrainConfig(batch_size=256, seed=5)
    whole = train_daily(tiny_work, tmp_path / "whole", config, training, validate_daily=False, verbose=0)
    train_daily(tiny_work, tmp_path / "parent", config, training, days=2, validate_daily=False, verbose=0)
    child = train_daily(tiny_work, tmp_path / "child", config, training, parent=tmp_path / "parent", validate_daily=False,
                        verbose=0)
    np.testing.assert_array_equal(child["position_examination"], whole["position_examination"])
    assert child["position_examination"][0] != pytest.approx(child["position_examination"][9], abs=1e-3)  # it trained

"""Training on the tiny world: run directory, exact metrics, determinism and resume."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.metrics import log_loss, roc_auc_score

from dropdown_rank.workdir import Work
from dropdown_rank.cli import main
from dropdown_rank.dataset import make_dataset
from dropdown_rank.model import ModelConfig, make_ranker
from dropdown_rank.train import (TrainConfig, fit_calibration, fit_to_work, load_run, load_tables, model_inputs, predict, predictor,
                                 train)
from dropdown_rank.vocab import read_vocabulary
from dropdown_rank.workdir import read_samples
from conftest import QUICK as QUICK_SETTINGS, made_once

QUICK = TrainConfig(**QUICK_SETTINGS)


@pytest.fixture(scope="module")
def hgcn_run(tiny_work, tmp_path_factory):
    def make(root):
        assert main(["train", "--data", str(tiny_work), "--out", str(root / "hgcn"), "--model", "hgcn", "--epochs", "2",
                     "--batch-size", "512", "--seed", "5", "--no-calibrate"]) == 0  # raw outputs: graph effects stay visible

    return made_once(tmp_path_factory, "hgcn_run", make) / "hgcn"


def test_run_directory_holds_everything_to_reload(hgcn_run, tiny_work):
    for path in ("config.json", "metrics.json", "epochs.json", "vocab/queries.parquet", "graph/q2q.npz", "graph/i2i.npz",
                 "weights/ranker.index", "checkpoints/best.index", "predictions/test.parquet", "predictions/valid.parquet",
                 "tensorboard"):
        assert (hgcn_run / path).exists(), path
    work = Work.open(tiny_work)
    metrics = json.loads((hgcn_run / "metrics.json").read_text())
    assert metrics["model"] == "hgcn_20" and metrics["epochs_run"] == 2 == len(json.loads((hgcn_run / "epochs.json").read_text()))
    assert metrics["steady_examples_per_second"] > 0 and metrics["train_seconds_whole_call"] > 0
    labels = {split: read_samples(work.samples_dir, split, columns=["label"])["label"] for split in ("train", "test")}
    assert metrics["train_ctr"] == pytest.approx(labels["train"].mean()) and metrics["train_examples"] == len(labels["train"])
    assert metrics["test_impressions"] == len(labels["test"]) and metrics["calibration"] is None
    assert metrics["test_logloss_constant_ctr"] == pytest.approx(log_loss(labels["test"], np.full(len(labels["test"]), labels["train"].mean())))
    # what reloads it: the build's vocabularies and the snapshot of the first test day (what an export serves)
    for name in ("users", "queries", "items"):
        assert read_vocabulary(hgcn_run / "vocab", name) == work.vocabulary(name)
    for relation in ("q2q", "i2i"):
        served, frozen = load_tables(hgcn_run / "graph", hgcn_run / "vocab")[relation], work.daily_tables(relation).at(work.split.test_start)
        assert served.snapshot_ts == frozen.snapshot_ts == work.split.test_start
        for field in ("ids", "weight", "last_ts", "count"):
            np.testing.assert_array_equal(getattr(served, field), getattr(frozen, field))


def test_graph_tables_stay_out_of_checkpoints(hgcn_run):
    names = [name for name, _ in tf.train.list_variables(str(hgcn_run / "weights" / "ranker"))]
    assert any("query_embedding" in name for name in names)
    tables = ("neighbor_ids", "edge_weight/", "edge_last_ts", "edge_count_bucket", "first_version", "version_day", "snapshot_days")
    assert not any(table in name for name in names for table in tables)
    assert any("edge_time" in name for name in names)  # the edge-time embedding is learned, so it is kept


def test_platt_scaling_recovers_a_known_distortion():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=200_000)
    labels = (rng.random(logits.size) < 1 / (1 + np.exp(-(0.5 * logits - 2.0)))).astype(int)
    scale, bias = fit_calibration(logits, labels)
    assert scale == pytest.approx(0.5, abs=0.03) and bias == pytest.approx(-2.0, abs=0.03)
    # a model ranking backwards is not flipped: it keeps a positive scale and predicts about the click rate
    scale, bias = fit_calibration(-logits, labels)
    assert scale > 0 and 1 / (1 + np.exp(-bias)) == pytest.approx(labels.mean(), rel=0.05)


def test_test_auc_is_exact_and_reloaded_model_reproduces_predictions(hgcn_run, tiny_work):
    metrics = json.loads((hgcn_run / "metrics.json").read_text())
    frame = pd.read_parquet(hgcn_run / "predictions" / "test.parquet")
    assert metrics["test_auc"] == pytest.approx(roc_auc_score(frame["label"], frame["prediction"]), abs=1e-12)
    ranker = load_run(hgcn_run)  # serves the frozen snapshot it was exported with
    test = make_dataset(tiny_work / "samples", "test", 20, 4096)
    np.testing.assert_allclose(predict(predictor(ranker), test), frame["prediction_frozen"].to_numpy(), atol=1e-6)
    work = Work.open(tiny_work)
    ranker.set_graph({relation: work.daily_tables(relation) for relation in ("q2q", "i2i")})  # each day's own snapshot
    np.testing.assert_allclose(predict(predictor(ranker), test), frame["prediction"].to_numpy(), atol=1e-6)


class Interrupt(tf.keras.callbacks.Callback):
    """Simulates a killed job right after the first epoch's checkpoints are written."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt("simulated interruption")


def test_same_seed_same_auc_and_an_interrupted_run_resumes_to_the_same_result(tiny_work, base_run, tmp_path):
    """The same seed in another run directory trains the same first epoch, and its resumed run the same rest."""
    config = ModelConfig(kind="base")
    _, first = base_run
    with pytest.raises(KeyboardInterrupt):
        train(tiny_work, tmp_path / "c", config, QUICK, verbose=0, callbacks=[Interrupt()])
    interrupted = json.loads((tmp_path / "c" / "epochs.json").read_text())
    assert len(interrupted) == 1
    assert interrupted[0]["val_auc"] == pytest.approx(first["val_auc_per_epoch"][0], abs=1e-6)
    resumed = train(tiny_work, tmp_path / "c", config, QUICK, verbose=0)
    assert resumed["epochs_run"] == 3
    assert resumed["val_auc_per_epoch"] == pytest.approx(first["val_auc_per_epoch"], abs=1e-6)
    assert round(resumed["test_auc"], 4) == round(first["test_auc"], 4)
    assert resumed["best_epoch"] == first["best_epoch"]


def test_a_calibrated_runs_saved_predictions_are_its_calibrated_scores(tiny_work, base_run):
    """The predictions a run writes come after its calibration: the reloaded (calibrated) ranker gives them, and the
    uncalibrated one does not."""
    run_dir, metrics = base_run
    frame = pd.read_parquet(run_dir / "predictions" / "test.parquet")
    ranker, test = load_run(run_dir), make_dataset(tiny_work / "samples", "test", 20, 4096)
    assert metrics["calibration"]["scale"] != 1.0 and metrics["calibration"]["bias"] != 0.0
    np.testing.assert_allclose(predict(predictor(ranker), test), frame["prediction"].to_numpy(), atol=1e-6)
    ranker.calibration.assign([1.0, 0.0])
    assert np.abs(predict(predictor(ranker), test) - frame["prediction"].to_numpy()).max() > 1e-3


def test_an_epoch_logged_but_not_backed_up_runs_again_and_is_logged_once(tiny_work, base_run, tmp_path, monkeypatch):
    """A crash after ExactValidation wrote epoch 2 to epochs.json but before BackupAndRestore saved it."""
    config = ModelConfig(kind="base")
    reference_run, reference = base_run
    # calibrated on the validation days, and only on them: refitting on the reloaded model's validation logits
    # (calibration reset to the identity) gives the stored fit, which a fit on any other rows would not
    calibration = reference["calibration"]
    assert calibration["scale"] > 0 and calibration["val_logloss_after"] <= calibration["val_logloss_before"] + 1e-9
    ranker = load_run(reference_run)
    np.testing.assert_allclose(ranker.calibration.numpy(), [calibration["scale"], calibration["bias"]], rtol=1e-6)
    ranker.calibration.assign([1.0, 0.0])
    valid = make_dataset(tiny_work / "samples", "valid", 20, 4096)
    logits = np.concatenate([ranker(features, training=False).numpy() for features, _ in valid])
    labels = np.concatenate([label.numpy() for _, label in valid])
    np.testing.assert_allclose(fit_calibration(logits, labels), [calibration["scale"], calibration["bias"]], rtol=1e-4)
    backup_epoch_end = tf.keras.callbacks.BackupAndRestore.on_epoch_end

    def crash_before_second_backup(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("killed between the epoch log and the backup")
        return backup_epoch_end(self, epoch, logs)

    monkeypatch.setattr(tf.keras.callbacks.BackupAndRestore, "on_epoch_end", crash_before_second_backup)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_work, tmp_path / "run", config, QUICK, verbose=0)
    assert [e["epoch"] for e in json.loads((tmp_path / "run" / "epochs.json").read_text())] == [1, 2]
    monkeypatch.setattr(tf.keras.callbacks.BackupAndRestore, "on_epoch_end", backup_epoch_end)
    resumed = train(tiny_work, tmp_path / "run", config, QUICK, verbose=0)
    assert [e["epoch"] for e in json.loads((tmp_path / "run" / "epochs.json").read_text())] == [1, 2, 3]
    assert resumed["val_auc_per_epoch"] == pytest.approx(reference["val_auc_per_epoch"], abs=1e-6)
    assert resumed["best_epoch"] == reference["best_epoch"]


def test_gnn_test_rows_read_their_own_day_graph_and_the_frozen_one_is_reported(hgcn_run, tiny_work):
    from dropdown_rank.workdir import read_samples

    split = Work.open(tiny_work).split
    frame = pd.read_parquet(hgcn_run / "predictions" / "test.parquet")
    metrics = json.loads((hgcn_run / "metrics.json").read_text())
    assert metrics["test_auc_frozen_graph"] == pytest.approx(roc_auc_score(frame["label"], frame["prediction_frozen"]), abs=1e-12)
    first_day = read_samples(tiny_work / "samples", "test", columns=["request_ts"])["request_ts"].to_numpy() < split.test_start + 86400
    # the frozen graph is the first test day's snapshot: identical there, different on later days
    np.testing.assert_allclose(frame["prediction"][first_day], frame["prediction_frozen"][first_day], atol=1e-7)
    assert (np.abs(frame["prediction"][~first_day] - frame["prediction_frozen"][~first_day]) > 1e-6).mean() > 0.5
    assert (frame["position"] >= 0).all()


def test_a_run_directory_refuses_another_configuration_data_or_a_finished_run(tiny_work, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_work, run, ModelConfig(kind="hgcn"), QUICK, verbose=0, callbacks=[Interrupt()])
    with pytest.raises(ValueError, match=r"started with another configuration .*differs: model.kind, model.neighbors\)"):
        train(tiny_work, run, ModelConfig(kind="base"), QUICK, verbose=0)
    with pytest.raises(ValueError, match=r"differs: train.seed\)"):
        train(tiny_work, run, ModelConfig(kind="hgcn"), dataclasses.replace(QUICK, seed=12), verbose=0)
    assert len(json.loads((run / "epochs.json").read_text())) == 1  # nothing of the refused runs was mixed in
    finished = train(tiny_work, run, ModelConfig(kind="hgcn"), QUICK, verbose=0)  # a GNN run resumed to its end
    assert finished["model"] == "hgcn_20" and finished["epochs_run"] == QUICK.epochs
    with pytest.raises(ValueError, match="is a finished run"):
        train(tiny_work, run, ModelConfig(kind="hgcn"), QUICK, verbose=0)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not a dropdown-rank run"):
        train(tiny_work, stranger, ModelConfig(kind="base"), QUICK, verbose=0)
    assert (stranger / "notes.txt").read_text() == "mine"


def test_a_run_killed_after_its_early_stop_was_backed_up_trains_no_further_epoch(tiny_work, tmp_path, monkeypatch):
    """Early stopping ends fit before its 6 epochs (the epoch after the best); a kill before Keras removed the backup
    must not add an epoch, and the resumed run ends on the best epoch's weights, not the last."""
    config, settings = ModelConfig(kind="base"), dataclasses.replace(QUICK, epochs=6, patience=1, learning_rate=0.01)
    monkeypatch.setattr(tf.keras.callbacks.BackupAndRestore, "on_train_end", lambda self, logs=None: None)
    finish = tf.keras.Model.load_weights

    def killed_after_fit(self, *args, **kwargs):
        raise KeyboardInterrupt("killed after fit, with the backup still there")

    monkeypatch.setattr(tf.keras.Model, "load_weights", killed_after_fit)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_work, tmp_path / "run", config, settings, verbose=0)
    assert (tmp_path / "run" / "backup").exists()
    logged = json.loads((tmp_path / "run" / "epochs.json").read_text())
    assert len(logged) < settings.epochs  # early stopping ended it
    best = max(logged, key=lambda entry: entry["val_auc"])
    assert best["val_auc"] > logged[-1]["val_auc"]  # patience 1: the last epoch did not improve
    monkeypatch.setattr(tf.keras.Model, "load_weights", finish)
    resumed = train(tiny_work, tmp_path / "run", config, settings, verbose=0)
    assert resumed["epochs_run"] == len(logged) and json.loads((tmp_path / "run" / "epochs.json").read_text()) == logged
    assert resumed["best_epoch"] == best["epoch"] and not (tmp_path / "run" / "backup").exists()
    # the best checkpoint, loaded: the saved ranker scores the validation days as the best epoch did
    valid = make_dataset(tiny_work / "samples", "valid", 20, 4096)
    labels = np.concatenate([label.numpy() for _, label in valid])
    assert roc_auc_score(labels, predict(predictor(load_run(tmp_path / "run")), valid)) == pytest.approx(best["val_auc"], abs=1e-6)


def test_a_gnn_reads_the_builds_neighbors_unless_told_fewer_and_never_more(tiny_work):
    work = Work.open(tiny_work)
    assert fit_to_work(ModelConfig(kind="hgcn"), work).neighbors == work.neighbors
    fewer = fit_to_work(ModelConfig(kind="hgcn", neighbors=3), work)
    assert fewer.neighbors == 3
    with pytest.raises(ValueError, match=f"stores {work.neighbors}"):
        fit_to_work(ModelConfig(kind="hgcn", neighbors=work.neighbors + 1), work)
    ranker = make_ranker(fewer, **model_inputs(work, fewer))
    assert ranker.config.neighbors == 3 and ranker.query_context.neighbor_ids.shape[1] == 3
    assert make_ranker(ModelConfig(kind="hgcn"), **model_inputs(work, fewer)).config.neighbors == work.neighbors
    with pytest.raises(ValueError, match="base reads none"):
        ModelConfig(kind="base", neighbors=3)
    assert ModelConfig.from_dict({"kind": "base", "neighbors": 10}).neighbors is None  # what older base runs recorded

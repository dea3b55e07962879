"""``dropdown-rank train``: fit one ranker on a built work directory with Keras ``fit``.

Callbacks, in order:

1. :class:`ExactValidation` computes the **exact** validation AUC and logloss (scikit-learn, on all
   predictions of the validation days; test days are never read before training ends) at each
   epoch end, puts them in the logs as ``val_auc`` and ``val_logloss`` so the callbacks after it see
   exact numbers, and appends them to ``RUN/epochs.json``;
2. ``EarlyStopping`` on ``val_auc``;
3. ``ModelCheckpoint`` of the best epoch's weights (``RUN/checkpoints/best``);
4. ``BackupAndRestore`` (``RUN/backup``): an interrupted run resumes at the last finished epoch.
   Keras restores weights and optimizer but not the other callbacks' memory, so when the first
   epoch begins, :class:`ExactValidation` cuts ``epochs.json`` back to the epochs the restored
   backup holds (an epoch logged just before a crash, but not backed up, runs again and is logged
   once) and hands the best AUC so far and the epochs since it to early stopping and the
   checkpoint: a worse resumed epoch never overwrites the best checkpoint, and early stopping
   keeps counting;
5. ``TensorBoard`` (``RUN/tensorboard``);
6. :class:`SteadyRate`: examples per second from the end of each epoch's first batch to the end
   of the epoch (whole-call times include tracing and a tf.data teardown stall of up to 16 s seen on this
   stack, so they mislead).

**Daily graphs.** A GNN trains holding every daily snapshot of the build; each row reads its own
day's (``tables.py``, ``model.py``), and so do validation and test rows: that is what a serving
system refreshing its graph daily would use. The test split is also scored with one *frozen*
snapshot (the graph of the first test day, what an export made at the end of training ships) for
every test day: ``prediction_frozen`` beside ``prediction``, and ``test_auc_frozen_graph`` in
``metrics.json``.

**Calibration.** Early stopping keeps the epoch of best validation AUC, which on real logs can be
an over-confident one (the issue that asked for calibration reports a base_20 on a real log at test
logloss 0.50 against 0.34 for the constant click rate). So after training, a Platt scaling ``sigmoid(a * logit + b)`` (``a > 0``:
the order, hence AUC, is unchanged) is fitted on the validation days' predictions and stored in the
ranker (``DropdownRanker.calibration``), so exports serve calibrated probabilities. Test days are
never used. ``metrics.json`` records both loglosses and the constant-CTR logloss (the training
click rate predicted for every test row) that a calibrated model must beat.

**Clusters.** With ``TF_CONFIG`` set, ``train`` runs under ``MultiWorkerMirroredStrategy`` or, with
``strategy="parameter-server"``, ``ParameterServerStrategy`` (``cluster.py``); the training input is
then a ``DatasetCreator`` over each worker's files (:func:`training_input`) and only the chief
writes the run directory (README, Training on a cluster).

The run directory gets ``config.json``, the ``vocab/`` it trained with, ``graph/`` (the frozen
snapshot, which export serves), ``weights/`` (the best epoch), ``predictions/{valid,test}.parquet`` and
``metrics.json`` (exact test AUC and logloss, train time, steady examples per second).

Determinism: ``train`` calls :func:`make_deterministic` (``tf.keras.utils.set_random_seed(seed)`` seeds
Python, NumPy and TensorFlow; ``tf.config.experimental.enable_op_determinism()`` makes TF ops
deterministic), for the whole process, unless ``deterministic=False``; the input pipeline's shuffle
is a NumPy generator seeded by (seed, epoch). Same seed and data give the same AUC.
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from dropdown_rank import __version__
from dropdown_rank._io import atomic_path, read_json, write_json, write_parquet
from dropdown_rank.workdir import Work
from dropdown_rank.cluster import MIN_SHARD_BYTES, Cluster, resolve
from dropdown_rank.dataset import SampleStream, make_dataset
from dropdown_rank.tables import RELATIONS, NeighborTable
from dropdown_rank.model import CTRModel, DropdownRanker, ModelConfig, make_ranker
from dropdown_rank.layers.time_gap import BUCKET_RULE, BUCKET_RULE_BEFORE
from dropdown_rank.optimizers import LazyAdam, create_slots
from dropdown_rank.samples import SampleConfig
from dropdown_rank.workdir import read_samples
from dropdown_rank.vocab import VOCABULARIES, read_known_since, read_vocabulary


OPTIMIZERS = ("lazy_adam", "adam")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    batch_size: int = 1024
    learning_rate: float = 1e-3
    patience: int = 1
    seed: int = 0
    eval_batch_size: int = 4096
    calibrate: bool = True
    optimizer: str = "lazy_adam"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")


PREDICTION_COLUMNS = ["request_id", "user_id", "candidate", "position", "label", "activity", "candidate_pv"]
LOGGED_POSITION_PREDICTION = "prediction_logged_position"  # PAL runs: the training model's prediction of the logged list


def make_optimizer(train_config: TrainConfig) -> tf.keras.optimizers.legacy.Optimizer:
    """The optimizer ``train`` compiles a :class:`CTRModel` with; scripts and benchmarks use it too.

    ``lazy_adam`` (default): Adam that updates only the embedding rows a batch touches, so a step's
    cost follows the ids in the batch, not the size of the tables (``optimizers.py``). ``adam``: tf-keras's Adam on dense
    gradients, every row at every step (runs trained before the option existed used it).
    """
    if train_config.optimizer == "adam":
        return tf.keras.optimizers.legacy.Adam(train_config.learning_rate)
    return LazyAdam(train_config.learning_rate)


def train_click_rate(work: Work) -> tuple[float, int]:
    """The training split's click rate and impressions (the label column only): the constant-CTR baseline."""
    labels = read_samples(work.samples_dir, "train", columns=["label"])["label"].to_numpy()
    return float(labels.mean()), int(len(labels))


def predictor(ranker: DropdownRanker):
    """A ``tf.function`` giving ``(logits, click probabilities)``; Keras ``predict`` adds about 8 ms of overhead per call.

    Both outputs, so that in one process one trace serves a run's validation, its calibration (which fits the logits)
    and its final predictions: the trace reads the weights and the calibration as variables, so it stays valid after
    the best checkpoint is loaded and the calibration is set. (Under a distribution strategy the chief traces again
    for the final predictions, which run outside the strategy's scope.) Without AutoGraph, like every function the package traces
    (``CTRModel.train_step``): the model's code has no Python control flow on tensors to convert, and converting it
    cost most of a GNN's first trace."""

    def scores(features):
        logits = ranker(features, training=False)
        return logits, tf.sigmoid(logits)

    return tf.function(scores, autograph=False)


def predict(predict_fn, dataset: tf.data.Dataset, logits: bool = False) -> np.ndarray:
    """Click probabilities (or, with ``logits``, logits) of a :func:`predictor` over ``dataset``. It is traced once,
    for the dataset's element spec (batch size unknown): traced per call it would trace again for the last, smaller
    batch, and for every dataset of another length (about 1 s for a GNN each time)."""
    predict_fn.get_concrete_function(dataset.element_spec[0])
    output = 0 if logits else 1
    return np.concatenate([predict_fn(features)[output].numpy() for features, _ in dataset])


def fit_calibration(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling ``(a, b)`` minimizing the logloss of ``sigmoid(a * logit + b)``; ``a`` is kept positive
    so that the model's order is never reversed."""
    if len(np.unique(labels)) < 2:
        return 1.0, 0.0
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(logits[:, None].astype(np.float64), labels)
    if fit.coef_[0, 0] > 0:
        return float(fit.coef_[0, 0]), float(fit.intercept_[0])
    rate = float(np.mean(labels))  # a model ranking worse than chance on validation: predict the click rate
    return 1e-3, float(np.log(rate / (1 - rate)) - 1e-3 * np.mean(logits))


def exact_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict:
    return {"auc": float(roc_auc_score(labels, predictions)),
            "logloss": float(log_loss(labels, np.clip(predictions, 1e-7, 1 - 1e-7), labels=[0, 1]))}


class ExactValidation(tf.keras.callbacks.Callback):
    """Exact validation AUC/logloss into the epoch logs (``val_auc``, ``val_logloss``) and ``epochs.json``.

    ``history`` holds the epochs the restored backup finished (see :func:`train`); when Keras starts
    the first epoch, ``early_stopping`` and ``checkpoint`` resume from the best AUC among them.
    """

    def __init__(self, predict_fn, dataset: tf.data.Dataset, labels: np.ndarray, log_path: Path | None, history: list,
                 early_stopping: tf.keras.callbacks.EarlyStopping, checkpoint: tf.keras.callbacks.ModelCheckpoint):
        super().__init__()
        self.predict_fn, self.dataset, self.labels = predict_fn, dataset, labels
        self.log_path, self.history = log_path, history  # no log_path: a worker that is not the chief writes nothing
        self.early_stopping, self.checkpoint = early_stopping, checkpoint
        self._handed_over = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._handed_over:
            return
        self._handed_over = True
        aucs = [entry["val_auc"] for entry in self.history]
        if aucs:
            best = int(np.argmax(aucs))
            self.early_stopping.best, self.early_stopping.best_epoch = aucs[best], best
            self.early_stopping.wait = len(aucs) - 1 - best
            self.checkpoint.best = aucs[best]

    def on_epoch_end(self, epoch, logs=None):
        metrics = exact_metrics(self.labels, predict(self.predict_fn, self.dataset))
        logs["val_auc"], logs["val_logloss"] = metrics["auc"], metrics["logloss"]
        self.history.append({"epoch": epoch + 1, "val_auc": metrics["auc"], "val_logloss": metrics["logloss"]})
        if self.log_path is not None:
            write_json(self.log_path, self.history)


class SteadyRate(tf.keras.callbacks.Callback):
    """Examples/second per epoch, from the end of the first batch to the end of the epoch's training
    (it must come first among the callbacks, before validation runs at the epoch's end).

    Under a parameter-server strategy a batch's end is when it was scheduled, and the epoch's end
    waits for every scheduled step: the rate is still that of finished work."""

    def __init__(self, examples_per_epoch: int, batch_size: int):
        super().__init__()
        # Keras's flag for a callback that reads no logs (its own ProgbarLogger sets it); a parameter-server strategy
        # refuses batch hooks without it. Pinned by tests/test_cluster.py's parameter-server run, which uses this callback.
        self._supports_tf_logs = True
        self.examples, self.batch_size, self.rates = examples_per_epoch, batch_size, []

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        measured, seconds = self.examples - self.batch_size, time.perf_counter() - self._start
        if measured > 0 and seconds > 0:
            self.rates.append(measured / seconds)


class StreamEpoch(tf.keras.callbacks.Callback):
    """Keeps the training stream's shuffle epoch equal to Keras's epoch (also after a resume)."""

    def __init__(self, stream: SampleStream):
        super().__init__()
        self.stream = stream

    def on_epoch_begin(self, epoch, logs=None):
        self.stream.set_epoch(epoch)


def load_tables(graph_dir: Path, vocab_dir: Path) -> dict:
    """The latest snapshot of each relation in ``graph_dir`` (a run's own, or a build's newest day)."""
    return {relation: NeighborTable.load(graph_dir / f"{relation}.npz", read_vocabulary(vocab_dir, vocab_name))
            for relation, (_, vocab_name) in RELATIONS.items()}


def run_identity(model_config: ModelConfig, train_config: TrainConfig, work: Work) -> dict:
    """What a run directory is bound to: the model, the training settings, the work directory's data and how the model
    buckets times and counts."""
    return {"model": model_config.to_dict(), "train": dataclasses.asdict(train_config), "work_fingerprint": work.fingerprint,
            "buckets": BUCKET_RULE}


def backed_up_epochs(backup: Path) -> int:
    """Epochs finished and saved by ``BackupAndRestore`` in ``backup`` (0 if none).

    Read from tf-keras's own backup checkpoint (``chief/``, variable ``ckpt_saved_epoch``: the last
    saved epoch's index), which is what ``fit`` resumes from."""
    latest = tf.train.latest_checkpoint(str(backup / "chief")) if backup.exists() else None
    return 0 if latest is None else int(tf.train.load_variable(latest, "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")) + 1


def stopped_early(history: list, patience: int) -> bool:
    """Whether Keras's ``EarlyStopping`` (strict improvement of ``val_auc``) has stopped after these epochs."""
    aucs = [entry["val_auc"] for entry in history]
    return len(aucs) > 1 and len(aucs) - 1 - int(np.argmax(aucs)) >= patience


def flatten(record: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``: nested settings compared key by key, so a refusal names what differs."""
    flat = {}
    for key, value in record.items():
        flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def saved_identity(run_dir: Path) -> dict:
    """``run.json`` of a run, in today's terms: a run started before ``TrainConfig.optimizer`` existed
    trained with plain Adam, and a model option added since then has its default (what the run did)."""
    identity = read_json(run_dir / "run.json")
    identity.get("train", {}).setdefault("optimizer", "adam")
    identity.setdefault("buckets", BUCKET_RULE_BEFORE)
    if "model" in identity:
        identity["model"] = json.loads(json.dumps(ModelConfig.from_dict(identity["model"]).to_dict()))
    return identity


def claim_run_dir(run_dir: Path, identity: dict, write: bool = True) -> None:
    """Start ``run_dir``, or resume it if it was started with the same identity; refuse anything else.

    A run directory holds ``run.json`` from its first moment. Rerunning with another model, other
    training settings or other data would mix two runs' epochs and weights, and a finished run
    would be silently retrained, so both are refused with what differs and how to start over.
    ``write=False`` (a worker that is not the chief) checks an existing ``run.json`` and writes nothing.
    """
    record = run_dir / "run.json"
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: --out is a file, not a directory")
    if record.exists():
        started, wanted = flatten(saved_identity(run_dir)), flatten(json.loads(json.dumps(identity)))
        differs = sorted(key for key in started.keys() | wanted.keys() if started.get(key) != wanted.get(key))
        if differs:
            raise ValueError(f"{run_dir} was started with another configuration or work directory (differs: "
                             f"{', '.join(differs)}); choose another --out, or delete {run_dir} to start over")
        if (run_dir / "metrics.json").exists():
            raise ValueError(f"{run_dir} is a finished run (metrics.json); choose another --out, or delete {run_dir} to retrain")
        refuse_old_position_tower(run_dir, "resume it")
        return
    if not write:
        return
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise ValueError(f"{run_dir}: exists and is not a dropdown-rank run (no run.json); choose another --out")
    write_json(record, identity)


def refuse_old_position_tower(run_dir: Path, what: str) -> None:
    """A PAL run started before the tower had its own learning rate holds the old tower's variable in its checkpoints,
    which today's tower cannot restore: resuming or continuing it would restart the tower from its initial logits."""
    model = read_json(run_dir / "run.json").get("model", {})
    if model.get("position_bias") and "position_lr_multiplier" not in model:
        raise ValueError(f"{run_dir}: a PAL run started before 2026-12-04, whose checkpoints hold the position tower as it was "
                         f"then; this version cannot restore that tower, so it cannot {what}. Train a new run (another --out)")


def fit_to_work(model_config: ModelConfig, work: Work) -> ModelConfig:
    """``model_config`` checked against what ``work`` stores, with a GNN's ``neighbors`` set to the build's when unset."""
    if model_config.seq_len > work.max_len:
        raise ValueError(f"seq_len {model_config.seq_len} > the {work.max_len} stored per sample; rebuild with --seq-len")
    if model_config.is_gnn and (model_config.neighbors or 0) > work.neighbors:
        raise ValueError(f"{model_config.name} reads {model_config.neighbors} neighbors per node, but {work.path} stores "
                         f"{work.neighbors} (build --neighbors); read at most {work.neighbors}, or rebuild")
    if model_config.is_gnn and model_config.neighbors is None:
        model_config = dataclasses.replace(model_config, neighbors=work.neighbors)  # the default: all the build stores
    return model_config


def train_or_reuse(work_dir: str | Path, run_dir: str | Path, model_config: ModelConfig, train_config: TrainConfig = TrainConfig(),
                   **kwargs) -> dict:
    """:func:`train`, or the metrics of ``run_dir`` if it already finished with exactly this configuration and data."""
    work, run_dir = Work.open(work_dir), Path(run_dir)
    identity = run_identity(fit_to_work(model_config, work), train_config, work) | resolve(kwargs.get("strategy", "auto")).identity()
    if (run_dir / "metrics.json").exists() and (run_dir / "run.json").exists() and \
            flatten(saved_identity(run_dir)) == flatten(json.loads(json.dumps(identity))):
        print(f"reusing the finished run {run_dir}")
        return read_json(run_dir / "metrics.json")
    return train(work_dir, run_dir, model_config, train_config, **kwargs)


def fit_verbosity(verbose="auto", cluster_kind: str = "single"):
    """Keras ``fit`` verbosity: ``"auto"`` is the live bar on a terminal and one line per epoch elsewhere
    (and under parameter servers, as Keras does).

    Keras's own ``"auto"`` draws the bar into a log file too, a line of text per batch; redrawing it
    cost as much time as the training step in a background run on the static world."""
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() and cluster_kind != "parameter-server" else 2


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic, for the whole process: TensorFlow
    has no scoped form of either, so both stay on after the call that asked for them."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(work_dir: str | Path, run_dir: str | Path, model_config: ModelConfig, train_config: TrainConfig = TrainConfig(),
          verbose="auto", callbacks=(), strategy: str = "auto", min_shard_bytes: int = MIN_SHARD_BYTES,
          deterministic: bool = True) -> dict:
    """Train one ranker; returns ``metrics.json``'s content. The CLI's ``train`` calls this.

    Calling it again on the same ``run_dir`` after an interruption resumes the run. Extra Keras
    ``callbacks`` run after the built-in ones. With ``TF_CONFIG`` set, every task of the cluster
    calls it with the same arguments and a ``run_dir`` they all see (``cluster.py``): the chief
    writes the run and returns its metrics, a worker returns ``{"role": ...}`` and writes nothing, and
    a parameter-server job's ``worker`` and ``ps`` tasks serve until they are killed.

    ``deterministic`` (default) calls :func:`make_deterministic` with the run's seed, which changes the whole
    process; with ``False`` the caller owns the process's seeds and op determinism, and the seed fixes the data
    order only.
    """
    cluster = resolve(strategy, min_shard_bytes)
    if cluster.serves_only:
        cluster.serve()
    distribution = cluster.strategy()  # before other TensorFlow work: a collective strategy configures the runtime
    if deterministic:
        make_deterministic(train_config.seed)
    work, run_dir = Work.open(work_dir), Path(run_dir)
    model_config = fit_to_work(model_config, work)
    inputs = model_inputs(work, model_config)  # read before the run directory is claimed: a bad build fails first
    valid = make_dataset(work.samples_dir, "valid", model_config.seq_len, train_config.eval_batch_size)
    valid_labels = read_samples(work.samples_dir, "valid", columns=["label"])["label"].to_numpy()
    train_rows = train_click_rate(work)[1]
    best = run_dir / "checkpoints" / "best"
    backup = run_dir / "backup"
    epochs_log = run_dir / "epochs.json"
    # Claimed, and the resumed epochs read, before the model is made: under MultiWorkerMirroredStrategy making
    # the variables is a collective step, so every task has read the run directory before any task writes to it
    # again (Keras's own files, or the chief removing a finished backup).
    claim_run_dir(run_dir, run_identity(model_config, train_config, work) | cluster.identity(), write=cluster.is_chief)
    # An epoch is logged before it is backed up: after a crash in between it runs again, so the log
    # is cut back to what the backup holds.
    history = read_json(epochs_log)[:backed_up_epochs(backup)] if epochs_log.exists() else []
    if cluster.is_chief:
        write_json(epochs_log, history)
    if history:
        print(f"resuming {run_dir} after epoch {len(history)}, its last backed-up epoch")
    ranker, model = compiled_model(distribution, model_config, train_config, inputs)
    predict_fn = predictor(ranker)
    train_data, fit_options, stream_callbacks = training_input(work, model_config, train_config, cluster, first_epoch=len(history))
    rate = SteadyRate(fit_options.get("steps_per_epoch", 0) * train_config.batch_size or train_rows, train_config.batch_size)
    early_stopping = tf.keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=train_config.patience)
    checkpoint = tf.keras.callbacks.ModelCheckpoint(str(best), monitor="val_auc", mode="max", save_best_only=True, save_weights_only=True)
    callbacks = [
        rate,
        # Every worker validates: each needs val_auc to stop early at the same epoch as the others.
        ExactValidation(predict_fn, valid, valid_labels, epochs_log if cluster.is_chief else None, history, early_stopping, checkpoint),
        early_stopping,
        checkpoint,
        tf.keras.callbacks.BackupAndRestore(str(backup)),
        tf.keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), profile_batch=0),
        *stream_callbacks,
        *callbacks,
    ]
    print(f"train {model_config.name}: {train_rows:,} examples, batch {train_config.batch_size}, up to {train_config.epochs} epochs"
          + ("" if cluster.kind == "single" else f", {cluster.kind} with {cluster.workers} workers"))
    started = time.perf_counter()
    if len(history) < train_config.epochs and not stopped_early(history, train_config.patience):
        model.fit(train_data, epochs=train_config.epochs, callbacks=callbacks, verbose=fit_verbosity(verbose, cluster.kind), **fit_options)
    elif cluster.is_chief:  # killed after its last epoch was backed up, before Keras removed the backup at the end of fit
        shutil.rmtree(backup)
    train_seconds = time.perf_counter() - started
    if not cluster.is_chief:
        return {"role": f"{cluster.task_type} {cluster.task_id}", "epochs_run": len(history)}
    model.load_weights(str(best))
    val_auc = [entry["val_auc"] for entry in history]
    return finish_run(run_dir, ranker, predict_fn, work, train_config, valid, valid_labels, position_bias=model.position_bias,
                      summary={
        "best_epoch": int(np.argmax(val_auc)) + 1 if val_auc else None,
        "epochs_run": len(val_auc),
        "val_auc_per_epoch": val_auc,
        "train_seconds_whole_call": round(train_seconds, 2),
        "steady_examples_per_second": round(float(np.median(rate.rates)), 1) if rate.rates else None,
        "steady_examples_per_second_per_epoch": [round(r, 1) for r in rate.rates],
        "train_examples": train_rows,
        **cluster.identity(),
    })


def finish_run(run_dir: Path, ranker: DropdownRanker, predict_fn, work: Work, train_config: TrainConfig, valid: tf.data.Dataset,
               valid_labels: np.ndarray, summary: dict, position_bias=None) -> dict:
    """Calibrate the trained ranker, predict the validation and test days with ``predict_fn`` (its
    :func:`predictor`), save the run and write ``metrics.json`` (the test metrics, then ``summary``: how it was
    trained); returns the metrics.

    With the training wrapper's ``position_bias`` tower (PAL), ``metrics.json`` also gets the learned
    ``position_examination`` (P(seen | position) per position), and both prediction files get
    ``prediction_logged_position`` (:data:`LOGGED_POSITION_PREDICTION`): what the position-aware training model predicts for the logged list,
    ``P(seen | logged position) * sigmoid(uncalibrated logit)``, the model that was fitted to the logged clicks."""
    raw_logits = {}
    if position_bias is not None:  # before calibration changes the ranker's logits
        raw_logits = {"valid": predict(predict_fn, valid, logits=True),
                      "test": predict(predict_fn, make_dataset(work.samples_dir, "test", ranker.config.seq_len,
                                                               train_config.eval_batch_size), logits=True)}
    calibration = calibrate(ranker, predict_fn, valid, valid_labels) if train_config.calibrate else None
    valid_frame, frame, frozen_metrics = predict_splits(ranker, predict_fn, work, valid, train_config.eval_batch_size)
    if position_bias is not None:
        examination = position_bias.examination().numpy().astype(np.float64)
        for split, split_frame in (("valid", valid_frame), ("test", frame)):
            seen = examination[np.clip(split_frame["position"].to_numpy(), 0, len(examination) - 1)]
            split_frame[LOGGED_POSITION_PREDICTION] = seen / (1.0 + np.exp(-raw_logits[split].astype(np.float64)))
        summary = {**summary, "position_examination": examination.tolist()}
    test_metrics = exact_metrics(frame["label"].to_numpy(), frame["prediction"].to_numpy())
    train_ctr = train_click_rate(work)[0]
    constant_logloss = exact_metrics(frame["label"].to_numpy(), np.full(len(frame), train_ctr))["logloss"]

    save_run(run_dir, ranker, work, train_config)
    write_parquet(run_dir / "predictions" / "valid.parquet", valid_frame)
    write_parquet(run_dir / "predictions" / "test.parquet", frame)
    metrics = {
        "model": ranker.config.name,
        "test_auc": test_metrics["auc"],
        "test_logloss": test_metrics["logloss"],
        "test_logloss_constant_ctr": constant_logloss,
        "train_ctr": train_ctr,
        "calibration": calibration,
        **frozen_metrics,
        "test_impressions": int(len(frame)),
        **summary,
    }
    write_json(run_dir / "metrics.json", metrics)
    print(f"{ranker.config.name}: test AUC {metrics['test_auc']:.4f} (exact), logloss {metrics['test_logloss']:.4f} "
          f"(constant CTR {constant_logloss:.4f}), "
          f"steady {metrics.get('steady_examples_per_second') or 0:,.0f} examples/s; run in {run_dir}")
    return metrics


def model_inputs(work: Work, model_config: ModelConfig) -> dict:
    """What :func:`make_ranker` reads from ``work``: vocabularies, their known-since days and, for a GNN, the
    neighbor history of every day."""
    return {"vocabularies": {name: work.vocabulary(name) for name in VOCABULARIES},
            "tables": {relation: work.daily_tables(relation) for relation in RELATIONS} if model_config.is_gnn else None,
            "known_since": {name: work.known_since(name) for name in VOCABULARIES}}


def compiled_model(distribution: tf.distribute.Strategy, model_config: ModelConfig, train_config: TrainConfig,
                   inputs: dict) -> tuple[DropdownRanker, CTRModel]:
    """The ranker of :func:`model_inputs` and its compiled :class:`CTRModel`, made under ``distribution``."""
    with distribution.scope():
        ranker = make_ranker(model_config, **inputs)
        model = CTRModel(ranker)
        model.compile(optimizer=make_optimizer(train_config))
        create_slots(model.optimizer, model.trainable_variables)
    return ranker, model


def predict_splits(ranker: DropdownRanker, predict_fn, work: Work, valid: tf.data.Dataset, batch_size: int) -> tuple:
    """The trained ranker's predictions: ``(valid frame, test frame, frozen-graph metrics)``.

    Validation predictions are kept for model choices, which are made on validation days. A GNN also scores the
    test days with the one snapshot an export made at the end of training would ship (``prediction_frozen``)."""
    test = make_dataset(work.samples_dir, "test", ranker.config.seq_len, batch_size)
    valid_frame = read_samples(work.samples_dir, "valid", columns=PREDICTION_COLUMNS)
    valid_frame["prediction"] = predict(predict_fn, valid)
    frame = read_samples(work.samples_dir, "test", columns=PREDICTION_COLUMNS)
    frame["prediction"] = predict(predict_fn, test)
    frozen_metrics = {}
    if ranker.config.is_gnn:
        ranker.set_graph({relation: work.daily_tables(relation).at(work.split.test_start) for relation in RELATIONS})
        frame["prediction_frozen"] = predict(predictor(ranker), test)  # traced anew: the tables may be new variables
        frozen_metrics = {"test_auc_frozen_graph": exact_metrics(frame["label"].to_numpy(), frame["prediction_frozen"].to_numpy())["auc"]}
    return valid_frame, frame, frozen_metrics


def training_input(work: Work, model_config: ModelConfig, train_config: TrainConfig, cluster: Cluster, first_epoch: int):
    """``(data, fit keyword arguments, callbacks)`` that feed ``fit`` the training split.

    One process: one pass of :class:`SampleStream` per epoch, its epoch kept equal to Keras's. Under
    a strategy: a ``DatasetCreator`` whose function gives each input pipeline its share of the
    files (``num_input_pipelines``, ``input_pipeline_id``) and of the global batch, as one stream of
    the epochs from ``first_epoch`` on; an epoch is ``ceil(rows / batch_size)`` global steps, and under
    MultiWorkerMirroredStrategy each pipeline reads its shard's pass of the epoch for them
    (``SampleStream.passes``), so a resumed run reads what an uninterrupted one would have.
    """
    samples, seq_len, batch, seed = work.samples_dir, model_config.seq_len, train_config.batch_size, train_config.seed
    if cluster.kind == "single":
        stream = SampleStream(samples, "train", seq_len, batch, shuffle=True, seed=seed)
        return stream.dataset(), {}, [StreamEpoch(stream)]

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        stream = SampleStream(samples, "train", seq_len, context.get_per_replica_batch_size(batch), shuffle=True, seed=seed,
                              num_shards=context.num_input_pipelines, shard_index=context.input_pipeline_id)
        if cluster.kind == "parameter-server":
            # Each step goes to whichever worker is free, so a worker's share of an epoch is not fixed: each reads its
            # own passes whole, one after another (repeated if it runs ahead). With one worker that is exactly the
            # epochs; with several, epochs and passes do not line up, and a resumed run restarts at its epoch's pass.
            return stream.passes(first_epoch, train_config.epochs, stream.batches).repeat()
        return stream.passes(first_epoch, train_config.epochs, steps)

    steps = math.ceil(SampleStream(samples, "train", seq_len, batch).rows / batch)
    return tf.keras.utils.experimental.DatasetCreator(dataset_fn), {"steps_per_epoch": steps}, []


def calibrate(ranker: DropdownRanker, predict_fn, valid: tf.data.Dataset, labels: np.ndarray) -> dict:
    """Fit the ranker's Platt scaling on the validation days and store it in the ranker; returns what was fitted."""
    logits = predict(predict_fn, valid, logits=True)
    before = exact_metrics(labels, 1.0 / (1.0 + np.exp(-logits)))["logloss"]
    scale, bias = fit_calibration(logits, labels)
    ranker.calibration.assign([scale, bias])
    after = exact_metrics(labels, 1.0 / (1.0 + np.exp(-(scale * logits + bias))))["logloss"]
    print(f"calibration on validation days: logit x {scale:.3f} {bias:+.3f}; validation logloss {before:.4f} -> {after:.4f}")
    return {"scale": scale, "bias": bias, "val_logloss_before": before, "val_logloss_after": after}


def counter_windows(work: Work) -> dict:
    """The look-backs of the counter inputs a run was trained with (``SampleConfig``'s defaults for older builds), and
    how much of each window (and the graph's) the training rows had (``complete``: ``build.window_coverage``)."""
    samples = {**dataclasses.asdict(SampleConfig()), **work.config["samples"]}
    return {"user_candidate_count/_age": f"the user's queries in the {samples['personal_days']:g} days before request_ts",
            "candidate_query_count/_impressions/_clicks": f"the {samples['popularity_days']} whole UTC days before the request's day",
            "personal_days": samples["personal_days"], "popularity_days": samples["popularity_days"],
            "complete": work.windows}


def save_run(run_dir: Path, ranker: DropdownRanker, work: Work, train_config: TrainConfig) -> None:
    """Config, vocabularies, the served (frozen) graph snapshot and final weights: all a run needs to be reloaded.

    The weights hold no graph (``GraphContext``): a reloaded GNN takes the run's ``graph/`` snapshot."""
    for name in VOCABULARIES:
        with atomic_path(run_dir / "vocab" / f"{name}.parquet") as tmp:
            shutil.copy2(work.path / "vocab" / f"{name}.parquet", tmp)
    if ranker.config.is_gnn:
        for relation in RELATIONS:
            work.daily_tables(relation).at(work.split.test_start).save(run_dir / "graph" / f"{relation}.npz")
    # A checkpoint is several files: write them into a staging directory, then swap it in.
    staging = run_dir / ".weights.partial"
    shutil.rmtree(staging, ignore_errors=True)
    ranker.save_weights(str(staging / "ranker"))
    shutil.rmtree(run_dir / "weights", ignore_errors=True)
    staging.rename(run_dir / "weights")
    write_json(run_dir / "config.json", {
        "model": ranker.config.to_dict(),
        "train": dataclasses.asdict(train_config),
        "work": str(work.path.resolve()),
        "work_fingerprint": work.fingerprint,
        "split": work.split.to_dict(),
        # The counters' windows are part of the serving contract: serving must send counts over the same days.
        "counter_windows": counter_windows(work),
        "versions": {"dropdown_rank": __version__, "tensorflow": tf.__version__, "python": platform.python_version()},
    })


def load_run(run_dir: str | Path, graph_dir: str | Path | None = None) -> DropdownRanker:
    """Rebuild a trained ranker from its run directory: no custom_objects, no pickled Keras model.

    ``graph_dir`` (a work directory) swaps in that build's neighbor tables instead of the run's own.
    """
    run_dir = Path(run_dir)
    config = ModelConfig.from_dict(read_json(run_dir / "config.json")["model"])
    vocabularies = {name: read_vocabulary(run_dir / "vocab", name) for name in VOCABULARIES}
    known_since = {name: read_known_since(run_dir / "vocab", name) for name in VOCABULARIES}
    tables = None
    if config.is_gnn:
        source = Work.open(graph_dir).path if graph_dir is not None else run_dir  # a whole build, not a half-written one
        tables = load_tables(source / "graph", source / "vocab")
    ranker = make_ranker(config, vocabularies, tables, known_since)
    ranker.load_weights(str(run_dir / "weights" / "ranker")).assert_existing_objects_matched()
    return ranker


def read_predictions(run_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """A run's predictions of the ``test`` or ``valid`` days (the calibrated model, rows in sample order)."""
    return pd.read_parquet(Path(run_dir) / "predictions" / f"{split}.parquet")

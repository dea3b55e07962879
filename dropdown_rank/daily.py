"""``dropdown-rank train-daily``: train a ranker one day at a time, as a daily production pipeline does.

A production ranker is retrained every day: yesterday's model, with its optimizer state, takes one
pass over the newest day of impressions. ``train_daily`` does that over a work directory's training
days: each day is one ``fit`` pass over that day's rows (:class:`dataset.DayStream`, shuffled within
the day and seeded by ``(seed, day)``), in time order; each row reads its own day's graph snapshot,
as in ``train``. After the last day the ranker is calibrated and scored on the validation and test
days exactly as ``train`` does (``train.finish_run``), so ``evaluate`` and ``export`` take a daily run
like any other. No epoch is chosen on validation: the model of the last day is the one served.

**Lineage.** ``parent`` (``--from RUN``) continues a finished daily run: its weights and optimizer
state (Adam moments and step count) are restored and the training days after its last one are
trained. ``daily.json`` records the chain (each ancestor's run directory, first and last day) and
the days this run trained; ``run.json`` binds the run to its parent (path and checkpoint). A
continuation must have the parent's model and training settings (one ``--seed`` fixes the days'
shuffles), its build's sample and graph settings, and its vocabularies, row for row: a parent and its continuation trained on the same days give exactly the
weights of one uninterrupted daily run (``tests/test_daily.py``).

**New ids.** The embedding tables have one row per id of the build's vocabularies, and a row stays
bound to its id from the first day on; a work directory with other vocabularies is refused. New ids
enter the way the lagged vocabulary admits them: every id of the build's training period has its
known-since day (``vocab.py``), and a row of an earlier day reads it as OOV, so day by day a daily
run sees ids become known as a vocabulary refreshed daily would. Growing the tables across builds
(remapping rows to a newer vocabulary) is not done: a new build trains anew.

**Resume.** After each day the ranker, the optimizer and the number of days done are checkpointed
in ``RUN/state`` (``tf.train.CheckpointManager``, whose pointer file is replaced atomically);
``daily.json`` is cut back to what the checkpoint holds. A killed run, started again with the same
command, restarts from its last finished day and ends with the weights an uninterrupted run has.

Each day's entry in ``daily.json`` gives its rows, the seconds of its ``fit`` pass, its steady
examples per second and, with ``validate_daily``, the exact validation AUC after it.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dropdown_rank._io import read_json, write_json
from dropdown_rank.cluster import resolve
from dropdown_rank.dataset import DayStream, make_dataset
from dropdown_rank.layers.time_gap import BUCKET_RULE
from dropdown_rank.logs.schema import DAY
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import (SteadyRate, TrainConfig, claim_run_dir, compiled_model, exact_metrics, finish_run, fit_to_work,
                                 fit_verbosity, flatten, make_deterministic, model_inputs, predict, predictor,
                                 refuse_old_position_tower, run_identity, saved_identity)
from dropdown_rank.workdir import Work, fingerprint, read_samples
from dropdown_rank.tables import iso_day

LOG = "daily.json"
STATE = "state"


def training_days(work: Work) -> list[int]:
    """Start of each training day (UTC), in order; a day may hold no rows."""
    return list(range(work.split.rows_start, work.split.valid_start, DAY))


def daily_train_config(train_config: TrainConfig) -> TrainConfig:
    """One pass per day and no early stopping: what a daily run's identity records of the training settings."""
    return dataclasses.replace(train_config, epochs=1, patience=0)


def vocabulary_fingerprint(path: Path) -> str:
    return fingerprint(path, ("vocab",))


def build_settings(work: Work) -> dict:
    """What a build fixes about the rows a model reads, beyond the vocabularies: sample and graph settings."""
    samples = {k: v for k, v in work.config["samples"].items() if k != "shard_rows"}  # how rows are cut into files: not what they hold
    return {"samples": samples, "graph": work.config["graph"]}


def parent_lineage(parent: Path, model_config: ModelConfig, train_config: TrainConfig, work: Work) -> dict:
    """What a continuation takes from ``parent``: its lineage, last day and state checkpoint; refuses a parent it cannot continue."""
    if not (parent / LOG).exists():
        raise ValueError(f"--from {parent}: not a daily run (no {LOG}); a continuation starts from a `train-daily` run")
    if not (parent / "metrics.json").exists():
        raise ValueError(f"--from {parent}: the run has not finished (no metrics.json); finish it first with its own command")
    refuse_old_position_tower(parent, "be continued")
    identity, log = saved_identity(parent), read_json(parent / LOG)
    wanted = json.loads(json.dumps({"model": model_config.to_dict(), "train": dataclasses.asdict(train_config),
                                    "buckets": BUCKET_RULE}))
    differs = [key for key in wanted if identity[key] != wanted[key]]
    if differs:
        raise ValueError(f"--from {parent}: trained with another {' and '.join(differs)} configuration; a continuation keeps "
                         f"the parent's (its run.json): {', '.join(f'{k}={identity[k]}' for k in differs)}")
    theirs, ours = flatten(log.get("build", {})), flatten(build_settings(work))
    differs = sorted(key for key in theirs.keys() | ours.keys() if theirs.get(key) != ours.get(key))
    if differs:
        raise ValueError(f"--from {parent}: its build made the samples or graphs differently from {work.path} (differs: "
                         f"{', '.join(differs)}); a continuation reads what its parent read")
    if log["vocabulary_fingerprint"] != vocabulary_fingerprint(work.path):
        raise ValueError(f"--from {parent}: its vocabularies differ from {work.path}'s, so its embedding rows belong to other ids; "
                         "a continuation needs the parent's build (new ids enter through the build's known-since days; "
                         "a new build trains anew)")
    checkpoint = tf.train.latest_checkpoint(str(parent / STATE))
    if checkpoint is None:
        raise ValueError(f"--from {parent}: no state checkpoint in {parent / STATE} (the weights and optimizer to continue from)")
    return {"lineage": log["lineage"] + [{"run": str(parent.resolve()), "first_day": log["days"][0]["day"], "last_day": log["last_day"]}],
            "after": log["last_day_start"], "checkpoint": checkpoint}


def days_to_train(work: Work, after: int | None, days: int | None) -> list[int]:
    remaining = [day for day in training_days(work) if after is None or day > after]
    if not remaining:
        raise ValueError(f"{work.path}: no training day after {iso_day(after)} (the parent trained through it); "
                         "the validation and test days are never trained on")
    return remaining[:days]


def train_daily(work_dir: str | Path, run_dir: str | Path, model_config: ModelConfig, train_config: TrainConfig = TrainConfig(),
                parent: str | Path | None = None, days: int | None = None, validate_daily: bool = True, verbose="auto",
                callbacks=(), deterministic: bool = True) -> dict:
    """Train ``days`` training days (default: all that are left) one pass each, from scratch or continuing ``parent``;
    returns ``metrics.json``'s content. Called again on an interrupted ``run_dir``, it resumes. Extra Keras
    ``callbacks`` run in every day's ``fit``; ``deterministic`` is ``train``'s."""
    if resolve("auto").kind != "single":
        raise ValueError("train-daily runs in one process: unset TF_CONFIG (a cluster trains with `train`)")
    if deterministic:
        make_deterministic(train_config.seed)
    work, run_dir = Work.open(work_dir), Path(run_dir)
    model_config, train_config = fit_to_work(model_config, work), daily_train_config(train_config)
    inherited = (parent_lineage(Path(parent), model_config, train_config, work) if parent is not None
                 else {"lineage": [], "after": None, "checkpoint": None})
    schedule = days_to_train(work, inherited["after"], days)
    inputs = model_inputs(work, model_config)
    valid = make_dataset(work.samples_dir, "valid", model_config.seq_len, train_config.eval_batch_size)
    valid_labels = read_samples(work.samples_dir, "valid", columns=["label"])["label"].to_numpy()
    identity = run_identity(model_config, train_config, work) | {"daily": {
        "parent": inherited["lineage"][-1]["run"] if parent is not None else None,
        "parent_checkpoint": Path(inherited["checkpoint"]).name if parent is not None else None,
        "days": [iso_day(d) for d in schedule]}}
    claim_run_dir(run_dir, identity)

    ranker, model = compiled_model(tf.distribute.get_strategy(), model_config, train_config, inputs)
    # The PAL tower lives in the training wrapper, not the ranker: checkpointed beside it, or a resumed or continued run
    # would restart it from its initial logits.
    tower = {"position_bias": model.position_bias} if model.position_bias is not None else {}
    trained = tf.train.Checkpoint(ranker=ranker, optimizer=model.optimizer, **tower)
    done = tf.Variable(0, dtype=tf.int64, trainable=False)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(trained=trained, days_done=done), str(run_dir / STATE), max_to_keep=1)
    if manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    elif inherited["checkpoint"]:
        tf.train.Checkpoint(trained=trained).restore(inherited["checkpoint"]).expect_partial().assert_existing_objects_matched()
    log_path = run_dir / LOG
    entries = read_json(log_path)["days"][:int(done.numpy())] if log_path.exists() else []
    if len(entries) < int(done.numpy()):  # the log is written before each checkpoint, so this is a damaged run
        raise ValueError(f"{run_dir}: its checkpoint holds {int(done.numpy())} day(s) but {LOG} logs {len(entries)}; "
                         f"delete {run_dir} to start over")
    if entries:
        print(f"resuming {run_dir} after {entries[-1]['day']}, its last checkpointed day")

    stream = DayStream(work.samples_dir, "train", model_config.seq_len, train_config.batch_size, train_config.seed)
    predict_fn = predictor(ranker)
    record = {"lineage": inherited["lineage"], "vocabulary_fingerprint": vocabulary_fingerprint(work.path), "build": build_settings(work)}
    print(f"train-daily {model_config.name}: {len(schedule)} day(s) from {iso_day(schedule[0])}, one pass each")
    for day_start in schedule[len(entries):]:
        entries.append(train_one_day(model, stream, day_start, callbacks, verbose))
        if validate_daily:
            entries[-1].update({f"val_{k}": v for k, v in exact_metrics(valid_labels, predict(predict_fn, valid)).items()})
        # Logged before it is checkpointed: after a kill in between, the log is cut back and the day runs again.
        write_json(log_path, {**record, "days": entries, "last_day": entries[-1]["day"], "last_day_start": day_start})
        done.assign(len(entries))
        manager.save()
        print(f"{entries[-1]['day']}: {entries[-1]['rows']:,} rows in {entries[-1]['fit_seconds']:.1f} s"
              + (f", val AUC {entries[-1]['val_auc']:.4f}" if validate_daily else ""))

    trained_rows, fit_seconds = sum(e["rows"] for e in entries), sum(e["fit_seconds"] for e in entries)
    rates = [e["steady_examples_per_second"] for e in entries if e["steady_examples_per_second"]]
    return finish_run(run_dir, ranker, predict_fn, work, train_config, valid, valid_labels, position_bias=model.position_bias,
                      summary={
        "days_run": len(entries),
        "first_day": entries[0]["day"],
        "last_day": entries[-1]["day"],
        "lineage": inherited["lineage"],
        "val_auc_per_day": [e.get("val_auc") for e in entries],
        "fit_seconds_per_day": round(fit_seconds / len(entries), 3),
        "fit_seconds_total": round(fit_seconds, 2),
        "steady_examples_per_second": round(float(np.median(rates)), 1) if rates else None,
        "train_examples": trained_rows,
    })


def train_one_day(model, stream: DayStream, day_start: int, callbacks, verbose) -> dict:
    """One ``fit`` pass over one day's rows; the day's log entry."""
    rows = stream.rows(day_start)
    entry = {"day": iso_day(day_start), "day_start": day_start, "rows": rows, "fit_seconds": 0.0, "steady_examples_per_second": None}
    if not rows:
        return entry
    rate = SteadyRate(rows, stream.batch_size)
    started = time.perf_counter()
    model.fit(stream.dataset(day_start), epochs=1, callbacks=[rate, *callbacks], verbose=fit_verbosity(verbose))
    entry["fit_seconds"] = round(time.perf_counter() - started, 3)
    entry["steady_examples_per_second"] = round(rate.rates[0], 1) if rate.rates else None
    return entry

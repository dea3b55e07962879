"""``dropdown-rank evaluate``: sliced AUC / GAUC / logloss with intervals, storage, plots.

Reads the test predictions each run wrote (``RUN/predictions/test.parquet``, exact model outputs),
adds the oracle (true click probabilities) when the work directory has ground truth, and writes
``report.json``, ``report.md`` and PNG plots to the output directory.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank._io import atomic_path, read_json, write_json
from dropdown_rank.build import Work
from dropdown_rank.dataset import make_dataset
from dropdown_rank.evaluate import plots
from dropdown_rank.evaluate.bootstrap import bootstrap_report
from dropdown_rank.evaluate.markdown import ORACLE, render
from dropdown_rank.evaluate.slices import SliceConfig, make_slices
from dropdown_rank.evaluate.storage import measure_storage, model_storage
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import load_run, read_predictions

_KEY = ["request_id", "candidate"]


def _load_runs(run_dirs):
    runs = {}
    for run_dir in map(Path, run_dirs):
        config = ModelConfig.from_dict(read_json(run_dir / "config.json")["model"])
        name = config.name if config.name not in runs else f"{config.name} ({run_dir.name})"
        runs[name] = {"dir": run_dir, "config": config, "predictions": read_predictions(run_dir)}
    return runs


def _aligned_frame(runs: dict, work: Work) -> tuple[pd.DataFrame, dict]:
    first = next(iter(runs.values()))["predictions"]
    frame = first.drop(columns="prediction")
    scores = {}
    for name, run in runs.items():
        predictions = run["predictions"]
        if len(predictions) != len(frame) or not (predictions[_KEY].to_numpy() == frame[_KEY].to_numpy()).all():
            raise ValueError(f"{run['dir']}: its test predictions are not for the same impressions as the other runs "
                             "(were they trained on different work directories?)")
        scores[name] = predictions["prediction"].to_numpy()
    truth = work.truth()
    if truth is not None:
        joined = frame[_KEY].merge(truth, on=_KEY, how="left")
        if joined["p_click"].isna().any():
            raise ValueError(f"{work.path}/truth.parquet lacks {int(joined['p_click'].isna().sum())} test impressions")
        scores[ORACLE] = joined["p_click"].to_numpy()
    return frame, scores


def attention_profile(run_dir: Path, work: Work, max_rows: int = 20000) -> dict:
    """Mean target-attention weight per history position and mean graph attention per neighbor rank.

    Means are over the positions / neighbors that exist (padding excluded), on the first
    ``max_rows`` test impressions.
    """
    ranker = load_run(run_dir)
    length = ranker.config.seq_len
    position_sum = {k: np.zeros(length) for k in ("query", "item")}
    position_n = {k: np.zeros(length) for k in ("query", "item")}
    rank_sum, rank_n = {}, {}
    for features, _ in make_dataset(work.samples_dir, "test", length, batch_size=4096).take(-(-max_rows // 4096)):
        explained = ranker.explain(features)
        for kind in ("query", "item"):
            mask = explained[f"{kind}_mask"].numpy()
            position_sum[kind] += np.where(mask, explained[f"{kind}_history_weights"].numpy(), 0.0).sum(axis=0)
            position_n[kind] += mask.sum(axis=0)
            if f"{kind}_neighbor_attention" in explained:
                attention = explained[f"{kind}_neighbor_attention"].numpy()
                present = np.concatenate([np.ones((len(attention), 1), bool), explained[f"{kind}_neighbor_mask"].numpy()], axis=1)
                rank_sum[kind] = rank_sum.get(kind, 0) + np.where(present, attention, 0.0).sum(axis=0)
                rank_n[kind] = rank_n.get(kind, 0) + present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "history_position": {k: (position_sum[k] / position_n[k]).tolist() for k in position_sum},
            "neighbor_rank": {k: (rank_sum[k] / rank_n[k]).tolist() for k in rank_sum},
        }


def evaluate(work_dir, run_dirs, out_dir, slice_config: SliceConfig = SliceConfig(), replicates: int = 1000, seed: int = 0,
             storage: bool = True, progress=print) -> dict:
    started = time.perf_counter()
    work, out_dir = Work.open(work_dir), Path(out_dir)
    runs = _load_runs(run_dirs)
    frame, scores = _aligned_frame(runs, work)
    slices, slice_info = make_slices(frame["activity"].to_numpy(), frame["candidate_pv"].to_numpy(), slice_config)
    users = pd.factorize(frame["user_id"])[0]
    progress(f"evaluate: {len(frame):,} test impressions, {len(runs)} run(s), {replicates} bootstrap replicates over users")
    clock = time.perf_counter()
    result = bootstrap_report(frame["label"].to_numpy(), users, scores, slices, replicates=replicates, seed=seed,
                              reference=ORACLE if ORACLE in scores else None)
    bootstrap_seconds = time.perf_counter() - clock

    storage_report = {}
    if storage:
        measured = measure_storage(work, {r["config"].seq_len for r in runs.values()} | {20},
                                   any(r["config"].is_gnn for r in runs.values()), out_dir / ".storage_scratch", progress)
        storage_report = {"measured": measured,
                          "models": {name: model_storage(r["config"].kind, r["config"].seq_len, measured) for name, r in runs.items()}}

    profiles = {name: attention_profile(r["dir"], work) for name, r in runs.items() if r["config"].kind == "attention"}

    report = {
        "work": str(work.path.resolve()),
        "test_period": {k: v for k, v in work.split.to_dict().items() if k.startswith("test")},
        "runs": {name: str(r["dir"]) for name, r in runs.items()},
        "model_configs": {name: r["config"].to_dict() for name, r in runs.items()},
        "slices": slice_info,
        "bootstrap": {"replicates": replicates, "seed": seed, "unit": "user", "interval": "percentile 95%",
                      "seconds": round(bootstrap_seconds, 2)},
        **result,
        "storage": storage_report,
        "attention_profiles": profiles,
        "plots": _write_plots(out_dir, result["models"], list(scores), storage_report, profiles),
    }
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json(out_dir / "report.json", report)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(render(report))
    progress(f"evaluate: report in {out_dir / 'report.md'} ({report['seconds']:.0f}s)")
    return report


def _write_plots(out_dir: Path, results: dict, models: list, storage_report: dict, profiles: dict) -> dict:
    reference = ORACLE if ORACLE in models else None
    paths = {
        "auc_by_activity": "auc_by_activity.png",
        "auc_by_pv": "auc_by_pv.png",
    }
    plots.slice_auc(results, "activity", models, out_dir / paths["auc_by_activity"], "AUC by user activity (behaviors in look-back)", reference)
    plots.slice_auc(results, "pv", models, out_dir / paths["auc_by_pv"], "AUC by candidate query PV (training impressions)", reference)
    if storage_report:
        points = [{"model": name, "bytes_per_example": s["bytes_per_example"], "auc": results[name]["all"]["all"]["auc"]}
                  for name, s in storage_report["models"].items()]
        paths["storage_vs_auc"] = "storage_vs_auc.png"
        plots.storage_vs_auc(points, out_dir / paths["storage_vs_auc"])
    for name, profile in profiles.items():
        key = f"attention_{name}"
        paths[key] = f"attention_{name.replace('*', 'star')}.png"
        plots.attention_profile(profile, name, out_dir / paths[key])
    return paths

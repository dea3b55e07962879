"""``dropdown-rank evaluate``: sliced AUC / GAUC / logloss / MRR / NDCG@10 with seed-aware intervals,
baselines, OOV shares, storage, plots.

Reads the test predictions each run wrote (``RUN/predictions/test.parquet``, exact model outputs).
Runs of the same model name (``ModelConfig.name``) are that model's training seeds and are grouped
(``bootstrap``). Beside the models it scores the baselines: the **legacy order** (score = minus the
logged position: the engine's own ranking) and, when the work directory has ground truth, the
**oracle** (true click probability ``p_click``) and the **relevance oracle** (``p_relevance``, the
click probability without the position factor). For GNN runs whose predictions carry
``prediction_frozen`` (scored with one frozen graph snapshot) it compares that with the daily
snapshots. Writes ``report.json``, ``report.md`` and PNG plots to the output directory.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank._io import atomic_path, read_json, write_json
from dropdown_rank.build import Work
from dropdown_rank.dataset import make_dataset
from dropdown_rank.evaluate import plots
from dropdown_rank.evaluate.bootstrap import Scorer, bootstrap_report
from dropdown_rank.evaluate.markdown import FROZEN, LEGACY, ORACLE, RELEVANCE, render
from dropdown_rank.evaluate.oov import oov_flags, oov_shares, read_run_vocabulary, read_test_samples
from dropdown_rank.evaluate.slices import SliceConfig, make_slices
from dropdown_rank.evaluate.storage import measure_storage, model_storage
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import load_run, read_predictions

_KEY = ["request_id", "candidate"]
BASELINES = {
    LEGACY: "score = -position: the order the legacy engine showed (baseline)",
    ORACLE: "true click probability p_click, position effect included (ceiling)",
    RELEVANCE: "true click probability without the position factor, p_relevance (ceiling for a position-free ranker)",
}


def _load_runs(run_dirs, work: Work) -> dict:
    """``{run key: {dir, config, name, seed, predictions}}``; runs with the same model name are seeds of one model.

    Every run must have been trained on ``work``'s data (its recorded fingerprint): a report must not
    name one work directory's periods and hold another's metrics."""
    runs = {}
    for run_dir in map(Path, run_dirs):
        saved = read_json(run_dir / "config.json")
        if saved.get("work_fingerprint") != work.fingerprint:
            raise ValueError(f"{run_dir} was trained on another work directory ({saved.get('work', '?')}, data fingerprint "
                             f"{str(saved.get('work_fingerprint'))[:12]}) than {work.path} (fingerprint {work.fingerprint[:12]}); "
                             "evaluate it with the work directory it was trained on")
        config = ModelConfig.from_dict(saved["model"])
        seed = saved.get("train", {}).get("seed")
        key = f"{config.name} [seed {seed}]"
        if key in runs:
            key = f"{config.name} [seed {seed}, {run_dir}]"
        runs[key] = {"dir": run_dir, "config": config, "name": config.name, "seed": seed, "predictions": read_predictions(run_dir)}
    return runs


def _same_impressions(frame: pd.DataFrame, other: pd.DataFrame, what: str) -> None:
    if len(other) != len(frame) or not (other[_KEY].to_numpy() == frame[_KEY].to_numpy()).all():
        raise ValueError(f"{what}: not the same test impressions in the same order as the first run's predictions "
                         "(were the runs trained on different work directories?)")


def _aligned_frame(runs: dict, work: Work, samples) -> tuple[pd.DataFrame, dict]:
    """The test impressions (with ``position``) and every scorer: each run, frozen-graph variants, baselines."""
    first = next(iter(runs.values()))["predictions"]
    frame = first.drop(columns=[c for c in ("prediction", "prediction_frozen") if c in first])
    scorers, names = {}, {}
    for key, run in runs.items():
        predictions = run["predictions"]
        _same_impressions(frame, predictions, str(run["dir"]))
        names.setdefault(run["name"], []).append(key)
        scorers[key] = Scorer(run["name"], predictions["prediction"].to_numpy(np.float64), seed=run["seed"])
        if "position" not in frame and "position" in predictions:
            frame["position"] = predictions["position"].to_numpy()
    for name, keys in names.items():  # daily vs frozen graph: only when every seed has both
        if all("prediction_frozen" in runs[k]["predictions"] for k in keys):
            for k in keys:
                scorers[f"{k} {FROZEN}"] = Scorer(f"{name} {FROZEN}", runs[k]["predictions"]["prediction_frozen"].to_numpy(np.float64),
                                                  seed=runs[k]["seed"], slices=("all",))
    if "position" not in frame:  # older runs: the logged position from the test samples (same row order, checked)
        frame["position"] = samples.column("position").to_numpy()
    scorers[LEGACY] = Scorer(LEGACY, -frame["position"].to_numpy(np.float64), probability=False)
    truth = work.truth()
    if truth is not None:
        joined = frame[_KEY].merge(truth, on=_KEY, how="left")
        if joined["p_click"].isna().any():
            raise ValueError(f"{work.path}/truth.parquet lacks {int(joined['p_click'].isna().sum())} test impressions")
        scorers[ORACLE] = Scorer(ORACLE, joined["p_click"].to_numpy(np.float64))
        if "p_relevance" in joined:
            scorers[RELEVANCE] = Scorer(RELEVANCE, joined["p_relevance"].to_numpy(np.float64), probability=False)
    return frame, scorers


def _pairs(models: list, scorers: dict) -> list:
    """Every model pair; each model against the legacy order; the oracles against each model; daily vs frozen graph."""
    groups = {s.group for s in scorers.values()}
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    pairs += [(m, LEGACY) for m in models]
    pairs += [(ceiling, m) for ceiling in (ORACLE, RELEVANCE) if ceiling in groups for m in models + [LEGACY]]
    pairs += [(m, f"{m} {FROZEN}", "same_seed") for m in models if f"{m} {FROZEN}" in groups]
    return pairs


def _oov(runs: dict, samples, slices: dict) -> list:
    """OOV shares per slice for each distinct (vocabulary, L) among the runs."""
    groups = {}
    for key, run in runs.items():
        digest = hashlib.sha1(b"".join((run["dir"] / "vocab" / f"{n}.parquet").read_bytes() for n in ("users", "queries", "items"))).hexdigest()
        group = groups.setdefault((digest, run["config"].seq_len), {"models": [], "runs": [], "seq_len": run["config"].seq_len, "dir": run["dir"]})
        if run["name"] not in group["models"]:
            group["models"].append(run["name"])
        group["runs"].append(str(run["dir"]))
    vocabularies, out = {}, []
    for (digest, seq_len), group in groups.items():
        if digest not in vocabularies:
            vocabularies[digest] = read_run_vocabulary(group["dir"])
        vocabulary = vocabularies[digest]
        flags = oov_flags(samples, vocabulary, seq_len)
        out.append({"models": group["models"], "runs": group["runs"], "seq_len": seq_len, "vocabulary": digest[:12],
                    "vocabulary_sizes": {k: len(v) for k, v in vocabulary.items()}, "shares": oov_shares(flags, slices)})
    return out


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


def _graph_snapshots(work: Work):
    """How many daily snapshots the work directory's graph files hold, when ``stats.json`` says so."""
    path = work.path / "stats.json"
    graph = read_json(path).get("graph", {}) if path.exists() else {}
    per_relation = {r: v["snapshots"] for r, v in graph.items() if isinstance(v, dict) and "snapshots" in v}
    return per_relation or None


def evaluate(work_dir, run_dirs, out_dir, slice_config: SliceConfig = SliceConfig(), replicates: int = 1000, seed: int = 0,
             storage: bool = True, progress=print) -> dict:
    started = time.perf_counter()
    work, out_dir = Work.open(work_dir), Path(out_dir)
    runs = _load_runs(run_dirs, work)
    samples = read_test_samples(work.samples_dir, ["request_id", "candidate", "user_id", "position", "query_history", "item_history"])
    _same_impressions(next(iter(runs.values()))["predictions"], samples.select(_KEY).to_pandas(), f"{work.samples_dir}/test")
    frame, scorers = _aligned_frame(runs, work, samples)
    slices, slice_info = make_slices(frame["activity"].to_numpy(), frame["candidate_pv"].to_numpy(), slice_config)
    users = pd.factorize(frame["user_id"])[0]
    requests = pd.factorize(frame["request_id"])[0]
    models = list(dict.fromkeys(r["name"] for r in runs.values()))
    seeds = {m: [r["seed"] for r in runs.values() if r["name"] == m] for m in models}
    progress(f"evaluate: {len(frame):,} test impressions, {len(models)} model(s), {len(runs)} run(s) "
             f"(seeds per model: {', '.join(f'{m} {len(s)}' for m, s in seeds.items())}), {replicates} bootstrap replicates over users")
    result = bootstrap_report(frame["label"].to_numpy(), users, scorers, slices, replicates=replicates, seed=seed,
                              requests=requests, pairs=_pairs(models, scorers))
    oov = _oov(runs, samples, slices)

    storage_report = {}
    if storage:
        configs = {r["name"]: r["config"] for r in runs.values()}
        measured = measure_storage(work, {c.seq_len for c in configs.values()} | {20}, any(c.is_gnn for c in configs.values()),
                                   out_dir / ".storage_scratch", progress)
        measured["graph_snapshots"] = _graph_snapshots(work)
        storage_report = {"measured": measured, "models": {m: model_storage(c.kind, c.seq_len, measured) for m, c in configs.items()}}

    first_run = {m: next(r for r in runs.values() if r["name"] == m) for m in models}
    profiles = {m: attention_profile(r["dir"], work) for m, r in first_run.items() if r["config"].kind == "attention"}
    groups = {s.group for s in scorers.values()}
    report = {
        "work": str(work.path.resolve()),
        "test_period": {k: v for k, v in work.split.to_dict().items() if k.startswith("test")},
        "runs": {m: [str(r["dir"]) for r in runs.values() if r["name"] == m] for m in models},
        "seeds": seeds,
        "model_configs": {m: r["config"].to_dict() for m, r in first_run.items()},
        "baselines": {b: d for b, d in BASELINES.items() if b in groups},
        "frozen_graph": [m for m in models if f"{m} {FROZEN}" in groups],
        "slices": slice_info,
        "bootstrap": {"replicates": replicates, "seed": seed, "unit": "user", "interval": "percentile 95%",
                      "seconds": result.pop("seconds"), "minimums": result.pop("minimums")},
        **result,
        "oov": oov,
        "storage": storage_report,
        "attention_profiles": profiles,
    }
    report["plots"] = _write_plots(out_dir, result["models"], models, storage_report, profiles)
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json(out_dir / "report.json", report)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(render(report))
    progress(f"evaluate: report in {out_dir / 'report.md'} ({report['seconds']:.0f}s)")
    return report


def _write_plots(out_dir: Path, results: dict, models: list, storage_report: dict, profiles: dict) -> dict:
    references = [b for b in (LEGACY, ORACLE, RELEVANCE) if b in results]
    paths = {"auc_by_activity": "auc_by_activity.png", "auc_by_pv": "auc_by_pv.png"}
    plots.slice_auc(results, "activity", models, out_dir / paths["auc_by_activity"], "AUC by user activity (behaviors in look-back)", references)
    plots.slice_auc(results, "pv", models, out_dir / paths["auc_by_pv"], "AUC by candidate query PV (training impressions)", references)
    if storage_report:
        points = [{"model": name, "bytes_per_example": s["bytes_per_example"], "auc": results[name]["all"]["all"]["auc"]}
                  for name, s in storage_report["models"].items()]
        legacy = results.get(LEGACY, {}).get("all", {}).get("all", {}).get("auc")
        paths["storage_vs_auc"] = "storage_vs_auc.png"
        plots.storage_vs_auc(points, out_dir / paths["storage_vs_auc"], legacy)
    for name, profile in profiles.items():
        key = f"attention_{name}"
        paths[key] = f"attention_{name.replace('*', 'star').replace('+', '_')}.png"
        plots.attention_profile(profile, name, out_dir / paths[key])
    return paths

"""``dropdown-rank evaluate``: sliced AUC / GAUC / logloss / MRR / NDCG@10 with seed-aware intervals,
baselines, OOV shares, storage, plots.

Describes one split, ``test`` (the default) or ``valid`` (``split=``): it reads the predictions each run
wrote for it (``RUN/predictions/<split>.parquet``, exact model outputs) and the work directory's
``<split>`` samples, and every table, baseline, slice and OOV share is of those days; the report
names the split and its period. Model choices are made on ``valid``: the test days are then not read.
Runs of the same model name (``ModelConfig.name``) are that model's training seeds and are grouped
(``bootstrap``). Beside the models it scores the baselines: the **legacy order** (score = minus the
logged position: the engine's own ranking); the **personal count** (the user's own past queries of
the candidate, ``user_candidate_count``, then the legacy order: the heuristic a model must beat to
be worth its history; skipped for work directories whose samples lack the column); the **constant
CTR** (the training split's click rate for every impression, whichever split is evaluated: the logloss a
calibrated model must beat); and, when the work directory has ground truth, the **oracle** (true click probability
``p_click``) and the **relevance oracle** (``p_relevance``, the click probability without the
position factor). For GNN runs whose predictions carry
``prediction_frozen`` (scored with one frozen graph snapshot; only the test predictions do) it compares
that with the daily snapshots. Writes ``report.json``, ``report.md`` and PNG plots to the output directory.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dropdown_rank._io import atomic_path, read_json, write_json
from dropdown_rank.daily import LOG as DAILY_LOG
from dropdown_rank.workdir import Work, samples_fingerprint
from dropdown_rank.dataset import make_dataset
from dropdown_rank.evaluate import plots
from dropdown_rank.evaluate.bootstrap import Scorer, bootstrap_report
from dropdown_rank.evaluate.markdown import (CONSTANT, FROZEN, LEGACY, WITH_POSITION, ONLINE_SLICES, ORACLE, PERSONAL, RANDOM, RELEVANCE, SPLIT_LABEL,
                                             render)
from dropdown_rank.evaluate.online import ClickModel, position_factor
from dropdown_rank.evaluate.oov import oov_flags, oov_shares, read_run_vocabulary, read_split_samples
from dropdown_rank.evaluate.slices import SliceConfig, candidate_degree, candidate_freshness, make_slices
from dropdown_rank.evaluate.storage import measure_storage, model_storage
from dropdown_rank.model import ModelConfig
from dropdown_rank.workdir import shard_files
from dropdown_rank.split import TimeSplit
from dropdown_rank.train import LOGGED_POSITION_PREDICTION, load_run, read_predictions, train_click_rate

_KEY = ["request_id", "candidate"]
PERSONAL_COUNT = "user_candidate_count"
SPLITS = tuple(SPLIT_LABEL)  # the splits a report can describe: "test", "valid"
# Each split's half-open period [start, end) in the work directory's TimeSplit.
_PERIOD_FIELDS = {"test": ("test_start", "test_end"), "valid": ("valid_start", "test_start")}
BASELINES = {
    LEGACY: "score = -position: the order the legacy engine showed (baseline)",
    PERSONAL: "how often the user queried the candidate in the look-back window before the request, descending, ties by "
              "position (baseline; a ranking, no logloss)",
    CONSTANT: "the training split's click rate for every impression (baseline for logloss; AUC 0.5 by construction)",
    ORACLE: "true click probability p_click, position effect included (ceiling)",
    RELEVANCE: "true click probability without the position factor, p_relevance (ceiling for a position-free ranker)",
    RANDOM: "uniform random scores, seeded by the report's --seed (what an order that knows nothing earns in the simulated A/B test)",
}
LOGGED_POSITION_SLICES = ("all", "activity", "request_kind")  # where a PAL model is compared with the legacy order on its terms
NO_TRUTH = ("the log has no ground truth (no truth.parquet with p_relevance: only synthetic worlds have one), so the expected "
            "clicks of another order cannot be computed; only logged-click metrics are reported")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in SPLITS)}, not {split!r}")
    return split


def split_period(time_split: TimeSplit, split: str) -> dict:
    """``{<split>_start, <split>_end}`` (half-open, seconds) and their ``_iso`` forms, from the work directory's time split."""
    periods = time_split.to_dict()
    start, end = _PERIOD_FIELDS[split]
    return {f"{split}_start": periods[start], f"{split}_end": periods[end],
            f"{split}_start_iso": periods[f"{start}_iso"], f"{split}_end_iso": periods[f"{end}_iso"]}


def _load_runs(run_dirs, work: Work, split: str = "test") -> dict:
    """``{run key: {dir, config, name, seed, predictions}}``; runs with the same model name are seeds of one model
    (a ``train-daily`` run's name ends in `` [daily FIRST..LAST]``, the days its chain of runs trained).

    ``predictions`` are the run's predictions of ``split`` (``RUN/predictions/<split>.parquet``). Every
    run must have been trained on ``work``'s data (its recorded fingerprint), or on a build with the same
    samples and vocabularies and another graph (:func:`_other_graph`; ``graph`` names what differs): a
    report must not name one work directory's periods and hold another's metrics."""
    runs, same_samples = {}, {}
    for run_dir in map(Path, run_dirs):
        saved = read_json(run_dir / "config.json")
        graph = None
        if saved.get("work_fingerprint") != work.fingerprint:
            graph = _other_graph(run_dir, saved, work, same_samples)
        if not (run_dir / "predictions" / f"{split}.parquet").exists():
            why = ("trained by an older dropdown_rank, before runs wrote their validation-day predictions, or unfinished"
                   if split == "valid" else "an unfinished run")
            raise FileNotFoundError(f"{run_dir}: no predictions/{split}.parquet ({why}), so it cannot be evaluated on the "
                                    f"{SPLIT_LABEL[split]} days; retrain it with `dropdown-rank train`")
        config = ModelConfig.from_dict(saved["model"])
        name = config.name if graph is None else f"{config.name} [graph {graph}]"
        if (run_dir / DAILY_LOG).exists():  # trained day by day: another model than the epochs run, and per span of days
            log = read_json(run_dir / DAILY_LOG)
            name += f" [daily {(log['lineage'] or log['days'])[0].get('first_day') or log['days'][0]['day']}..{log['last_day']}]"
        seed = saved.get("train", {}).get("seed")
        key = f"{name} [seed {seed}]"
        if key in runs:
            key = f"{name} [seed {seed}, {run_dir}]"
        runs[key] = {"dir": run_dir, "config": config, "name": name, "seed": seed, "graph": graph,
                     "predictions": read_predictions(run_dir, split)}
    return runs


def _other_graph(run_dir: Path, saved: dict, work: Work, same_samples: dict) -> str:
    """For a run trained on another build that has ``work``'s samples and vocabularies and another graph (a graph
    lever, compared paired in one report): the graph settings that differ, as ``key=value,...``. Any other run
    of another work directory is refused: a report must not name one work directory's periods and hold another's metrics."""
    own = Path(saved.get("work", ""))
    if saved.get("work") and (own / "build.json").exists() and Work.open(own).fingerprint == saved.get("work_fingerprint"):
        for path in (work.path, own):
            if path not in same_samples:
                same_samples[path] = samples_fingerprint(path)
        if same_samples[own] == same_samples[work.path]:
            theirs, ours = Work.open(own).config["graph"], work.config["graph"]
            return ",".join(f"{k}={v}" for k, v in theirs.items() if ours.get(k) != v) or "rebuilt"
    raise ValueError(f"{run_dir} was trained on another work directory ({saved.get('work', '?')}, data fingerprint "
                     f"{str(saved.get('work_fingerprint'))[:12]}) than {work.path} (fingerprint {work.fingerprint[:12]}), and "
                     "that directory does not hold the same samples and vocabularies with another graph; evaluate it with the "
                     "work directory it was trained on")


def _same_impressions(frame: pd.DataFrame, other: pd.DataFrame, what: str, split: str = "test") -> None:
    if len(other) != len(frame) or not (other[_KEY].to_numpy() == frame[_KEY].to_numpy()).all():
        raise ValueError(f"{what}: not the same {SPLIT_LABEL[split]} impressions in the same order as the first run's predictions "
                         "(were the runs trained on different work directories?)")


def personal_scores(count: np.ndarray, position: np.ndarray) -> np.ndarray:
    """The personal-count heuristic's scores: ``count * (max position + 1) - position``.

    One more past query of the candidate outranks any position, and equal counts keep the logged
    order, so within a request this is the sort by (count descending, position ascending)."""
    position = np.asarray(position, dtype=np.float64)
    return np.asarray(count, dtype=np.float64) * (position.max() + 1) - position


def _sample_columns(work: Work, split: str, wanted: list, optional: list) -> list:
    """``wanted`` and those of ``optional`` the ``split`` samples hold (older work directories lack newer columns)."""
    names = set(pq.read_schema(shard_files(work.samples_dir, split)[0]).names)
    return wanted + [c for c in optional if c in names]


def _degree(work: Work, samples) -> tuple[np.ndarray, int]:
    """Each evaluated row's candidate q2q degree in its snapshot (``slices.candidate_degree``) and the graph's K.

    A function of its own so that the daily tables are freed once the degrees are known."""
    tables = work.daily_tables("q2q")
    degree = candidate_degree(samples.column("candidate").to_numpy(), samples.column("request_ts").to_numpy(), tables)
    return degree, int(tables.ids.shape[1])


def _aligned_frame(runs: dict, work: Work, samples, click_rate: float, split: str = "test",
                   seed: int = 0) -> tuple[pd.DataFrame, dict, ClickModel | None]:
    """The ``split`` impressions (with ``position``), every scorer (each run, frozen-graph variants, baselines) and,
    on a world with ground truth, its click model (``online.ClickModel``) for the simulated A/B test.

    ``samples`` are the ``split`` samples in the predictions' row order; ``click_rate`` is the constant
    CTR's probability (:func:`train_click_rate`, the training split's whatever ``split`` is)."""
    first = next(iter(runs.values()))["predictions"]
    frame = first.drop(columns=[c for c in ("prediction", "prediction_frozen", LOGGED_POSITION_PREDICTION) if c in first])
    scorers, names = {}, {}
    for key, run in runs.items():
        predictions = run["predictions"]
        _same_impressions(frame, predictions, str(run["dir"]), split)
        names.setdefault(run["name"], []).append(key)
        scorers[key] = Scorer(run["name"], predictions["prediction"].to_numpy(np.float64), seed=run["seed"])
        if "position" not in frame and "position" in predictions:
            frame["position"] = predictions["position"].to_numpy()
    for name, keys in names.items():  # daily vs frozen graph: only when every seed has both (test predictions only)
        if all("prediction_frozen" in runs[k]["predictions"] for k in keys):
            for k in keys:
                scorers[f"{k} {FROZEN}"] = Scorer(f"{name} {FROZEN}", runs[k]["predictions"]["prediction_frozen"].to_numpy(np.float64),
                                                  seed=runs[k]["seed"], slices=("all",))
    for name, keys in names.items():  # PAL: the training model's prediction of the logged list, beside the legacy order
        if all(LOGGED_POSITION_PREDICTION in runs[k]["predictions"] for k in keys):
            for k in keys:
                scorers[f"{k} {WITH_POSITION}"] = Scorer(f"{name} {WITH_POSITION}",
                                                         runs[k]["predictions"][LOGGED_POSITION_PREDICTION].to_numpy(np.float64),
                                                         seed=runs[k]["seed"], slices=LOGGED_POSITION_SLICES, online=False)
    if "position" not in frame:  # older runs: the logged position from the samples (same row order, checked)
        frame["position"] = samples.column("position").to_numpy()
    scorers[LEGACY] = Scorer(LEGACY, -frame["position"].to_numpy(np.float64), probability=False)
    if PERSONAL_COUNT in samples.column_names:
        scorers[PERSONAL] = Scorer(PERSONAL, personal_scores(samples.column(PERSONAL_COUNT).to_numpy(), frame["position"].to_numpy()),
                                   probability=False)
    scorers[CONSTANT] = Scorer(CONSTANT, np.full(len(frame), click_rate))
    truth, click_model = work.truth(), None
    if truth is not None:
        joined = frame[_KEY].merge(truth, on=_KEY, how="left")
        if joined["p_click"].isna().any():
            raise ValueError(f"{work.path}/truth.parquet lacks {int(joined['p_click'].isna().sum())} {SPLIT_LABEL[split]} impressions")
        scorers[ORACLE] = Scorer(ORACLE, joined["p_click"].to_numpy(np.float64))
        if "p_relevance" in joined:
            relevance = joined["p_relevance"].to_numpy(np.float64)
            scorers[RELEVANCE] = Scorer(RELEVANCE, relevance, probability=False)
            factor = position_factor(joined["p_click"].to_numpy(np.float64), relevance, frame["position"].to_numpy())
            click_model = ClickModel(relevance, factor)
            scorers[RANDOM] = Scorer(RANDOM, np.random.default_rng(seed).random(len(frame)), probability=False)
    return frame, scorers, click_model


def _pairs(models: list, scorers: dict) -> list:
    """Every model pair; each model against the legacy order, the personal count and the constant CTR; the oracles
    against each model; daily vs frozen graph."""
    groups = {s.group for s in scorers.values()}
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    pairs += [(m, baseline) for baseline in (LEGACY, PERSONAL, CONSTANT) if baseline in groups for m in models]
    pairs += [(ceiling, m) for ceiling in (ORACLE, RELEVANCE) if ceiling in groups for m in models + [LEGACY]]
    pairs += [(m, f"{m} {FROZEN}", "same_seed") for m in models if f"{m} {FROZEN}" in groups]
    pairs += [(f"{m} {WITH_POSITION}", b) for m in models if f"{m} {WITH_POSITION}" in groups for b in (LEGACY,) if b in groups]
    pairs += [(f"{m} {WITH_POSITION}", m, "same_seed") for m in models if f"{m} {WITH_POSITION}" in groups]
    pairs += [(b, LEGACY) for b in (PERSONAL, RANDOM) if b in groups]
    return pairs


def _run_metrics(run: dict) -> dict:
    """A run's ``metrics.json`` ({} for a run directory holding only its predictions)."""
    path = run["dir"] / "metrics.json"
    return read_json(path) if path.exists() else {}


def _in_sample(runs: dict) -> dict:
    """The models whose epoch was chosen (``best_epoch``: not a daily run) and whose calibration was fitted on the
    validation days (``metrics.json``)."""
    chosen, calibrated = [], []
    for run in runs.values():
        metrics = _run_metrics(run)
        if metrics.get("best_epoch") is not None and run["name"] not in chosen:
            chosen.append(run["name"])
        if metrics.get("calibration") and run["name"] not in calibrated:
            calibrated.append(run["name"])
    return {"epoch_chosen": chosen, "calibrated": calibrated}


def _position_bias(runs: dict, positions: int, click_model: ClickModel | None) -> dict:
    """Per PAL model, each seed's learned P(seen | position) (``metrics.json``) at the ``positions`` the evaluated lists
    have (the tower's other buckets never had a gradient), and the world's position factor when the log has one; empty
    without a PAL run."""
    curves = {}
    for run in runs.values():
        examination = _run_metrics(run).get("position_examination")
        if examination is not None:
            positions = min(positions, len(examination))  # lists longer than the tower's buckets share its last one
            entry = curves.setdefault(run["name"], {"seeds": [], "per_seed": []})
            entry["seeds"].append(run["seed"])
            entry["per_seed"].append(examination)
    if not curves:
        return {}
    for entry in curves.values():
        entry["per_seed"] = [examination[:positions] for examination in entry["per_seed"]]
    world = None if click_model is None else np.asarray(click_model.factor, dtype=np.float64)[:positions].tolist()
    return {"models": curves, "world": world, "positions": positions}


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


def attention_profile(run_dir: Path, work: Work, max_rows: int = 20000, split: str = "test") -> dict:
    """Mean target-attention weight per history position and mean graph attention per neighbor rank.

    Means are over the positions / neighbors that exist (padding excluded), on the first
    ``max_rows`` impressions of ``split``.
    """
    ranker = load_run(run_dir)
    length = ranker.config.seq_len
    position_sum = {k: np.zeros(length) for k in ("query", "item")}
    position_n = {k: np.zeros(length) for k in ("query", "item")}
    rank_sum, rank_n = {}, {}
    for features, _ in make_dataset(work.samples_dir, split, length, batch_size=4096).take(-(-max_rows // 4096)):
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
             storage: bool = True, progress=print, split: str = "test") -> dict:
    """The report of ``run_dirs`` on the ``split`` days (``"test"``, or ``"valid"`` for model choices) in ``out_dir``."""
    started = time.perf_counter()
    label = SPLIT_LABEL[check_split(split)]
    work, out_dir = Work.open(work_dir), Path(out_dir)
    runs = _load_runs(run_dirs, work, split)
    samples = read_split_samples(work.samples_dir, split, _sample_columns(
        work, split, ["request_id", "candidate", "user_id", "request_ts", "position", "query_history", "item_history"], [PERSONAL_COUNT]))
    _same_impressions(next(iter(runs.values()))["predictions"], samples.select(_KEY).to_pandas(), f"{work.samples_dir}/{split}", split)
    click_rate, train_impressions = train_click_rate(work)
    frame, scorers, click_model = _aligned_frame(runs, work, samples, click_rate, split, seed)
    # A run of another graph build read other neighbors: the degree slice (of this work's graph) and the storage
    # (of this work's files) would misstate it, so a report holding one has neither.
    other_graphs = sorted({r["name"] for r in runs.values() if r["graph"] is not None})
    degree, neighbors = (None, None) if other_graphs else _degree(work, samples)
    if other_graphs and storage:
        progress(f"evaluate: no storage section and no degree slice: {', '.join(other_graphs)} read another build's graph")
        storage = False
    users = pd.factorize(frame["user_id"])[0]
    requests = pd.factorize(frame["request_id"])[0]
    personal = samples.column(PERSONAL_COUNT).to_numpy() if PERSONAL_COUNT in samples.column_names else None
    freshness = candidate_freshness(samples.column("candidate").to_numpy(), samples.column("request_ts").to_numpy(), work.vocabulary("queries"),
                                    work.known_since("queries"), slice_config.fresh_days)
    slices, slice_info = make_slices(frame["activity"].to_numpy(), frame["candidate_pv"].to_numpy(), slice_config, degree, neighbors,
                                     split_label=label, users=users, requests=requests, labels=frame["label"].to_numpy(),
                                     personal_count=personal, freshness=freshness)
    models = list(dict.fromkeys(r["name"] for r in runs.values()))
    seeds = {m: [r["seed"] for r in runs.values() if r["name"] == m] for m in models}
    progress(f"evaluate: {len(frame):,} {label} impressions, {len(models)} model(s), {len(runs)} run(s) "
             f"(seeds per model: {', '.join(f'{m} {len(s)}' for m, s in seeds.items())}), {replicates} bootstrap replicates over users")
    result = bootstrap_report(frame["label"].to_numpy(), users, scorers, slices, replicates=replicates, seed=seed,
                              requests=requests, pairs=_pairs(models, scorers), online=click_model,
                              positions=frame["position"].to_numpy(), lift=(LEGACY, RELEVANCE), online_slices=ONLINE_SLICES)
    oov = _oov(runs, samples, slices)

    storage_report = {}
    if storage:
        configs = {r["name"]: r["config"] for r in runs.values()}
        measured = measure_storage(work, {c.seq_len for c in configs.values()} | {20}, any(c.is_gnn for c in configs.values()),
                                   out_dir / ".storage_scratch", progress)
        measured["graph_snapshots"] = _graph_snapshots(work)
        storage_report = {"measured": measured, "models": {m: model_storage(c.kind, c.seq_len, measured) for m, c in configs.items()}}

    first_run = {m: next(r for r in runs.values() if r["name"] == m) for m in models}
    profiles = {m: attention_profile(r["dir"], work, split=split) for m, r in first_run.items() if r["config"].kind == "gat"}
    groups = {s.group for s in scorers.values()}
    report = {
        "work": str(work.path.resolve()),
        "split": split,
        f"{split}_period": split_period(work.split, split),
        "runs": {m: [str(r["dir"]) for r in runs.values() if r["name"] == m] for m in models},
        "seeds": seeds,
        "model_configs": {m: r["config"].to_dict() for m, r in first_run.items()},
        "baselines": {b: d for b, d in BASELINES.items() if b in groups},
        "baselines_skipped": {} if PERSONAL in groups else
        {PERSONAL: f"the {label} samples have no {PERSONAL_COUNT} column (a work directory built before it existed; rebuild)"},
        "constant_ctr": {"train_click_rate": click_rate, "train_impressions": train_impressions},
        "frozen_graph": [m for m in models if f"{m} {FROZEN}" in groups],
        "other_graph_builds": {m: str(next(r["dir"] for r in runs.values() if r["name"] == m)) for m in other_graphs},
        "online": ({"computed": True, "position_factor": click_model.factor.tolist(), "reference": LEGACY, "ceiling": RELEVANCE}
                   if click_model is not None else {"computed": False, "why": NO_TRUTH}),
        "slices": slice_info,
        "bootstrap": {"replicates": replicates, "seed": seed, "unit": "user", "interval": "percentile 95%",
                      "seconds": result.pop("seconds"), "minimums": result.pop("minimums")},
        **result,
        "oov": oov,
        "storage": storage_report,
        "attention_profiles": profiles,
        "position_bias": _position_bias(runs, int(frame["position"].max()) + 1, click_model),
        "in_sample": _in_sample(runs) if split == "valid" else None,
    }
    report["plots"] = _write_plots(out_dir, result["models"], models, storage_report, profiles, label)
    if click_model is not None:
        report["plots"].update(_online_plot(out_dir, report, models))
    if report["position_bias"]:
        report["plots"]["position_examination"] = "position_examination.png"
        plots.examination_curves({m: c["per_seed"] for m, c in report["position_bias"]["models"].items()},
                                 report["position_bias"]["world"], out_dir / "position_examination.png")
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json(out_dir / "report.json", report)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(render(report))
    progress(f"evaluate: report in {out_dir / 'report.md'} ({report['seconds']:.0f}s)")
    return report


SLICE_PLOTS = {"activity": "AUC by user activity (behaviors in look-back)",
               "request_kind": "AUC by request kind (clicked candidate issued by the user before or not)",
               "candidate_novelty": "AUC by candidate novelty (issued by the user before or not)",
               "freshness": "AUC by candidate freshness (when it entered the query vocabulary)",
               "pv": "AUC by candidate query PV (training impressions)",
               "degree": "AUC by candidate neighbor degree (q2q, the row's snapshot)"}


def _online_plot(out_dir: Path, report: dict, models: list) -> dict:
    """Expected-click lift over the legacy order by activity bucket, for the models and the non-legacy references."""
    per_bucket = report["models"][models[0]]["activity"]
    buckets = [b for b, e in per_bucket.items() if "expected_clicks" in e]
    scorers = models + [b for b in (PERSONAL, RANDOM, RELEVANCE) if b in report["models"]]
    lifts = {m: [next((p.get("expected_clicks_lift") for p in report["pairs"] if (p["a"], p["b"], p["slice"], p["bucket"]) ==
                       (m, LEGACY, "activity", b)), None) for b in buckets] for m in scorers}
    plots.online_lift(lifts, buckets, [per_bucket[b]["requests"] for b in buckets], out_dir / "online_lift_by_activity.png",
                      "Simulated A/B: expected-click lift over the legacy order, by user activity")
    return {"online_lift_by_activity": "online_lift_by_activity.png"}


def _write_plots(out_dir: Path, results: dict, models: list, storage_report: dict, profiles: dict, split_label: str = "test") -> dict:
    # The constant CTR is not drawn: its AUC is 0.5 by construction.
    references = [b for b in (LEGACY, PERSONAL, ORACLE, RELEVANCE) if b in results]
    paths = {}
    for slice_name, title in SLICE_PLOTS.items():
        if slice_name in results[models[0]]:
            paths[f"auc_by_{slice_name}"] = f"auc_by_{slice_name}.png"
            plots.slice_auc(results, slice_name, models, out_dir / paths[f"auc_by_{slice_name}"], title, references, split_label)
    if storage_report:
        points = [{"model": name, "bytes_per_example": s["bytes_per_example"], "auc": results[name]["all"]["all"]["auc"]}
                  for name, s in storage_report["models"].items()]
        baselines = {b: results[b]["all"]["all"].get("auc") for b in (LEGACY, PERSONAL) if b in results}
        paths["storage_vs_auc"] = "storage_vs_auc.png"
        plots.storage_vs_auc(points, out_dir / paths["storage_vs_auc"], baselines, split_label)
    for name, profile in profiles.items():
        key = f"attention_{name}"
        paths[key] = f"attention_{name.replace('*', 'star').replace('+', '_')}.png"
        plots.attention_profile(profile, name, out_dir / paths[key])
    return paths

"""``dropdown-rank build``: validated logs → time split → vocabularies → neighbor tables → samples.

Writes a work directory:

* ``build.json``: the configuration, the split periods and the logs it came from;
* ``stats.json``: validation reports, graph size and degree distribution, sample counts, stage
  timings and peak memory;
* ``vocab/{users,queries,items}.parquet`` (token, count, known_since);
* ``graph/{q2q,i2i}.npz``: one neighbor-table snapshot per day with samples, plus the day after the
  log (``graph.py``);
* ``samples/{train,valid,test}/part-*.parquet``;
* ``truth.parquet`` when the logs carry ground truth (synthetic worlds).

``workdir.py`` reads it back (:class:`~dropdown_rank.workdir.Work`), for every later stage.
"""
from __future__ import annotations

import dataclasses
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dropdown_rank import _io
from dropdown_rank._io import write_json, write_parquet
from dropdown_rank.graph import GraphConfig, build_graphs
from dropdown_rank.logs.schema import DAY, find_table, load_logs
from dropdown_rank.samples import SampleConfig, build_samples
from dropdown_rank.split import SPLITS, SplitConfig, TimeSplit, time_split
from dropdown_rank.tables import iso_day
from dropdown_rank.vocab import build_vocabularies, write_vocabularies
from dropdown_rank.workdir import fingerprint


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    split: SplitConfig = SplitConfig()
    graph: GraphConfig = GraphConfig()
    samples: SampleConfig = SampleConfig()
    min_count: int = 1
    bad_rows: str = "error"


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(logs_dir: str | Path, work_dir: str | Path, config: BuildConfig = BuildConfig(), progress=print, progress_bar: bool = True) -> dict:
    """Build a work directory from validated logs. Returns the content of ``stats.json``.

    Everything is written into a staging directory beside ``work_dir`` and swapped in whole when
    complete, so an interrupted build leaves the previous work directory (or none) untouched, never
    a mix. A ``work_dir`` that exists but is not a work directory is never replaced.
    """
    logs_dir = Path(logs_dir)
    return stage_and_swap(work_dir, lambda staging: _build_into(logs_dir, staging, config, progress, progress_bar), progress)


WORK_ENTRIES = {"build.json", "stats.json", "vocab", "graph", "samples", "truth.parquet"}


def stage_and_swap(work_dir: str | Path, write, progress=print) -> dict:
    """Run ``write(staging)`` into a fresh staging directory beside ``work_dir``, then swap it in whole (the
    contract of every build engine; ``_io.stage_and_swap``). Returns what ``write`` returns."""
    stats = _io.stage_and_swap(work_dir, write, WORK_ENTRIES, "build.json", "a work directory")
    progress(f"build: wrote {work_dir}")
    return stats


def period_counts(split: TimeSplit, ts: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """Impressions (``weights`` per ``ts``: counts of impressions at day- or hour-aligned times) per split, in the
    graph warm-up, and outside every period."""
    ts = np.asarray(ts, dtype=np.int64)
    weights = np.ones(len(ts), dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    names = split.assign(ts)
    out = {name: int(weights[names == name].sum()) for name in ("train", "valid", "test")}
    out["outside"] = int(weights[names == ""].sum())
    out["warmup"] = int(weights[(ts >= split.train_start) & (ts < split.rows_start)].sum())
    return out


def report_outside(counts: dict, config: BuildConfig, progress) -> None:
    outside, warmup = counts["outside"], counts["warmup"]
    if outside:
        progress(f"split: {outside:,} impressions are not samples: {warmup:,} in the {config.split.warmup_days}-day graph "
                 f"warm-up (--warmup-days), {outside - warmup:,} before the training period (--train-days)")


def check_vocabularies(vocabs: dict, split: TimeSplit, config: BuildConfig) -> None:
    """Each vocabulary needs a token: the rankers embed users, queries and items."""
    emptied = [name for name, frame in vocabs.items() if frame.empty]
    if emptied and config.min_count > 1:
        raise ValueError(f"--min-count {config.min_count} leaves the {', '.join(emptied)} vocabulary empty: no token occurs "
                         "that often in the training period; lower --min-count")
    if emptied:
        raise ValueError(f"the training period ({split.to_dict()['train_start_iso'][:10]} to {split.to_dict()['valid_start_iso'][:10]}) "
                         f"has no {' and no '.join(emptied)}: the rankers embed users, queries and items, so each needs at least "
                         "one (items are clicked-item events)")


def vocab_summary(vocabs: dict, config: BuildConfig) -> str:
    return "vocab: " + ", ".join(f"{len(v):,} {k}" for k, v in vocabs.items()) + f" (min count {config.min_count})"


NO_HISTORY_WARNING = 0.9  # a share of requests with no earlier behavior that suggests ids that do not join


def check_splits(samples_dir: Path, split: TimeSplit, source: str, progress) -> dict:
    """``{split: {rows, clicks, no_history_share}}`` of the written samples (``no_history_share``: requests whose user
    has no earlier query or clicked item), read back so that both engines are held to the same checks before the
    work directory is swapped in.

    Every split needs a click, and validation and test an impression without one too: training learns from clicks,
    and validation AUC (early stopping, the best checkpoint), calibration and test AUC need both labels. A training
    split where nearly every request has no history is reported as a warning: most often the impressions' user ids
    are not the events' (another id space, a hashed column)."""
    periods = {"train": (split.rows_start, split.valid_start), "valid": (split.valid_start, split.test_start),
               "test": (split.test_start, split.test_end)}
    out = {}
    for name, (start, end) in periods.items():
        rows = clicks = no_history = 0
        for shard in sorted((samples_dir / name).glob("part-*.parquet")):
            table = pq.read_table(shard, columns=["label", "query_history_ts", "item_history_ts"])
            rows += table.num_rows
            clicks += int(pc.sum(table.column("label")).as_py() or 0)
            lengths = [pc.list_value_length(table.column(f"{kind}_history_ts")).to_numpy() for kind in ("query", "item")]
            no_history += int(np.sum((lengths[0] == 0) & (lengths[1] == 0)))
        out[name] = {"rows": rows, "clicks": clicks, "no_history_share": round(no_history / rows, 4) if rows else None}
        missing = "no impressions" if rows == 0 else "no click" if clicks == 0 else \
            "no impression without a click" if clicks == rows and name != "train" else None
        if missing:
            days = f"{pd.Timestamp(start, unit='s'):%Y-%m-%d} to {pd.Timestamp(end - 1, unit='s'):%Y-%m-%d}"
            raise ValueError(f"{source}: the {SPLIT_NAMES[name]} days ({days}) hold {rows:,} impressions and {missing}: "
                             f"{SPLIT_NEEDS[name]}; check the clicked column, or move the split with --valid-days/--test-days")
    share = out["train"]["no_history_share"]
    progress(f"samples: requests whose user has no earlier query or clicked item: "
             + ", ".join(f"{name} {100 * out[name]['no_history_share']:.1f}%" for name in out)
             + (f"; WARNING: {100 * share:.0f}% of training requests have no history: are the impressions' user_id "
                "values the events' user_id values?" if share >= NO_HISTORY_WARNING else ""))
    return out


def window_coverage(samples_dir: Path, split: TimeSplit, first_day: int, config: BuildConfig, progress) -> dict:
    """Per look-back window, the first request time whose window the log holds whole (``complete_from``) and each
    split's share of rows before it (``truncated_share``), which counted fewer days than the window.

    The counters look back over the whole log, from its first day (the day of its earliest row, either table:
    to the day, so a log starting at noon counts its first day whole); the graph snapshots over the events
    from the training period's start, which the ``--warmup-days`` before the first training row cover. A
    window longer than the data before a row is cut at that start: the row's counts (or graph) cover fewer
    days, while serving, long after the log starts, counts whole windows. The build warns when training rows
    were cut; the model card records it (``signature.counter_windows``)."""
    windows = {"personal_days": (config.samples.personal_days, first_day),
               "popularity_days": (config.samples.popularity_days, first_day),
               "graph_window_days": (config.graph.window_days, split.train_start)}
    request_ts = {name: [pq.read_table(shard, columns=["request_ts"]).column(0).to_numpy()
                         for shard in sorted((samples_dir / name).glob("part-*.parquet"))] for name in SPLITS}
    out, cut = {"log_first_day": iso_day(first_day), "graph_first_day": iso_day(split.train_start)}, []
    for name, (days, start) in windows.items():
        # every start is a day start, so a whole-days window (the days before the request's day) and a window of
        # seconds before request_ts (cut as samples.py cuts the personal one) are both whole from the same moment
        complete_from = start + int(days * DAY)
        shares = {split_name: float(np.mean(np.concatenate(parts) < complete_from)) for split_name, parts in request_ts.items()}
        out[name] = {"days": days, "complete_from": iso_day(complete_from),
                     "truncated_share": {split_name: round(share, 4) for split_name, share in shares.items()}}
        if shares["train"] > 0:
            cut.append(f"{name.replace('_', '-')} {days:g} (whole from {iso_day(complete_from)}, "
                       f"{100 * shares['train']:.1f}% of training rows cut)")
    if cut:
        progress(f"build: WARNING: windows longer than the log before the training rows: {'; '.join(cut)}. Those rows "
                 f"counted fewer days than serving will (model card: signature.counter_windows.complete). Counter windows "
                 f"are whole with a longer log before the training period or shorter --personal-days/--popularity-days; "
                 f"the graph's, which starts with the training period, with --warmup-days at least --graph-window-days "
                 f"or a shorter --graph-window-days")
    return out


SPLIT_NAMES = {"train": "training", "valid": "validation", "test": "test"}
SPLIT_NEEDS = {"train": "a ranker learns from clicks",
               "valid": "validation AUC (early stopping, the best checkpoint) and calibration need clicked and unclicked impressions",
               "test": "test AUC needs clicked and unclicked impressions"}


def finish_work_dir(logs_dir: Path, work_dir: Path, split: TimeSplit, config: BuildConfig, stats: dict, progress,
                    first_day: int) -> dict:
    """Check every split's labels (:func:`check_splits`, recorded in ``stats``), measure the look-back windows
    (:func:`window_coverage`, from the log's ``first_day``, recorded in ``stats`` and ``build.json``), copy the ground
    truth (synthetic worlds), write ``stats.json``, then ``build.json`` (last: a directory with ``build.json`` is
    complete). Returns ``stats``."""
    stats["splits"] = check_splits(work_dir / "samples", split, str(find_table(logs_dir, "impressions")), progress)
    stats["windows"] = window_coverage(work_dir / "samples", split, first_day, config, progress)
    truth_path = logs_dir / "truth.parquet"
    if truth_path.exists():
        write_parquet(work_dir / "truth.parquet", pd.read_parquet(truth_path))
    write_json(work_dir / "stats.json", stats)
    write_json(work_dir / "build.json", {
        "logs": str(logs_dir.resolve()),
        "split": split.to_dict(),
        "config": dataclasses.asdict(config),
        "has_truth": truth_path.exists(),
        "windows": stats["windows"],
        "fingerprint": fingerprint(work_dir),
    })
    rows, timings = stats["samples"], stats["timings"]
    progress(
        f"build: samples train {rows['train']:,} / valid {rows['valid']:,} / test {rows['test']:,}; "
        f"stage times " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in timings.items()) +
        f"; peak memory {stats['peak_memory_mb']:.0f} MB"
    )
    return stats


def _build_into(logs_dir: Path, work_dir: Path, config: BuildConfig, progress, progress_bar: bool) -> dict:
    timings = {}
    clock = time.perf_counter()

    logs = load_logs(logs_dir, bad_rows=config.bad_rows)
    for report in logs.reports:
        progress(f"validate: {report.summary()}")
    timings["validate_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    events, impressions = logs.events, logs.impressions
    split = time_split(impressions["ts"].to_numpy(), config.split, str(find_table(logs_dir, "impressions")))
    split_of = split.assign(impressions["ts"].to_numpy())
    counts = period_counts(split, impressions["ts"].to_numpy())
    report_outside(counts, config, progress)
    train_events = events[split.in_training_period(events["ts"].to_numpy())]
    train_impressions = impressions[split.in_training_period(impressions["ts"].to_numpy())]
    vocabs = build_vocabularies(train_events, train_impressions, config.min_count)
    check_vocabularies(vocabs, split, config)
    write_vocabularies(vocabs, work_dir / "vocab")
    progress(vocab_summary(vocabs, config))
    timings["vocab_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    graph_events = events[split.in_graph_period(events["ts"].to_numpy())]
    tables, graph_stats = build_graphs(graph_events, vocabs, split.snapshot_days(), config.graph, progress=progress,
                                       progress_bar=progress_bar)
    for relation, table in tables.items():
        table.save(work_dir / "graph" / f"{relation}.npz")
    timings["graph_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    candidate_pv = train_impressions["candidate"].value_counts()
    rows = build_samples(events, impressions, split_of, candidate_pv, work_dir / "samples", config.samples, progress_bar=progress_bar)
    timings["samples_s"] = time.perf_counter() - clock

    stats = build_stats(logs.reports, counts, (len(events), len(train_events), len(graph_events)), rows,
                        {k: len(v) for k, v in vocabs.items()}, graph_stats, timings)
    first_day = min(int(events["ts"].min()) if len(events) else np.iinfo(np.int64).max, int(impressions["ts"].min())) // DAY * DAY
    return finish_work_dir(logs_dir, work_dir, split, config, stats, progress, first_day)


def build_stats(reports, counts: dict, events: tuple, rows: dict, vocab_sizes: dict, graph_stats: dict, timings: dict) -> dict:
    """``stats.json``'s content, the same for every engine; ``events`` is (all, training period, graph period)."""
    return {
        "validation": [r.to_dict() for r in reports],
        "impressions_outside_periods": counts["outside"],
        "events": {"all": events[0], "train_period": events[1], "graph_snapshots": events[2]},
        "impressions_graph_warmup": counts["warmup"],
        "samples": rows,
        "vocab": vocab_sizes,
        "graph": graph_stats,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "events_per_second": round(events[0] / max(sum(timings.values()), 1e-9), 1),
    }

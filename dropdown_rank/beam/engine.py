"""The Beam build's driver: two pipelines and, between and after them, the small global decisions.

Pipeline 1 (:mod:`dropdown_rank.beam.validate`) validates the logs and writes the clean rows partitioned by user;
the driver then raises the first validation error (if any) exactly as the in-memory build would, and computes the
time split and each hour's offset in its split from the impressions' hourly counts. Pipeline 2
(:mod:`dropdown_rank.beam.pipeline`) builds vocabularies, graphs and samples with those as constants. Everything is
written into the build's staging directory (scratch files under ``.beam/``, removed before the swap), so the Beam
build is staged, swapped in and interrupted exactly like the in-memory one (:func:`dropdown_rank.build.stage_and_swap`).
"""
from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from dropdown_rank.beam.common import BuildOptions, default_buckets, load, pipeline_options
from dropdown_rank.beam.pipeline import build_pipeline
from dropdown_rank.beam.validate import impressions_per_hour, plan, resolve, validation_pipeline
from dropdown_rank.build import (BuildConfig, build_stats, check_vocabularies, finish_work_dir, period_counts,
                                 report_outside, stage_and_swap, vocab_summary)
from dropdown_rank.graph import relation_stats, relation_summary, snapshot_size
from dropdown_rank.tables import RELATIONS
from dropdown_rank.logs.schema import find_table
from dropdown_rank.split import SPLITS, time_split
from dropdown_rank.vocab import VOCABULARIES


def build_beam(logs_dir: str | Path, work_dir: str | Path, config: BuildConfig = BuildConfig(), pipeline_args=(),
               progress=print) -> dict:
    """``dropdown-rank build --engine beam``: the work directory of :func:`dropdown_rank.build.build`, built by Beam.

    ``pipeline_args`` are Beam pipeline options (``--runner``, ``--direct_num_workers``, ...; without ``--runner``
    the local ``FnApiRunner``) and this build's own (``--user_buckets``, ``--chunk_rows``). Returns ``stats.json``.
    """
    if config.graph.q2q_source != "session":
        raise ValueError(f"--q2q-source {config.graph.q2q_source}: --q2q-source item/both is built by the in-memory engine "
                         "only; use --engine memory, or --q2q-source session with --engine beam")
    if config.graph.neighbor_rank != "cooccurrence":
        raise ValueError(f"--neighbor-rank {config.graph.neighbor_rank}: random-walk neighbors are built by the in-memory "
                         "engine only; use --engine memory, or --neighbor-rank cooccurrence with --engine beam")
    logs_dir = Path(logs_dir)
    options = pipeline_options(pipeline_args)
    return stage_and_swap(work_dir, lambda staging: _build_into(logs_dir, staging, config, options, progress), progress)


def _build_into(logs_dir: Path, work_dir: Path, config: BuildConfig, options, progress) -> dict:
    own = options.view_as(BuildOptions)
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = work_dir / ".beam"
    timings = {}
    clock = time.perf_counter()
    tables = plan(logs_dir, own.chunk_rows)
    buckets = own.user_buckets or default_buckets(sum(info["rows"] for info in tables.values()))
    engine = _engine(options, buckets)
    progress(f"beam: {engine['runner']}, {engine['direct_num_workers']} worker(s) ({engine['direct_running_mode']}), "
             f"{buckets} user bucket(s)")
    with beam.Pipeline(options=options) as pipeline:
        validation_pipeline(pipeline, tables, config.bad_rows, own.chunk_rows, buckets, str(tmp))
    reports, hours, first_day = resolve(tables, load(tmp / "validation.pkl"))
    shutil.rmtree(tmp / "stash", ignore_errors=True)  # the validation's scratch rows: no later step reads them
    for report in reports:
        progress(f"validate: {report.summary()}")
    timings["validate_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    hour_ts, hour_rows = impressions_per_hour(hours)
    split = time_split(hour_ts, config.split, str(find_table(logs_dir, "impressions")))
    counts = period_counts(split, hour_ts, hour_rows)
    report_outside(counts, config, progress)
    names = split.assign(hour_ts)
    offsets = {}
    for name in SPLITS:
        mine = names == name
        starts = np.cumsum(hour_rows[mine]) - hour_rows[mine]
        offsets.update(zip(hour_ts[mine].tolist(), starts.tolist()))
    split_rows = {name: counts[name] for name in SPLITS}
    with beam.Pipeline(options=options) as pipeline:
        build_pipeline(pipeline, str(tmp), str(work_dir), buckets, split, offsets, split_rows, config)
    records = load(tmp / "build.pkl")
    timings["vocab_graph_samples_s"] = time.perf_counter() - clock

    vocabs = {name: pd.read_parquet(work_dir / "vocab" / f"{name}.parquet") for name in VOCABULARIES}
    check_vocabularies(vocabs, split, config)
    progress(vocab_summary(vocabs, config))
    graph_stats = {}
    for relation in RELATIONS:
        per_snapshot = next(r[2] for r in records if r[0] == "graph" and r[1] == relation)
        behaviors = sum(r[2] for r in records if r[0] == "behaviors" and r[1] == relation)
        outside = sum(r[3] for r in records if r[0] == "behaviors" and r[1] == relation)
        graph_stats[relation] = relation_stats(per_snapshot[-1], [snapshot_size(s) for s in per_snapshot], behaviors, outside,
                                               config.graph)
        progress(relation_summary(relation, graph_stats[relation]))
    written = {name: sum(r[3] for r in records if r[0] == "samples" and r[1] == name) for name in SPLITS}
    if written != split_rows:
        raise RuntimeError(f"samples written {written}, expected {split_rows}")
    events = [sum(r[i] for r in records if r[0] == "events") for i in (1, 2, 3)]
    shutil.rmtree(tmp)

    stats = {
        **build_stats(reports, counts, tuple(events), split_rows, {k: len(v) for k, v in vocabs.items()}, graph_stats, timings),
        "engine": "beam",
        "beam": engine,
        "peak_memory_workers_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1),
    }
    return finish_work_dir(logs_dir, work_dir, split, config, stats, progress, first_day)


def _engine(options, buckets: int) -> dict:
    direct = options.view_as(DirectOptions)
    return {"runner": str(options.view_as(StandardOptions).runner), "direct_num_workers": direct.direct_num_workers,
            "direct_running_mode": direct.direct_running_mode, "user_buckets": buckets,
            "chunk_rows": options.view_as(BuildOptions).chunk_rows}

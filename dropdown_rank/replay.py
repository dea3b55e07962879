"""``dropdown-rank replay``: the serving-side features against the build's, row for row.

A CTR model most often fails in production through a feature serving computes differently from
training. ``replay`` feeds a log through the reference online assembler (``assembler.py``), in time
order, as a serving system would see it, and compares every sample row of one split with the row
the build wrote: ids, histories and their times, ``activity`` and every counter, field by field.
Left out are what is not a serving feature: ``label`` (the outcome), ``position`` and ``candidate_pv``
(the training period's impressions of the candidate, a report slice). Rows are compared in the
samples' order; ``request_id`` and ``candidate`` are among the compared fields, so a row out of
place shows as a mismatch.

The timeline: events sorted by time (ties keep the log's order, as the build's histories do) and the
impressions in the samples' order (``SAMPLE_ORDER``), a request's rows together. At equal times
events come first, so every request meets behaviors of its own second and must skip them; each
request's impressions are fed to the daily totals after it is answered.

The logs must be the build's: each table's validated row counts (read and kept) are checked against
the build's ``stats.json`` (a cheap guard against another log, not a content check), and the
build's ``--bad-rows`` is applied.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from dropdown_rank._io import read_json, write_json
from dropdown_rank.assembler import FeatureAssembler
from dropdown_rank.features import ARROW_SCHEMA
from dropdown_rank.logs.schema import SAMPLE_ORDER, load_logs
from dropdown_rank.split import SPLITS
from dropdown_rank.workdir import Work, shard_files

NOT_SERVED = ("label", "position", "candidate_pv")
CHUNK_ROWS = 65536  # served rows held as Python lists at once: a whole training split's took 6.6 GB on AOL-dev
COMPARED = tuple(name for name in ARROW_SCHEMA.names if name not in NOT_SERVED)
SHOWN_MISMATCHES = 3


def timeline(events: pd.DataFrame, impressions: pd.DataFrame):
    """Every event and dropdown request in time order, as ``("event", (user, ts, kind, id))`` and
    ``("request", rows)``, ``rows`` being the positions of the request's impressions in ``impressions``
    (which must be in ``SAMPLE_ORDER``)."""
    order = np.argsort(events["ts"].to_numpy(np.int64), kind="stable")
    ev_ts = events["ts"].to_numpy(np.int64)[order].tolist()
    ev = list(zip(events["user_id"].to_numpy(object)[order].tolist(), ev_ts,
                  events["kind"].to_numpy(object)[order].tolist(), events["id"].to_numpy(object)[order].tolist()))
    ts = impressions["ts"].to_numpy(np.int64)
    request = impressions["request_id"].to_numpy(object)
    starts = np.flatnonzero(np.concatenate([[True], (request[1:] != request[:-1]) | (ts[1:] != ts[:-1])]))
    ends = np.append(starts[1:], len(ts))
    e = 0
    for start, end in zip(starts.tolist(), ends.tolist()):
        request_ts = int(ts[start])
        while e < len(ev) and ev_ts[e] <= request_ts:
            yield "event", ev[e]
            e += 1
        yield "request", range(start, end)
    for rest in ev[e:]:
        yield "event", rest


def served_requests(assembler: FeatureAssembler, steps, impressions: pd.DataFrame, wanted: np.ndarray):
    """Feed ``steps`` (of :func:`timeline`) to ``assembler``; for each request with ``wanted`` impressions, yield
    ``(rows, features, activity)``: the positions of those impressions, the assembler's model inputs for them
    (:meth:`FeatureAssembler.request_features`) and the user's ``activity``, all as of the request's time."""
    user, cand = impressions["user_id"].to_numpy(object), impressions["candidate"].to_numpy(object)
    prefix, clicked = impressions["prefix"].to_numpy(object), impressions["clicked"].to_numpy(bool)
    request = impressions["request_id"].to_numpy(object)
    ts = impressions["ts"].to_numpy(np.int64)
    for kind, step in steps:
        if kind == "event":
            assembler.add_event(*step)
            continue
        rows = [r for r in step if wanted[r]]
        request_ts = int(ts[step[0]])
        if rows:
            features = assembler.request_features(user[rows[0]], request_ts, list(prefix[rows]), list(cand[rows]))
            yield rows, features, assembler.activity(user[rows[0]], request_ts)
        for r in step:
            assembler.add_impression(request[r], cand[r], request_ts, clicked[r])


def replay_chunks(assembler: FeatureAssembler, steps, impressions: pd.DataFrame, wanted: np.ndarray,
                  chunk_rows: int = CHUNK_ROWS):
    """The served features of the ``wanted`` impressions (:func:`served_requests`), in order, as tables of about
    ``chunk_rows`` rows with the :data:`COMPARED` fields and ``position`` (at least one table, maybe empty)."""
    def table(columns):
        return pa.table({name: pa.array(values, type=ARROW_SCHEMA.field(name).type) for name, values in columns.items()})

    columns, yielded = {name: [] for name in (*COMPARED, "position")}, False
    for rows, features, activity in served_requests(assembler, steps, impressions, wanted):
        for name in ("request_id", "position"):
            columns[name] += impressions[name].iloc[rows].tolist()
        for name, values in features.items():
            columns[name] += values.tolist()
        columns["activity"] += [activity] * len(rows)
        if len(columns["request_id"]) >= chunk_rows:
            yield table(columns)
            columns, yielded = {name: [] for name in columns}, True
    if columns["request_id"] or not yielded:
        yield table(columns)


def replay_rows(assembler: FeatureAssembler, steps, impressions: pd.DataFrame, wanted: np.ndarray) -> pa.Table:
    """:func:`replay_chunks` as one table."""
    return pa.concat_tables(list(replay_chunks(assembler, steps, impressions, wanted)))


def compare(built: pa.Table, served: pa.Table, first_row: int = 0) -> dict:
    """``{field: {"rows": n, "first": [...]}}`` for every compared field where the tables differ (empty: none); rows are
    numbered from ``first_row``."""
    if built.num_rows != served.num_rows:
        return {"rows": {"rows": abs(built.num_rows - served.num_rows),
                         "first": [f"the build wrote {built.num_rows:,} rows, the replay served {served.num_rows:,}"]}}
    out = {}
    for name in COMPARED:
        a, b = built.column(name).combine_chunks(), served.column(name).combine_chunks()
        if a.equals(b):
            continue
        a, b = a.to_pylist(), b.to_pylist()
        bad = [r for r in range(len(a)) if a[r] != b[r]]
        out[name] = {"rows": len(bad), "first": [
            f"row {first_row + r} (request {built.column('request_id')[r].as_py()!r}, position "
            f"{built.column('position')[r].as_py()}): build {_short(a[r])}, served {_short(b[r])}" for r in bad[:SHOWN_MISMATCHES]]}
    return out


def _merge(total: dict, part: dict) -> None:
    for name, found in part.items():
        merged = total.setdefault(name, {"rows": 0, "first": []})
        merged["rows"] += found["rows"]
        merged["first"] = (merged["first"] + found["first"])[:SHOWN_MISMATCHES]


def _short(value) -> str:
    text = repr(value)
    if len(text) <= 200:
        return text
    return text[:200] + (f"... ({len(value)} entries)" if isinstance(value, list) else "...")


def check_same_logs(reports, work: Work) -> None:
    """Refuse logs whose validated row counts are not the build's, table by table (events, then impressions): the
    comparison would be of another log."""
    built = read_json(work.path / "stats.json")["validation"]
    for ours, theirs in zip(reports, built):
        if (ours.rows_read, ours.rows_kept) != (theirs["rows_read"], theirs["rows_kept"]):
            raise ValueError(f"{ours.source}: {ours.rows_read:,} rows read and {ours.rows_kept:,} kept, but the build of "
                             f"{work.path} read {theirs['rows_read']:,} and kept {theirs['rows_kept']:,} from {theirs['source']}: "
                             f"replay the logs it was built from ({read_json(work.path / 'build.json')['logs']})")


def replay(logs_dir: str | Path, work_dir: str | Path, split: str = "test", progress=print, progress_bar: bool = True,
           report_path: str | Path | None = None) -> dict:
    """Replay ``logs_dir`` through a :class:`FeatureAssembler` with ``work_dir``'s settings and compare the ``split``'s
    rows with the build's. Returns (and writes to ``report_path``) the report; ``report["mismatches"]`` is empty when
    every field of every row agrees."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    work = Work.open(work_dir)
    clock = time.perf_counter()
    logs = load_logs(logs_dir, bad_rows=work.config["bad_rows"])
    check_same_logs(logs.reports, work)
    load_s = time.perf_counter() - clock

    impressions = logs.impressions.sort_values(SAMPLE_ORDER, kind="stable").reset_index(drop=True)
    wanted = work.split.assign(impressions["ts"].to_numpy()) == split
    assembler = FeatureAssembler.for_work(work.config)
    steps = len(logs.events) + impressions.groupby(["ts", "request_id"], sort=False).ngroups
    progress(f"replay: feeding {len(logs.events):,} events and {len(impressions):,} impressions through the assembler in time "
             f"order, answering the {int(wanted.sum()):,} {split} rows")
    built = pa.concat_tables([pq.read_table(f, columns=[*COMPARED, "position"]) for f in shard_files(work.samples_dir, split)])
    clock = time.perf_counter()
    bar = tqdm(timeline(logs.events, impressions), total=steps, desc="replay", unit="step", disable=not progress_bar,
               mininterval=1.0)
    mismatches, served_rows, compare_s = {}, 0, 0.0
    for chunk in replay_chunks(assembler, bar, impressions, wanted, CHUNK_ROWS):
        started = time.perf_counter()
        # the build's rows beyond the served ones (too few served) are counted once, after the loop
        _merge(mismatches, compare(built.slice(served_rows, chunk.num_rows), chunk, first_row=served_rows))
        served_rows += chunk.num_rows
        compare_s += time.perf_counter() - started
    if served_rows < built.num_rows:
        _merge(mismatches, {"rows": {"rows": built.num_rows - served_rows,
                                     "first": [f"the build wrote {built.num_rows:,} rows, the replay served {served_rows:,}"]}})
    replay_s = time.perf_counter() - clock - compare_s

    fed = len(logs.events) + len(impressions)
    report = {
        "logs": str(Path(logs_dir).resolve()), "work": str(Path(work_dir).resolve()), "split": split,
        "rows_compared": built.num_rows, "fields_compared": list(COMPARED), "not_compared": list(NOT_SERVED),
        "events": len(logs.events), "impressions": len(impressions),
        "load_s": round(load_s, 3), "replay_s": round(replay_s, 3), "compare_s": round(compare_s, 3),
        "seconds_per_million_records": round(replay_s / max(fed, 1) * 1e6, 2),
        "users_kept": len(assembler.users),
        "mismatches": mismatches,
    }
    progress(f"replay: {fed:,} records ({len(logs.events):,} events, {len(impressions):,} impressions) in {replay_s:.1f} s, "
             f"{report['seconds_per_million_records']:.1f} s per million; {split}: {built.num_rows:,} rows compared, "
             f"{len(COMPARED)} fields each")
    if mismatches:
        for name, found in mismatches.items():
            progress(f"replay: MISMATCH {name}: {found['rows']:,} rows; " + "; ".join(found["first"]))
    else:
        progress("replay: 0 mismatches: the assembler serves exactly the build's rows")
    if report_path is not None:
        write_json(Path(report_path), report)
    return report


def check_served(served_path: str | Path, work_dir: str | Path, split: str = "test", progress=print,
                 report_path: str | Path | None = None) -> dict:
    """Compare the features a serving system computed (``served_path``: a Parquet file or directory with ``request_id``,
    ``position`` and the :data:`COMPARED` fields, typed as the samples are, rows in any order) with the build's rows of
    ``split``, matched by (``request_id``, ``candidate``), which validation makes unique (a position need not be).
    Rows of the split that the file lacks, and rows of the file
    that the split lacks, are counted apart; the rows of both are compared field by field. Returns (and writes to
    ``report_path``) the report; it is clean when nothing is missing, nothing extra and nothing mismatched."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    work = Work.open(work_dir)
    columns = [*COMPARED, "position"]
    served = pq.read_table(served_path)
    missing = [name for name in columns if name not in served.column_names]
    if missing:
        raise ValueError(f"{served_path}: no column {', '.join(missing)}: the file needs request_id, position and every "
                         f"compared field ({', '.join(COMPARED)})")
    typed = {}
    for name in columns:
        try:
            typed[name] = served.column(name).cast(ARROW_SCHEMA.field(name).type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ValueError(f"{served_path}, column '{name}': {served.column(name).type} does not convert to the samples' "
                             f"{ARROW_SCHEMA.field(name).type} without loss ({error})") from None
    served = pa.table(typed)
    built = pa.concat_tables([pq.read_table(f, columns=columns) for f in shard_files(work.samples_dir, split)])
    keys = ["request_id", "candidate"]
    built_keys = built.select(keys).to_pandas().assign(built_row=np.arange(built.num_rows))
    served_keys = served.select(keys).to_pandas().assign(served_row=np.arange(served.num_rows))
    if served_keys.duplicated(keys).any():
        first = served_keys[served_keys.duplicated(keys, keep=False)].iloc[0]
        raise ValueError(f"{served_path}: request {first['request_id']!r}, candidate {first['candidate']!r} appears more than once")
    both = built_keys.merge(served_keys, on=keys, how="outer", indicator=True)
    matched = both[both["_merge"] == "both"].sort_values("built_row")
    mismatches = compare(built.take(matched["built_row"].to_numpy(np.int64)), served.take(matched["served_row"].to_numpy(np.int64)))
    report = {"served": str(Path(served_path).resolve()), "work": str(work.path.resolve()), "split": split,
              "rows_compared": len(matched), "rows_missing": int((both["_merge"] == "left_only").sum()),
              "rows_extra": int((both["_merge"] == "right_only").sum()), "fields_compared": list(COMPARED),
              "mismatches": mismatches}
    progress(f"replay: {len(matched):,} served rows compared with the build's {split} rows ({len(COMPARED)} fields each); "
             f"{report['rows_missing']:,} rows of the split not served, {report['rows_extra']:,} served rows not in it")
    for name, found in mismatches.items():
        progress(f"replay: MISMATCH {name}: {found['rows']:,} rows; " + "; ".join(found["first"]))
    if not mismatches:
        progress("replay: 0 mismatches in the rows compared")
    if report_path is not None:
        write_json(Path(report_path), report)
    return report

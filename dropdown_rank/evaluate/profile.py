"""``dropdown-rank profile``: a log's shape in the figures that decide where a graph can help.

A graph built from the day's behavior can describe a query that an id embedding cannot: one that
is new, rare, or outside the training vocabulary. Whether a log asks that question is a property
of the log, so the same figures are computed for any log in the project's schema (validated as
``build`` validates it) and set side by side (README: the synthetic world, AOL-dev, Best Buy).

Queries are ``kind == "query"`` events, in time order (ties keep the log's order); a user's
sessions split at gaps over ``SESSION_GAP_MINUTES`` between their behaviors (queries and clicked
items), as the model's session context splits them (the graph build also cuts them at midnight
UTC). Figures (``profile.json``; ``profile.md`` renders them):

* ``days`` (UTC days from the first to the last holding a row), ``users`` (in events or
  impressions), ``events``, ``impressions``, ``queries``, ``distinct_queries``;
* ``first_time_query_share``: of the queries after the first ``warmup_days`` days, the share whose
  text nobody had issued before (before the warm-up every query looks new);
  ``first_time_query_share_per_day``: the same per day, warm-up days included;
* ``new_to_user_share``: queries the same user had not issued before; ``same_as_previous_share``:
  queries equal to the same user's previous query (a user's first query counts as not);
* ``queries_per_session``: queries over sessions holding at least one; ``events_per_user_median``;
* ``clicked_candidate_issued_before_share``: clicked impressions whose candidate the user had
  issued as a query at any time before the request (an upper bound on what the personal counter
  and the exact-match features can find);
* ``activity_at_click``: clicked impressions by the user's behaviors in the ``lookback_days``
  (30) before the request (the build's ``activity``), in the reports' activity buckets;
* ``candidates``: distinct candidates, impressions per candidate (median, p90, p99, max), the top
  1% of candidates' share of impressions, the share of candidates shown once;
* with a build (``work``): ``test_candidates_outside_vocabulary``, test impressions whose candidate
  is not in the training vocabulary. (Every id of the vocabulary is known from before the first
  test day, so on test days the lagged vocabulary reads no other candidate as OOV.)

Plots: ``first_time_queries_per_day.png`` and ``activity_at_request.png``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank import _io
from dropdown_rank._io import write_json
from dropdown_rank.evaluate.oov import read_split_samples
from dropdown_rank.evaluate.plots import profile_plots
from dropdown_rank.evaluate.slices import SliceConfig
from dropdown_rank.logs.schema import DAY, SESSION_GAP_MINUTES, load_logs
from dropdown_rank.samples import Histories, SampleConfig
from dropdown_rank.tables import iso_day
from dropdown_rank.workdir import Work

OUTPUTS = {"profile.json", "profile.md", "first_time_queries_per_day.png", "activity_at_request.png"}
EVER = 1 << 40  # a look-back longer than any log: "ever before"


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    warmup_days: int = 7
    lookback_days: float = SampleConfig.lookback_days  # the build's activity window
    activity_edges: tuple = SliceConfig.activity_edges  # the reports' activity buckets


def _share(mask) -> float | None:
    return round(float(np.mean(mask)), 4) if len(mask) else None


def query_figures(events: pd.DataFrame, config: ProfileConfig) -> dict:
    """The figures of the query events (see the module doc)."""
    order = np.argsort(events["ts"].to_numpy(np.int64), kind="stable")
    events = events.iloc[order]
    queries = events[events["kind"] == "query"]
    ts, user, text = queries["ts"].to_numpy(np.int64), queries["user_id"].to_numpy(object), queries["id"].to_numpy(object)
    first_time = ~pd.Series(text).duplicated().to_numpy()
    new_to_user = ~pd.DataFrame({"user": user, "text": text}).duplicated().to_numpy()
    same_as_previous = pd.Series(text).groupby(user).shift(1).eq(pd.Series(text)).to_numpy(bool)  # a first query: NaN, not equal
    first_day = int(events["ts"].min()) // DAY * DAY if len(events) else 0
    day = (ts - first_day) // DAY
    after_warmup = day >= config.warmup_days
    per_day = pd.Series(first_time).groupby(day).mean()

    # sessions over all behaviors, split where a user's gap exceeds the graph build's
    ev_codes, ev_ts = pd.factorize(events["user_id"].to_numpy(object))[0], events["ts"].to_numpy(np.int64)
    by_user = np.lexsort((np.arange(len(ev_ts)), ev_ts, ev_codes))
    codes, times = ev_codes[by_user], ev_ts[by_user]
    starts = np.ones(len(times), bool)
    starts[1:] = (codes[1:] != codes[:-1]) | (np.diff(times) > SESSION_GAP_MINUTES * 60)
    session = np.cumsum(starts)
    is_query = (events["kind"] == "query").to_numpy()[by_user]
    sessions_with_query = len(np.unique(session[is_query]))
    return {
        "first_day": iso_day(first_day), "queries": int(len(text)), "distinct_queries": int(len(set(text))),
        "first_time_query_share": _share(first_time[after_warmup]),
        "first_time_query_share_per_day": {iso_day(first_day + int(d) * DAY): round(float(v), 4) for d, v in per_day.items()},
        "new_to_user_share": _share(new_to_user), "same_as_previous_share": _share(same_as_previous),
        "queries_per_session": round(len(text) / sessions_with_query, 3) if sessions_with_query else None,
        "events_per_user_median": float(events.groupby("user_id").size().median()) if len(events) else None,
    }


def impression_figures(events: pd.DataFrame, impressions: pd.DataFrame, config: ProfileConfig) -> tuple[dict, np.ndarray]:
    """The figures of the impressions, and every impression's activity (for the plot)."""
    histories = Histories(events, impressions)
    user = histories.users.get_indexer(impressions["user_id"].to_numpy(object))
    ts = impressions["ts"].to_numpy(np.int64)
    start, end = histories.everything.window(user, ts, since=ts - int(config.lookback_days * DAY))
    activity = end - start
    clicked = impressions["clicked"].to_numpy(bool)
    issued_before, _ = histories.personal.lookup(user[clicked], impressions["candidate"].to_numpy(object)[clicked], ts[clicked], EVER)
    edges = [0, *config.activity_edges, np.inf]
    buckets = {(f"{int(lo)}+" if hi == np.inf else f"{int(lo)}-{int(hi) - 1}"): _share((activity[clicked] >= lo) & (activity[clicked] < hi))
               for lo, hi in zip(edges[:-1], edges[1:])}
    per_candidate = impressions["candidate"].value_counts().to_numpy()
    top = max(1, int(np.ceil(len(per_candidate) * 0.01)))
    return {
        "clicked_candidate_issued_before_share": _share(issued_before > 0),
        "activity_at_click": buckets,
        "candidates": {"distinct": int(len(per_candidate)), "impressions_median": float(np.median(per_candidate)),
                       "impressions_p90": round(float(np.percentile(per_candidate, 90)), 2),
                       "impressions_p99": round(float(np.percentile(per_candidate, 99)), 2), "impressions_max": int(per_candidate.max()),
                       "top_1pct_share_of_impressions": round(float(per_candidate[:top].sum() / per_candidate.sum()), 4),
                       "shown_once_share": _share(per_candidate == 1)},
    }, activity


def vocabulary_figures(work_dir: Path) -> dict:
    """Test impressions whose candidate the training vocabulary lacks."""
    work = Work.open(work_dir)
    candidates = read_split_samples(work.samples_dir, "test", ["candidate"]).column("candidate")
    known = pd.Index(work.vocabulary("queries"))
    return {"work": str(work.path), "test_impressions": len(candidates),
            "test_candidates_outside_vocabulary": _share(known.get_indexer(candidates.to_numpy(zero_copy_only=False)) < 0)}


def profile_log(logs_dir: str | Path, work_dir: str | Path | None = None, config: ProfileConfig = ProfileConfig(),
                bad_rows: str = "error") -> tuple[dict, np.ndarray]:
    """The profile of the logs in ``logs_dir`` (and, with ``work_dir``, of its build's test split), and the activity of
    every impression at its request."""
    logs = load_logs(logs_dir, bad_rows=bad_rows)
    events, impressions = logs.events, logs.impressions
    all_ts = np.concatenate([events["ts"].to_numpy(np.int64), impressions["ts"].to_numpy(np.int64)])
    users = pd.unique(np.concatenate([events["user_id"].to_numpy(object), impressions["user_id"].to_numpy(object)]))
    profile = {"logs": str(Path(logs_dir).resolve()), "config": dataclasses.asdict(config),
               "validation": [report.to_dict() for report in logs.reports],
               "days": int((all_ts.max() // DAY - all_ts.min() // DAY) + 1), "users": int(len(users)),
               "events": int(len(events)), "impressions": int(len(impressions))}
    profile.update(query_figures(events, config))
    figures, activity = impression_figures(events, impressions, config)
    profile.update(figures)
    if work_dir is not None:
        profile["vocabulary"] = vocabulary_figures(Path(work_dir))
    return profile, activity


def write_profile(logs_dir, out_dir, work_dir=None, config: ProfileConfig = ProfileConfig(), bad_rows: str = "error",
                  progress=print) -> dict:
    """:func:`profile_log` written to ``out_dir`` (``profile.json``, ``profile.md``, two PNGs), staged and swapped in whole;
    a directory holding anything else is refused. Prints the table. Returns the profile."""
    profile, activity = profile_log(logs_dir, work_dir, config, bad_rows)

    def write(staging: Path):
        write_json(staging / "profile.json", profile)
        (staging / "profile.md").write_text(markdown(profile))
        profile_plots(profile, activity, staging / "first_time_queries_per_day.png", staging / "activity_at_request.png")

    _io.stage_and_swap(out_dir, write, OUTPUTS, "profile.json", "a log profile")
    progress(markdown(profile))
    progress(f"profile: wrote {out_dir}")
    return profile


def _percent(share) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


def table_rows(profile: dict) -> list[tuple[str, str]]:
    """(label, value) of each row of the profile's table."""
    p, candidates, activity = profile, profile["candidates"], profile["activity_at_click"]
    rows = [
        ("days / users", f"{p['days']:,} / {p['users']:,}"),
        ("events / impressions", f"{p['events']:,} / {p['impressions']:,}"),
        ("queries / distinct", f"{p['queries']:,} / {p['distinct_queries']:,}"),
        (f"queries issued for the first time by anyone (after day {p['config']['warmup_days']})", _percent(p["first_time_query_share"])),
        ("queries new to their user", _percent(p["new_to_user_share"])),
        ("same as the user's previous query", _percent(p["same_as_previous_share"])),
        ("queries per session", "n/a" if p["queries_per_session"] is None else f"{p['queries_per_session']:.2f}"),
        ("events per user, median", "n/a" if p["events_per_user_median"] is None else f"{p['events_per_user_median']:g}"),
        ("clicked candidate issued by the user before", _percent(p["clicked_candidate_issued_before_share"])),
        ("activity at click " + " / ".join(activity), " / ".join(_percent(v) for v in activity.values())),
        ("candidates; impressions per candidate: median / p99 / max",
         f"{candidates['distinct']:,}; {candidates['impressions_median']:g} / {candidates['impressions_p99']:g} / "
         f"{candidates['impressions_max']:,}"),
        ("top 1% of candidates' share of impressions", _percent(candidates["top_1pct_share_of_impressions"])),
    ]
    if "vocabulary" in p:
        rows.append(("test candidates outside the training vocabulary", _percent(p["vocabulary"]["test_candidates_outside_vocabulary"])))
    return rows


def markdown(profile: dict) -> str:
    lines = [f"# Log profile: {profile['logs']}", "", "| | |", "| --- | --- |"]
    lines += [f"| {label} | {value} |" for label, value in table_rows(profile)]
    lines += ["", f"Warm-up for first-time queries: {profile['config']['warmup_days']} days. Activity: behaviors in the "
              f"{profile['config']['lookback_days']:g} days before the request."]
    return "\n".join(lines) + "\n"

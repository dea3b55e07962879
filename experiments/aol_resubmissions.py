"""Re-submissions in the AOL log: the measurements behind ``resubmit_gap_minutes`` (issue 20).

AOL logged a return to a result page (next page, back button) as the same query again with a new
time. ``convert_aol(..., resubmit_gap_minutes=M)`` keeps a query event that repeats the same user's
immediately previous query event at most M minutes later as an event, but not as a dropdown
request. This script measures what that rule does, for every gap M of ``--gaps``:

* it converts ``--src`` with ``convert_aol`` (every other option at its default) into a scratch
  directory, then reads the converted ``events.parquet``, ``impressions.parquet`` and ``aol.json``;
* per gap: re-submissions (count, share of query events), requests, kept requests (distinct
  ``request_id``), impressions, the **repeat share** (kept requests whose clicked candidate the
  same user had issued as a query event, re-submissions included, strictly before the request's
  time), the **clicked = previous** share (clicked candidate = the user's immediately previous
  query event) and the **on top** share (clicked candidate at MPC position 0), plus the wall time
  of each conversion;
* once (events do not depend on the rule; checked): the pairs of consecutive query events of a
  user in ``events.parquet`` order, the gaps of those with equal text (quantiles), and the
  probability that a query repeats the user's previous one by the gap since it (bands);
* ``--release-check``: the extract rewritten as one file of the original release format
  (``AnonID Query QueryTime ItemRank ClickURL``), converted with the defaults, compared with the
  default conversion of the extract (events, impressions and the counts of ``aol.json``);
* ``--bestbuy DIR``: for the Best Buy log, its searches (distinct user, query time and normalized
  text) that repeat the same user's previous search, and their gaps ("" skips this part).

The requests of a conversion are numbered in ``events.parquet`` order (``request_id`` =
``aol`` + the number of the query event among the non-re-submitted ones), which the script uses to
find each kept request's query event and its previous one; the re-submission mask it recomputes is
checked against ``aol.json``. Everything is vectorized (pandas/numpy), no per-row Python loop.

Run from the repository root (light: one process, eight conversions of the extract, about 95 s on 2 shared cores)::

    .venv/bin/python experiments/aol_resubmissions.py \\
        [--src ../shared/data/aol-dev/user_search_logs.tar.gz] [--out experiments/aol_resubmissions.json] \\
        [--gaps 0 5 10 30 60 1440 none] [--bestbuy ../shared/data/bestbuy] [--no-release-check]

The result file is written atomically; ``data/README.md`` (AOL, "Re-submissions, measured") quotes it.
"""
from __future__ import annotations

import dropdown_rank  # noqa: F401,I001  (first: it sets the environment tensorflow reads at import)

import argparse
import os
import shlex
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dropdown_rank._io import read_json, write_json
from dropdown_rank.logs.aol import RESUBMIT_GAP_MINUTES, convert_aol
from dropdown_rank.logs.bestbuy import normalize_query, read_bestbuy

# Bands of the time since the user's previous query event (seconds; right-closed, 0 included).
BAND_EDGES = [0, 60, 120, 300, 600, 1200, 1800, 2700, 3600, 7200, 4 * 3600, 8 * 3600, 86400, 3 * 86400, np.inf]
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
REQUEST_PREFIX = "aol"
RELEASE_HEADER = "AnonID\tQuery\tQueryTime\tItemRank\tClickURL"  # the release's header (AOL_HEADER, as spelled there)


def parse_gap(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def gap_label(gap: float | None) -> str:
    return "none" if gap is None else f"{gap:g}"


def query_events(events: pd.DataFrame) -> pd.DataFrame:
    """Query events in ``events.parquet`` order with the same user's previous query event."""
    q = events.loc[events["kind"] == "query", ["user_id", "ts", "id"]].reset_index(drop=True)
    by_user = q.groupby("user_id", sort=False)
    q["prev_id"] = by_user["id"].shift()
    q["prev_ts"] = by_user["ts"].shift()
    q["has_prev"] = q["prev_id"].notna()
    q["same"] = q["has_prev"] & (q["id"] == q["prev_id"])
    q["gap"] = q["ts"] - q["prev_ts"]  # seconds; NaN for a user's first query event
    return q


def resubmitted(q: pd.DataFrame, gap: float | None) -> np.ndarray:
    """The converter's rule, recomputed: same text as the previous query event, at most ``gap`` minutes later."""
    if gap == 0:
        return np.zeros(len(q), dtype=bool)
    within = np.ones(len(q), dtype=bool) if gap is None else (q["gap"] <= 60.0 * gap).to_numpy()
    return q["same"].to_numpy() & within


def measure_gap(q: pd.DataFrame, impressions: pd.DataFrame, summary: dict, gap: float | None) -> dict:
    resub = resubmitted(q, gap)
    if int(resub.sum()) != summary["query_events_resubmitted"]:
        raise AssertionError(f"gap {gap_label(gap)}: recomputed {int(resub.sum())} re-submissions, "
                             f"aol.json has {summary['query_events_resubmitted']}")
    requests = q[~resub].reset_index(drop=True)  # row n = request number n
    if len(requests) != summary["requests"]:
        raise AssertionError(f"gap {gap_label(gap)}: {len(requests)} requests, aol.json has {summary['requests']}")
    clicked = impressions[impressions["clicked"] == 1]
    kept = impressions["request_id"].nunique()
    if len(clicked) != kept or clicked["request_id"].duplicated().any():
        raise AssertionError(f"gap {gap_label(gap)}: not exactly one clicked candidate per kept request")
    number = clicked["request_id"].str.slice(len(REQUEST_PREFIX)).astype(np.int64).to_numpy()
    event = requests.iloc[number].reset_index(drop=True)
    clicked = clicked.reset_index(drop=True)
    if not ((event["user_id"].to_numpy() == clicked["user_id"].to_numpy()).all()
            and (event["ts"].to_numpy() == clicked["ts"].to_numpy()).all()
            and (event["id"].to_numpy() == clicked["candidate"].to_numpy()).all()):
        raise AssertionError(f"gap {gap_label(gap)}: a kept request does not match its query event")
    first_ts = q.groupby(["user_id", "id"], sort=False)["ts"].min().rename("first_ts")
    first = clicked[["user_id", "candidate"]].merge(
        first_ts, left_on=["user_id", "candidate"], right_index=True, how="left")["first_ts"].to_numpy()
    repeat = int((first < clicked["ts"].to_numpy()).sum())  # NaN (never issued) compares False
    previous = int((event["prev_id"].to_numpy() == clicked["candidate"].to_numpy()).sum())
    on_top = int((clicked["position"] == 0).sum())
    return {
        "resubmit_gap_minutes": gap,
        "query_events": summary["query_events"],
        "resubmissions": summary["query_events_resubmitted"],
        "resubmission_share": summary["query_events_resubmitted"] / summary["query_events"],
        "requests": summary["requests"],
        "kept_requests": int(kept),
        "impressions": int(len(impressions)),
        "repeat": repeat,
        "repeat_share": repeat / kept,
        "clicked_previous": previous,
        "clicked_previous_share": previous / kept,
        "on_top": on_top,
        "on_top_share": on_top / kept,
    }


def consecutive_gaps(q: pd.DataFrame) -> dict:
    pairs = q[q["has_prev"]]
    same_gap = pairs.loc[pairs["same"], "gap"]
    band = pd.cut(pairs["gap"], BAND_EDGES, right=True, include_lowest=True)
    table = pairs.groupby(band, observed=False)["same"].agg(["size", "sum"])
    bands = [{"from_minutes": float(interval.left) / 60 if interval.left > 0 else 0.0,
              "to_minutes": None if np.isinf(interval.right) else float(interval.right) / 60,
              "pairs": int(row["size"]), "repeats": int(row["sum"]),
              "repeat_probability": float(row["sum"] / row["size"]) if row["size"] else None}
             for interval, row in table.iterrows()]
    return {
        "query_events": int(len(q)),
        "users": int(q["user_id"].nunique()),
        "pairs": int(len(pairs)),
        "pairs_same_text": int(pairs["same"].sum()),
        "same_text_share_of_query_events": float(pairs["same"].sum() / len(q)),
        "same_text_gap_quantiles_minutes": {f"{p:g}": float(same_gap.quantile(p)) / 60 for p in QUANTILES},
        "same_text_gap_share_over": {"30 minutes": float((same_gap > 1800).mean()),
                                     "1 day": float((same_gap > 86400).mean())},
        "repeat_probability_by_gap": bands,
    }


def write_release(src: Path, path: Path) -> int:
    """The per-user extract at ``src`` (a .tar/.tar.gz) as one release-format file; returns its data rows.

    Lines are classified as the converter reads the extract: a line with a tab is a query
    (``<query>\\t<time>``, split at the last tab), a blank line ends a block, other lines of a block
    are its clicks. A query without a click is one row with empty ItemRank and ClickURL; a query
    with clicks is one row per click (ItemRank = click order)."""
    frames = []
    with tarfile.open(src, "r|*") as archive:
        for member in archive:
            base = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or base.startswith(".") or not base.lower().endswith(".txt"):
                continue
            text = archive.extractfile(member).read().decode("utf-8", errors="replace")
            lines = pd.Series(text.split("\n"), dtype=object).str.rstrip("\r\n")
            blank = lines.str.strip() == ""
            is_query = ~blank & lines.str.contains("\t", regex=False)
            block = blank.cumsum()
            query_row = pd.Series(np.where(is_query, np.arange(len(lines)), np.nan)).groupby(block).ffill()
            is_click = ~blank & ~is_query & query_row.notna()
            split = lines[is_query].str.rsplit("\t", n=1)
            queries = pd.DataFrame({"query": split.str[0], "time": split.str[1]})
            n_clicks = query_row[is_click].astype(np.int64).value_counts()
            no_click = queries.index[~queries.index.isin(n_clicks.index)]
            click_of = query_row[is_click].astype(np.int64)
            rank = click_of.groupby(click_of).cumcount() + 1
            rows = pd.concat([
                pd.DataFrame({"line": no_click, "query": queries.loc[no_click, "query"].to_numpy(),
                              "time": queries.loc[no_click, "time"].to_numpy(), "rank": "", "url": ""}),
                pd.DataFrame({"line": click_of.index, "query": queries.loc[click_of, "query"].to_numpy(),
                              "time": queries.loc[click_of, "time"].to_numpy(), "rank": rank.astype(str).to_numpy(),
                              "url": lines[is_click].to_numpy()}),
            ]).sort_values("line", kind="stable")
            rows.insert(0, "user", base[:-len(".txt")])
            frames.append(rows.drop(columns="line"))
    rows = pd.concat(frames, ignore_index=True)
    body = (rows["user"] + "\t" + rows["query"] + "\t" + rows["time"] + "\t" + rows["rank"] + "\t" + rows["url"])
    path.write_text(RELEASE_HEADER + "\n" + "\n".join(body) + "\n", encoding="utf-8")
    return int(len(rows))


def release_check(src: Path, scratch: Path, default_out: Path) -> dict:
    folder = scratch / "release-src"
    folder.mkdir()
    rows = write_release(src, folder / "user-ct-test-collection-01.txt")
    out = scratch / "release-out"
    summary = convert_aol(folder, out, progress=lambda *a: None)
    default = read_json(default_out / "aol.json")
    # Every count of the summary but lines_read (lines of the input, which the format changes) and files.
    counts = [k for k, v in default.items() if isinstance(v, (int, dict)) and k not in ("files", "options", "lines_read")]
    return {
        "release_rows": rows,
        "events_identical": bool(pd.read_parquet(out / "events.parquet").equals(pd.read_parquet(default_out / "events.parquet"))),
        "impressions_identical": bool(pd.read_parquet(out / "impressions.parquet").equals(
            pd.read_parquet(default_out / "impressions.parquet"))),
        "summary_counts_identical": all(summary[k] == default[k] for k in counts),
        "summary_counts_differing": [k for k in counts if summary[k] != default[k]],
        "summary_counts_compared": counts,
    }


def bestbuy_repeats(src: Path) -> dict:
    raw = read_bestbuy(src)
    searches = pd.DataFrame({"user": raw["user"], "q": normalize_query(raw["query"]),
                             "t": pd.to_datetime(raw["query_time"], format="ISO8601")})
    searches = searches.drop_duplicates(["user", "t", "q"]).sort_values(["user", "t", "q"], kind="stable")
    same_user = searches["user"].eq(searches["user"].shift())
    same = same_user & searches["q"].eq(searches["q"].shift())  # distinct rows: same text means another time
    gap = (searches["t"] - searches["t"].shift()).dt.total_seconds()[same]
    return {
        "source": str(src),
        "rows": int(len(raw)),
        "searches": int(len(searches)),
        "searches_with_previous": int(same_user.sum()),
        "repeat_previous_search": int(same.sum()),
        "repeat_previous_within_30_minutes": int((gap <= 1800).sum()),
        "repeat_gap_median_days": float(gap.median() / 86400) if len(gap) else None,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default="../shared/data/aol-dev/user_search_logs.tar.gz")
    parser.add_argument("--out", default="experiments/aol_resubmissions.json")
    parser.add_argument("--gaps", nargs="+", default=["0", "5", "10", "30", "60", "1440", "none"],
                        help="resubmit_gap_minutes values (minutes; 0 = rule off, none = no limit)")
    parser.add_argument("--scratch", default=None, help="parent of the scratch directory (default: the system temp dir)")
    parser.add_argument("--bestbuy", default="../shared/data/bestbuy", help='Best Buy log directory ("" skips)')
    parser.add_argument("--no-release-check", dest="release_check", action="store_false")
    args = parser.parse_args(argv)
    gaps = [parse_gap(g) for g in args.gaps]
    started = time.perf_counter()
    load = round(os.getloadavg()[0], 2)
    src = Path(args.src)
    result = {
        "command": shlex.join(["python", "experiments/aol_resubmissions.py", *(sys.argv[1:] if argv is None else argv)]),
        "source": str(src),
        "converter_options": "convert_aol defaults except resubmit_gap_minutes",
        "default_resubmit_gap_minutes": RESUBMIT_GAP_MINUTES,
        "gaps": [],
    }
    with tempfile.TemporaryDirectory(prefix="aol_resubmissions.", dir=args.scratch) as tmp:
        scratch = Path(tmp)
        reference = None
        outs = {}
        for gap in gaps:
            out = scratch / f"gap-{gap_label(gap)}"
            t0 = time.perf_counter()
            summary = convert_aol(src, out, resubmit_gap_minutes=gap, progress=lambda *a: None)
            seconds = time.perf_counter() - t0
            events = pd.read_parquet(out / "events.parquet")
            if reference is None:
                reference = events
                q = query_events(events)
                result["consecutive_queries"] = consecutive_gaps(q)
            elif not events.equals(reference):
                raise AssertionError(f"gap {gap_label(gap)}: events.parquet differs from the first conversion's")
            del events
            row = measure_gap(q, pd.read_parquet(out / "impressions.parquet"), summary, gap)
            row["convert_seconds"] = round(seconds, 2)
            result["gaps"].append(row)
            outs[gap] = out
            print(f"gap {gap_label(gap)}: {row['resubmissions']:,} re-submissions, {row['kept_requests']:,} kept requests, "
                  f"repeat {row['repeat_share']:.1%}, clicked = previous {row['clicked_previous_share']:.1%}, "
                  f"on top {row['on_top_share']:.1%} ({seconds:.1f} s)", flush=True)
        by_gap = {row["resubmit_gap_minutes"]: row for row in result["gaps"]}
        if 0 in by_gap and RESUBMIT_GAP_MINUTES in by_gap:
            off, default = by_gap[0], by_gap[RESUBMIT_GAP_MINUTES]
            result["default_vs_off"] = {
                "kept_requests_lost": off["kept_requests"] - default["kept_requests"],
                "kept_requests_lost_share": 1 - default["kept_requests"] / off["kept_requests"],
            }
        if RESUBMIT_GAP_MINUTES in by_gap:
            result["default_conversion_seconds"] = by_gap[RESUBMIT_GAP_MINUTES]["convert_seconds"]
        if args.release_check:
            default_out = outs.get(RESUBMIT_GAP_MINUTES)
            if default_out is None:
                default_out = scratch / "gap-default"
                convert_aol(src, default_out, progress=lambda *a: None)
            result["release_format"] = release_check(src, scratch, default_out)
            print(f"release format: {result['release_format']}", flush=True)
    if args.bestbuy:
        result["bestbuy"] = bestbuy_repeats(Path(args.bestbuy))
        print(f"bestbuy: {result['bestbuy']}", flush=True)
    result["script_seconds"] = round(time.perf_counter() - started, 1)
    result["host"] = {"cpu_count": os.cpu_count(), "load_average_1min_at_start": load}
    write_json(args.out, result)
    print(f"wrote {args.out} ({result['script_seconds']} s)")


if __name__ == "__main__":
    main()

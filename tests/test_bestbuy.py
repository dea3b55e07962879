"""The Best Buy real log converts into the schema and builds.

``tests/data/bestbuy`` holds 73 rows of the real log (57 of train.csv, 16 of test.csv, each line
copied unchanged, CRLF included), from 2011-10-17 to 2011-10-24: a few rows a day with shared
prefixes (battlefield, call of duty, kinect, ...) and eight users with several rows in one visit,
so that reconstructed candidate lists and both graphs are not empty. The tests on them always run;
those on the whole log (``../shared/data/bestbuy``) run when it is present.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dropdown_rank.build import BuildConfig, build
from dropdown_rank.workdir import Work
from dropdown_rank.logs.bestbuy import bestbuy_to_logs, convert_bestbuy, read_bestbuy
from dropdown_rank.logs.schema import load_logs
from dropdown_rank.split import SplitConfig

FIXTURE = Path(__file__).resolve().parent / "data" / "bestbuy"
BESTBUY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bestbuy"
needs_full_log = pytest.mark.skipif(not (BESTBUY / "train.csv").exists(), reason=f"{BESTBUY} not present")


def quiet(*_args, **_kwargs):
    pass


def epoch_seconds(text: pd.Series) -> np.ndarray:
    since_epoch = pd.to_datetime(text, utc=True, format="ISO8601") - pd.Timestamp(0, tz="UTC")
    return (since_epoch // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def test_checked_in_rows_convert_to_events_and_one_clicked_request_per_query(tmp_path):
    raw = read_bestbuy(FIXTURE)
    assert len(raw) == 73 and (raw["source"] == str(FIXTURE / "test.csv")).sum() == 16
    summary = convert_bestbuy(FIXTURE, tmp_path, progress=quiet)
    assert summary == {"rows": 73, "rows_with_empty_query_skipped": 0, "queries_rewritten_by_normalization": 54,
                       "events": 146, "requests": 73, "impressions": 219, "prefix_len": 3, "candidates": 8}
    logs = load_logs(tmp_path)
    issued = raw["query"].str.lower().str.split().str.join(" ")
    query_ts, click_ts = epoch_seconds(raw["query_time"]), epoch_seconds(raw["click_time"])

    # Events: one item per row (its sku at click time); one query per row, where the 10 rows that
    # repeat a query (one search, several clicks: same user, text and time) are exact duplicates.
    assert logs.reports[0].skipped == {"exact duplicate row": 10}
    events = logs.events
    queries = events[events["kind"] == "query"]
    items = events[events["kind"] == "item"]
    expected_queries = pd.DataFrame({"user_id": raw["user"], "ts": query_ts, "id": issued}).drop_duplicates()
    assert len(queries) == len(expected_queries) == 63 and len(items) == 73
    key = ["user_id", "ts", "id"]
    assert sorted(map(tuple, queries[key].to_numpy().tolist())) == sorted(map(tuple, expected_queries[key].to_numpy().tolist()))
    assert sorted(zip(items["user_id"], items["ts"], items["id"])) == sorted(zip(raw["user"], click_ts, raw["sku"]))
    assert "call of duty modern warfare 3" in set(queries["id"])  # from "call of duty modern warfare  3"

    # Impressions: one request per row, whose single click is the query that row issued.
    imp = logs.impressions
    assert len(imp) == 219 and imp["request_id"].nunique() == 73
    assert (imp.groupby("request_id")["clicked"].sum() == 1).all()
    clicked = imp[imp["clicked"] == 1]
    assert sorted(zip(clicked["user_id"], clicked["ts"], clicked["candidate"])) == sorted(zip(raw["user"], query_ts, issued))
    assert (clicked["prefix"] == clicked["candidate"].str[:3]).all()
    assert all(c.startswith(p) for c, p in zip(imp["candidate"], imp["prefix"]))
    positions = imp.groupby("request_id")["position"].agg(["min", "max", "size"])
    assert (positions["min"] == 0).all() and (positions["max"] == positions["size"] - 1).all()
    # The first day has no earlier day, so its 6 requests show only the issued query; later lists
    # reach the 8 candidates.
    sizes = positions["size"]
    assert sizes.value_counts().sort_index().to_dict() == {1: 26, 2: 11, 3: 14, 4: 6, 5: 3, 6: 3, 7: 8, 8: 2}
    first_day = imp["ts"] // 86400 == imp["ts"].min() // 86400
    assert imp.loc[first_day, "request_id"].nunique() == 6 and (sizes[imp.loc[first_day, "request_id"].unique()] == 1).all()
    assert (clicked["position"] > 0).sum() == 34  # the issued query is not always on top


def candidates_come_from_earlier_days(imp: pd.DataFrame) -> bool:
    issued = imp[imp["clicked"] == 1][["prefix", "candidate", "ts"]]
    first_seen = issued.assign(day=issued["ts"] // 86400).groupby("candidate")["day"].min()
    shown_unclicked = imp[imp["clicked"] == 0]
    assert len(shown_unclicked) > 0
    return bool((first_seen.reindex(shown_unclicked["candidate"]).to_numpy() < (shown_unclicked["ts"] // 86400).to_numpy()).all())


def test_candidates_use_only_earlier_days():
    imp = bestbuy_to_logs(read_bestbuy(FIXTURE))["impressions"]
    assert (imp["clicked"] == 0).sum() == 219 - 73
    assert candidates_come_from_earlier_days(imp)


def test_checked_in_rows_build_graph_and_samples(tmp_path):
    convert_bestbuy(FIXTURE, tmp_path / "logs", progress=quiet)
    stats = build(tmp_path / "logs", tmp_path / "work", BuildConfig(split=SplitConfig(valid_days=1, test_days=1)),
                  progress=quiet, progress_bar=False)
    samples = stats["samples"]
    # The last day (2011-10-24) has 56 impressions, the one before 40; the rest is training or
    # outside every period.
    assert samples["test"] == 56 and samples["valid"] == 40
    assert samples["train"] > 0 and samples["train"] + stats["impressions_outside_periods"] == 219 - 56 - 40
    # One visit with two distinct queries on 2011-10-22 (a training day) gives a q2q edge each way;
    # several clicks after one search give i2i edges.
    assert stats["graph"]["q2q"]["edges_kept"] >= 2
    assert stats["graph"]["i2i"]["edges_kept"] >= 6
    assert Work.open(tmp_path / "work").neighbor_table("i2i").degree().max() >= 2


@needs_full_log
def test_whole_log_each_query_and_click_becomes_an_event_and_impressions_are_causal(tmp_path):
    raw = read_bestbuy(BESTBUY)
    summary = convert_bestbuy(BESTBUY, tmp_path, progress=quiet)
    logs = load_logs(tmp_path)
    assert summary["rows"] == len(raw) == 42365
    kinds = logs.events["kind"].value_counts()
    # One query event and one item event per row, minus exact duplicates, which validation reports.
    duplicates = logs.reports[0].skipped.get("exact duplicate row", 0)
    assert kinds["query"] + kinds["item"] + duplicates == 2 * len(raw)
    imp = logs.impressions
    assert (imp.groupby("request_id")["clicked"].sum() == 1).all()
    assert imp["request_id"].nunique() == len(raw)
    assert all(c.startswith(p) for c, p in zip(imp["candidate"], imp["prefix"]))


@needs_full_log
def test_whole_log_candidates_use_only_earlier_days():
    imp = bestbuy_to_logs(read_bestbuy(BESTBUY).head(3000))["impressions"]
    assert candidates_come_from_earlier_days(imp)


@needs_full_log
def test_whole_log_builds_graph_and_samples(tmp_path):
    convert_bestbuy(BESTBUY, tmp_path / "logs", progress=quiet)
    stats = build(tmp_path / "logs", tmp_path / "work", BuildConfig(split=SplitConfig(valid_days=7, test_days=7)),
                  progress=quiet, progress_bar=False)
    assert stats["graph"]["q2q"]["edges_kept"] > 100
    assert stats["graph"]["i2i"]["edges_kept"] > 100
    assert min(stats["samples"].values()) > 1000
    assert Work.open(tmp_path / "work").neighbor_table("i2i").degree().max() >= 1

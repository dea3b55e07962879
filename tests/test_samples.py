"""Samples: histories strictly before ts, most recent first, L=50 stored once; slicing fields."""
import numpy as np
import pandas as pd
import pytest

from dropdown_rank.features import COUNTER_FIELDS
from dropdown_rank.samples import SampleConfig, build_samples
from dropdown_rank.workdir import read_samples

T0 = 1767225600


def write(tmp_path, events, impressions, split_of, pv=None, **config):
    build_samples(pd.DataFrame(events, columns=["user_id", "ts", "kind", "id"]),
                  pd.DataFrame(impressions, columns=["request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked"]),
                  np.array(split_of, dtype=object), pd.Series(pv or {}, dtype=np.int64), tmp_path, SampleConfig(**config),
                  progress_bar=False)
    return read_samples(tmp_path, "train")


def test_strictly_before_ts_and_most_recent_first(tmp_path):
    events = [("u", T0 + 100, "query", "a"), ("u", T0 + 200, "query", "b"), ("u", T0 + 200, "item", "x"),
              ("u", T0 + 300, "query", "c"), ("w", T0 + 150, "query", "other user")]
    impressions = [("r1", "u", T0 + 200, "", "b", 0, 1), ("r2", "u", T0 + 301, "", "d", 0, 0)]
    rows = write(tmp_path, events, impressions, ["train", "train"])
    first, second = rows.iloc[0], rows.iloc[1]
    assert list(first["query_history"]) == ["a"]  # b and x happen at the request's own second
    assert list(first["item_history"]) == []
    assert list(second["query_history"]) == ["c", "b", "a"]
    assert list(second["query_history_ts"]) == [T0 + 300, T0 + 200, T0 + 100]
    assert list(second["item_history"]) == ["x"]


def test_history_is_cut_to_max_len_keeping_the_latest(tmp_path):
    events = [("u", T0 + i, "query", f"q{i}") for i in range(80)]
    rows = write(tmp_path, events, [("r", "u", T0 + 1000, "", "z", 0, 0)], ["train"], max_len=50)
    history = list(rows.iloc[0]["query_history"])
    assert len(history) == 50 and history[0] == "q79" and history[-1] == "q30"


def test_activity_counts_behaviors_in_lookback_and_pv_comes_from_input(tmp_path):
    day = 86400
    events = [("u", T0, "query", "old"), ("u", T0 + 10 * day, "item", "i"), ("u", T0 + 10 * day + 5, "query", "new")]
    rows = write(tmp_path, events, [("r", "u", T0 + 11 * day, "", "new", 0, 0)], ["train"], {"new": 7}, lookback_days=5)
    assert rows.iloc[0]["activity"] == 2
    assert rows.iloc[0]["candidate_pv"] == 7
    assert list(rows.iloc[0]["query_history"]) == ["new", "old"]  # history is not limited by lookback


def test_tiny_world_samples_hold_no_neighbors_and_cover_every_impression(tiny_logs, tiny_work):
    import json

    stats = json.loads((tiny_work / "stats.json").read_text())
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    assert sum(stats["samples"].values()) + stats["impressions_outside_periods"] == len(impressions)
    train = read_samples(tiny_work / "samples", "train")
    assert set(train.columns) == {"request_id", "user_id", "request_ts", "candidate", "position", "label", "query_history",
                                  "query_history_ts", "item_history", "item_history_ts", "activity", "candidate_pv", "prefix",
                                  *COUNTER_FIELDS}
    lengths = train["query_history"].map(len)
    assert lengths.max() == 50 and (lengths < 5).any()
    ts = np.concatenate(train["query_history_ts"].to_list())
    assert (np.repeat(train["request_ts"].to_numpy(), lengths) > ts).all()


def test_counters_see_only_earlier_data(tmp_path):
    day = 86400
    events = [("u", T0, "query", "c"), ("u", T0 + 2 * day, "query", "c"), ("u", T0 + 3 * day, "query", "c"),
              ("w", T0 + 1 * day, "query", "c"), ("w", T0 + 3 * day + 10, "query", "c"), ("u", T0 + 3 * day, "query", "d")]
    impressions = [("r0", "w", T0 + 1 * day + 5, "c", "c", 0, 1), ("r0", "w", T0 + 1 * day + 5, "c", "e", 1, 0),
                   ("r1", "u", T0 + 3 * day, "", "c", 0, 1),  # at the second of u's third "c": not before it
                   ("r2", "u", T0 + 3 * day + 20, "ab", "c", 2, 0)]
    rows = write(tmp_path, events, impressions, ["train"] * 4, personal_days=2.5, popularity_days=2).set_index(
        ["request_id", "candidate"])
    r1, r2 = rows.loc[("r1", "c")], rows.loc[("r2", "c")]
    # personal: u's queries of "c" in [ts - 2.5 days, ts): at r1 only the day-2 one (day 0 is out of the window,
    # the day-3 one is at the request's own second); at r2 the day-3 one too, 20 s ago
    assert (r1["user_candidate_count"], r1["user_candidate_age"]) == (1, day)
    assert (r2["user_candidate_count"], r2["user_candidate_age"]) == (2, 20)
    assert rows.loc[("r0", "e"), "user_candidate_count"] == 0 and rows.loc[("r0", "e"), "user_candidate_age"] == -1
    # popularity: whole days 1 and 2 before day 3 (w's day-3 query is the request's own day, never counted);
    # CTR: r0's two rows on day 1
    assert r2["candidate_query_count"] == 2 and r1["candidate_query_count"] == 2
    assert (r2["candidate_impressions"], r2["candidate_clicks"]) == (1, 1)
    assert rows.loc[("r0", "c"), "candidate_query_count"] == 1  # day 0 only; w's own query of day 1 is today's
    assert rows.loc[("r0", "c"), "candidate_impressions"] == 0
    assert r2["prefix"] == "ab"


@pytest.mark.parametrize("built", ["tiny_work", "tiny_work_short_windows"])
def test_counters_of_the_tiny_world_equal_a_brute_force_count(tiny_logs, built, request):
    """Every counter of 300 random rows, recounted from the raw logs by plain filtering; with the default windows
    (365 and 30 days, longer than the 12-day world) and with short ones that cut off earlier occurrences."""
    import json

    tiny_work = request.getfixturevalue(built)
    config = json.loads((tiny_work / "build.json").read_text())["config"]["samples"]
    events = pd.read_parquet(tiny_logs / "events.parquet")
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    queries = events[events["kind"] == "query"]
    rows = pd.concat([read_samples(tiny_work / "samples", split) for split in ("train", "valid", "test")])
    rows = rows.sample(300, random_state=0)
    window = config["personal_days"] * 86400
    for row in rows.itertuples():
        own = queries[(queries["user_id"] == row.user_id) & (queries["id"] == row.candidate) & (queries["ts"] < row.request_ts)
                      & (queries["ts"] >= row.request_ts - window)]
        assert row.user_candidate_count == len(own)
        assert row.user_candidate_age == (row.request_ts - own["ts"].max() if len(own) else -1)
        today = row.request_ts // 86400 * 86400
        since = today - config["popularity_days"] * 86400
        assert row.candidate_query_count == ((queries["id"] == row.candidate) & (queries["ts"] >= since) & (queries["ts"] < today)).sum()
        shown = impressions[(impressions["candidate"] == row.candidate) & (impressions["ts"] >= since) & (impressions["ts"] < today)]
        assert (row.candidate_impressions, row.candidate_clicks) == (len(shown), shown["clicked"].sum())
    assert (rows["user_candidate_count"] > 0).sum() >= 10 and (rows["candidate_impressions"] > 0).sum() >= 100
    # With the short windows, their lower bounds cut off earlier occurrences of many rows' candidates.
    before_popularity = [((queries["id"] == r.candidate) & (queries["ts"] < r.request_ts // 86400 * 86400
                                                            - config["popularity_days"] * 86400)).any() for r in rows.itertuples()]
    before_personal = [((queries["user_id"] == r.user_id) & (queries["id"] == r.candidate)
                        & (queries["ts"] < r.request_ts - window)).any() for r in rows.itertuples()]
    if built == "tiny_work_short_windows":
        assert sum(before_popularity) >= 50 and sum(before_personal) >= 5

"""Samples: histories strictly before ts, most recent first, L=50 stored once; slicing fields."""
import numpy as np
import pandas as pd

from dropdown_rank.samples import SampleConfig, build_samples, read_samples

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
                                  "query_history_ts", "item_history", "item_history_ts", "activity", "candidate_pv"}
    lengths = train["query_history"].map(len)
    assert lengths.max() == 50 and (lengths < 5).any()
    ts = np.concatenate(train["query_history_ts"].to_list())
    assert (np.repeat(train["request_ts"].to_numpy(), lengths) > ts).all()

"""The synthetic world: valid logs, reproducible, and the marginal shapes the story promises."""
import json

import numpy as np
import pandas as pd

from dropdown_rank.logs.schema import load_logs
from dropdown_rank.logs.synth import SCALES, generate_world


def test_world_is_valid_log_schema_and_truth_lines_up(tiny_logs):
    logs = load_logs(tiny_logs)
    truth = pd.read_parquet(tiny_logs / "truth.parquet")
    assert len(truth) == len(logs.impressions) and truth["p_click"].between(0, 1).all()
    assert (truth["candidate"].to_numpy() == pd.read_parquet(tiny_logs / "impressions.parquet")["candidate"].to_numpy()).all()
    summary = json.loads((tiny_logs / "world.json").read_text())["summary"]
    assert 0.6 < summary["oracle_auc"] < 0.95  # a useful ceiling: neither a coin flip nor solved
    # The last 20 behaviors reveal only part of an active user's interest; 50 reveal more.
    revealed = summary["interest_revealed"]
    assert revealed["last_20_users_with_50_plus"] < 0.9
    assert revealed["last_50_users_with_50_plus"] > revealed["last_20_users_with_50_plus"] + 0.05


def test_same_seed_same_world_other_seed_other_world():
    a = generate_world(SCALES["tiny"], seed=3, progress=lambda *x: None)
    b = generate_world(SCALES["tiny"], seed=3, progress=lambda *x: None)
    c = generate_world(SCALES["tiny"], seed=4, progress=lambda *x: None)
    pd.testing.assert_frame_equal(a["impressions"], b["impressions"])
    pd.testing.assert_frame_equal(a["events"], b["events"])
    assert not a["events"]["id"].equals(c["events"]["id"])


def test_activity_is_heavy_tailed(tiny_logs):
    behaviors = pd.read_parquet(tiny_logs / "events.parquet")["user_id"].value_counts()
    assert (behaviors < 5).mean() > 0.15  # many users with fewer than 5 behaviors
    assert behaviors.max() > 200  # and a few with hundreds
    assert behaviors.max() > 10 * behaviors.median()


def test_query_pv_is_zipf_with_a_long_tail(tiny_logs):
    pv = pd.read_parquet(tiny_logs / "impressions.parquet")["candidate"].value_counts().to_numpy()
    rank = np.arange(1, len(pv) + 1)
    # Every short prefix shows its own head, which flattens the top ranks (as in a real dropdown);
    # the Zipf law holds on the body of the distribution.
    body = slice(len(pv) // 10, len(pv) * 6 // 10)
    slope = np.polyfit(np.log(rank[body]), np.log(pv[body]), 1)[0]
    assert -2.5 < slope < -0.7
    assert pv[: len(pv) // 10].sum() > 0.3 * pv.sum()  # the head 10% gets a large share
    assert (pv <= 2).mean() > 0.2  # long tail of rarely shown queries


def test_candidate_lists_mix_topics_and_prefixes_match(tiny_logs):
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    assert all(c.startswith(p) for c, p in zip(impressions["candidate"], impressions["prefix"]))
    sizes = impressions.groupby("request_id").size()
    assert sizes.max() == 10 and sizes.median() >= 5
    positions = impressions.groupby("request_id")["position"].agg(["min", "max", "size"])
    assert (positions["min"] == 0).all() and (positions["max"] == positions["size"] - 1).all()
    # position bias: top positions are clicked more
    ctr = impressions.groupby("position")["clicked"].mean()
    assert ctr.iloc[0] > ctr.iloc[5]


def test_clicked_suggestion_becomes_the_next_query(tiny_logs):
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    events = pd.read_parquet(tiny_logs / "events.parquet")
    clicks = impressions[impressions["clicked"] == 1].sort_values("position").drop_duplicates("request_id")
    issued = events[events["kind"] == "query"].rename(columns={"ts": "query_ts", "id": "candidate"})
    joined = clicks.merge(issued, on=["user_id", "candidate"])
    followed = joined[(joined["query_ts"] > joined["ts"]) & (joined["query_ts"] <= joined["ts"] + 20)]
    assert followed["request_id"].nunique() == len(clicks)


def test_checked_in_sample_world_is_what_synth_writes(tmp_path):
    from pathlib import Path

    from dropdown_rank.logs.synth import write_world

    sample = Path(__file__).resolve().parents[1] / "data" / "sample_world"
    write_world(tmp_path, scale="tiny", seed=0, progress=lambda *a: None)
    for name in ("events", "impressions", "truth"):
        pd.testing.assert_frame_equal(pd.read_parquet(sample / f"{name}.parquet"), pd.read_parquet(tmp_path / f"{name}.parquet"))

"""The Best Buy real log converts into the schema and builds."""
from pathlib import Path

import pytest

from dropdown_rank.build import BuildConfig, Work, build
from dropdown_rank.logs.bestbuy import bestbuy_to_logs, convert_bestbuy, read_bestbuy
from dropdown_rank.logs.schema import load_logs
from dropdown_rank.split import SplitConfig

BESTBUY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bestbuy"
pytestmark = pytest.mark.skipif(not (BESTBUY / "train.csv").exists(), reason=f"{BESTBUY} not present")


def test_each_query_and_click_becomes_an_event_and_impressions_are_causal(tmp_path):
    raw = read_bestbuy(BESTBUY)
    summary = convert_bestbuy(BESTBUY, tmp_path, progress=lambda *a: None)
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


def test_candidates_use_only_earlier_days():
    raw = read_bestbuy(BESTBUY).head(3000)
    imp = bestbuy_to_logs(raw)["impressions"]
    issued = imp[imp["clicked"] == 1][["prefix", "candidate", "ts"]]
    first_seen = (issued.assign(day=issued["ts"] // 86400).groupby("candidate")["day"].min())
    shown_unclicked = imp[imp["clicked"] == 0]
    assert (first_seen.reindex(shown_unclicked["candidate"]).to_numpy() < (shown_unclicked["ts"] // 86400).to_numpy()).all()


def test_bestbuy_builds_graph_and_samples(tmp_path):
    convert_bestbuy(BESTBUY, tmp_path / "logs", progress=lambda *a: None)
    stats = build(tmp_path / "logs", tmp_path / "work", BuildConfig(split=SplitConfig(valid_days=7, test_days=7)),
                  progress=lambda *a: None, progress_bar=False)
    assert stats["graph"]["q2q"]["edges_kept"] > 100
    assert stats["graph"]["i2i"]["edges_kept"] > 100
    assert min(stats["samples"].values()) > 1000
    assert Work.open(tmp_path / "work").neighbor_table("i2i").degree().max() >= 1

"""Evaluation: metrics by hand, interval coverage where the truth is known, bucket edges, reports."""
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dropdown_rank.cli import main
from dropdown_rank.evaluate.bootstrap import bootstrap_report
from dropdown_rank.evaluate.metrics import SortedScores, auc, gauc, logloss, per_user_auc
from dropdown_rank.evaluate.slices import SliceConfig, assign, bucket_labels, make_slices, pv_edges


def test_auc_by_hand_with_ties_and_weights():
    assert float(auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))) == 0.75
    assert float(auc(np.array([0.5, 0.5]), np.array([0, 1]))) == 0.5
    rng = np.random.default_rng(0)
    scores, labels, weights = rng.integers(0, 20, 500) / 20, rng.random(500) < 0.3, rng.random(500)
    assert float(auc(scores, labels, weights)) == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12)
    many = SortedScores(scores, labels).auc(np.stack([weights, np.ones(500)]))
    assert many[1] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_gauc_by_hand_skips_one_class_users():
    users = np.array([0, 0, 0, 1, 1, 2, 2])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.6])
    labels = np.array([1, 0, 0, 1, 0, 0, 0])
    user_auc, counts = per_user_auc(users, scores, labels, 3)
    assert user_auc[:2].tolist() == [1.0, 0.0] and np.isnan(user_auc[2])
    assert float(gauc(user_auc, counts)) == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)
    assert float(gauc(user_auc, counts, np.array([0.0, 1.0, 1.0]))) == 0.0  # replicate without user 0


def test_logloss_matches_definition():
    p, y = np.array([0.9, 0.2]), np.array([1, 0])
    assert float(logloss(p, y)) == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2)


def test_sliced_point_estimates_and_paired_differences_by_hand():
    labels = np.array([0, 1, 0, 1, 0, 1])
    users = np.array([0, 0, 1, 1, 2, 2])
    scores = {"good": np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7]), "bad": np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.3])}
    slices = {"all": {"all": np.ones(6, bool)}, "half": {"first": np.arange(6) < 4, "rest": np.arange(6) >= 4}}
    out = bootstrap_report(labels, users, scores, slices, replicates=200, seed=1)
    assert out["models"]["good"]["all"]["all"]["auc"]["value"] == 1.0
    assert out["models"]["bad"]["half"]["first"]["auc"]["value"] == 0.25  # 1 of 4 pairs ordered right
    assert out["models"]["bad"]["half"]["rest"]["gauc"]["value"] == 0.0
    assert out["models"]["good"]["half"]["first"]["impressions"] == 4
    diff = next(p for p in out["pairs"] if p["slice"] == "all")
    assert (diff["a"], diff["b"]) == ("good", "bad") and diff["auc"]["value"] == pytest.approx(1.0 - 3 / 9)


def clustered_population(rng, users, effect=0.8):
    """Impressions grouped by user: a per-user score shift makes impressions of a user correlated."""
    sizes = 1 + rng.poisson(5, users)
    user = np.repeat(np.arange(users), sizes)
    label = rng.random(len(user)) < 0.3
    score = effect * label + rng.normal(0, 1.0, users)[user] + rng.normal(0, 1.0, len(user))
    return user, score, label


def test_user_bootstrap_interval_covers_the_true_auc_about_95_percent_of_the_time():
    rng = np.random.default_rng(42)
    user, score, label = clustered_population(rng, 200_000)
    truth = float(auc(score, label))  # population AUC, from 1.2M impressions
    covered = []
    for _ in range(200):
        u, s, y = clustered_population(rng, 300)
        sorted_scores = SortedScores(s, y, clusters=u)
        draws = sorted_scores.auc(rng.poisson(1.0, size=(400, 300)).astype(np.float64))
        low, high = np.percentile(draws, [2.5, 97.5])
        covered.append(low <= truth <= high)
    coverage = float(np.mean(covered))
    assert 0.89 <= coverage <= 0.99, coverage


def test_bucket_edges_go_to_the_upper_bucket():
    assert assign(np.array([0, 4, 5, 19, 20, 49, 50, 500]), (5, 20, 50)).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert bucket_labels((5, 20, 50)) == ["0-4", "5-19", "20-49", "50+"]
    pv = np.repeat([0, 3, 10, 40, 100, 1000], 10)
    assert pv_edges(pv, SliceConfig()) == [10, 100]
    assert pv_edges(pv, SliceConfig(pv_edges=(7, 70))) == [7, 70]
    slices, info = make_slices(np.array([4, 5, 60]), np.array([0, 10, 100]), SliceConfig(pv_edges=(10, 100)))
    assert list(slices["pv"]) == ["tail (PV 0-9)", "torso (PV 10-99)", "head (PV 100+)"]
    assert [m.tolist() for m in slices["pv"].values()] == [[True, False, False], [False, True, False], [False, False, True]]
    assert info["pv_edges"] == [10, 100]


def test_report_on_a_tiny_world(tiny_work, tiny_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(tiny_work), "--runs", *map(str, tiny_runs.values()), "--out", str(out),
                 "--bootstrap", "100"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"base_20", "attention_20", "oracle"}
    for name in ("auc_by_activity.png", "auc_by_pv.png", "storage_vs_auc.png", "attention_attention_20.png"):
        assert (out / name).stat().st_size > 1000, name
    overall = report["models"]["attention_20"]["all"]["all"]["auc"]
    assert overall["low"] <= overall["value"] <= overall["high"]
    assert report["models"]["oracle"]["all"]["all"]["auc"]["value"] > overall["value"]
    assert list(report["models"]["base_20"]["activity"]) == ["0-4", "5-19", "20-49", "50+"]
    storage = report["storage"]["models"]
    assert storage["attention_20"]["parts"]["neighbor_tables"] > 0 and "neighbor_tables" not in storage["base_20"]["parts"]
    assert storage["attention_20"]["if_neighbors_in_every_example"]["total_bytes"] > storage["attention_20"]["total_bytes"]
    profile = report["attention_profiles"]["attention_20"]
    assert len(profile["neighbor_rank"]["query"]) == 11 and len(profile["history_position"]["item"]) == 20
    markdown = (out / "report.md").read_text()
    for heading in ("## Overall", "## By user activity", "## By candidate query PV", "## Storage", "## Attention in attention_20"):
        assert heading in markdown
    assert "report.md" in capsys.readouterr().out

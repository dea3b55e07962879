"""Evaluation: metrics by hand, the `*` rule across seeds, slice minimums, OOV shares, baselines, reports."""
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from dropdown_rank.cli import main
from dropdown_rank.evaluate.bootstrap import MIN_CLICKING_USERS, Scorer, bootstrap_report
from dropdown_rank.evaluate.metrics import SortedScores, per_user_auc, request_ranks
from dropdown_rank.evaluate.markdown import CONSTANT, LEGACY, PERSONAL, render
from dropdown_rank.evaluate.oov import oov_flags, oov_shares
from dropdown_rank.evaluate.report import _aligned_frame, _pairs, personal_scores, train_click_rate
from dropdown_rank.evaluate.slices import (SliceConfig, assign, bucket_labels, candidate_degree, candidate_freshness, make_slices,
                                          pv_edges)
from dropdown_rank.evaluate.storage import ROW_FEATURES
from dropdown_rank.tables import DailyTables, NeighborTable
from dropdown_rank.workdir import read_samples


def auc(scores, labels) -> float:
    return float(SortedScores(np.asarray(scores), np.asarray(labels)).auc(np.ones(len(scores))))


def test_auc_by_hand_with_ties_and_weights():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    rng = np.random.default_rng(0)
    scores, labels, weights = rng.integers(0, 20, 500) / 20, rng.random(500) < 0.3, rng.random(500)
    many = SortedScores(scores, labels).auc(np.stack([weights, np.ones(500)]))
    assert many[0] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12)
    assert many[1] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    users = rng.integers(0, 40, 500)  # weights per cluster, gathered to the impressions
    user_weights = rng.poisson(1.0, (3, 40)).astype(np.float32)
    clustered = SortedScores(scores, labels, clusters=users).auc(user_weights)
    for r in range(3):
        assert clustered[r] == pytest.approx(roc_auc_score(labels, scores, sample_weight=user_weights[r][users]), abs=1e-9)


def test_per_user_auc_by_hand_skips_one_class_users():
    users = np.array([0, 0, 0, 1, 1, 2, 2])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.6])
    labels = np.array([1, 0, 0, 1, 0, 0, 0])
    user_auc, counts = per_user_auc(users, scores, labels, 3)
    assert user_auc[:2].tolist() == [1.0, 0.0] and np.isnan(user_auc[2])
    report = bootstrap_report(labels, users, {"m": scores}, {"all": {"all": np.ones(7, bool)}}, replicates=10)
    assert report["models"]["m"]["all"]["all"]["gauc"]["value"] == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)
    rng = np.random.default_rng(3)  # ties within users, against scikit-learn user by user
    users, scores, labels = rng.integers(0, 30, 600), rng.integers(0, 6, 600) / 6, rng.random(600) < 0.3
    user_auc, counts = per_user_auc(users, scores, labels, 30)
    for u in range(30):
        y = labels[users == u]
        expected = roc_auc_score(y, scores[users == u]) if 0 < y.sum() < len(y) else np.nan
        assert user_auc[u] == pytest.approx(expected, abs=1e-12, nan_ok=True) and counts[u] == len(y)


def test_the_reports_gauc_and_logloss_intervals_are_those_of_the_user_bootstrap_recomputed_by_hand():
    """The real path (``bootstrap_report``): each replicate reweights users by Poisson(1) draws; GAUC and logloss of
    a replicate, recomputed here from scikit-learn per user and the same draws, give the report's percentile interval."""
    rng = np.random.default_rng(11)
    users = np.repeat(np.arange(60), 12)
    labels = (rng.random(len(users)) < 0.3).astype(float)
    scores = np.clip(0.3 + 0.3 * labels - 0.15 + rng.normal(0, 0.2, len(users)), 0.01, 0.99)
    replicates, seed = 300, 4
    report = bootstrap_report(labels, users, {"m": scores}, {"all": {"all": np.ones(len(users), bool)}},
                              replicates=replicates, seed=seed, chunk=replicates)
    cell = report["models"]["m"]["all"]["all"]
    weights = np.random.default_rng(seed).poisson(1.0, size=(replicates, 60)).astype(np.float64)
    loss = -(labels * np.log(scores) + (1 - labels) * np.log(1 - scores))
    user_auc = np.array([roc_auc_score(labels[users == u], scores[users == u]) if 0 < labels[users == u].sum() < 12 else np.nan
                         for u in range(60)])
    both = ~np.isnan(user_auc)
    logloss = (weights[:, users] * loss).sum(axis=1) / weights[:, users].sum(axis=1)
    gauc = (weights[:, both] * 12 * user_auc[both]).sum(axis=1) / (weights[:, both] * 12).sum(axis=1)
    assert cell["logloss"]["value"] == pytest.approx(log_loss(labels, scores), abs=1e-9)
    assert cell["gauc"]["value"] == pytest.approx(np.nanmean(user_auc), abs=1e-9)  # equal user sizes: the plain mean
    for metric, draws in (("logloss", logloss), ("gauc", gauc)):
        low, high = np.percentile(draws, [2.5, 97.5])
        assert (cell[metric]["low"], cell[metric]["high"]) == pytest.approx((low, high), abs=1e-6), metric
        assert cell[metric]["low"] < cell[metric]["value"] < cell[metric]["high"]


# Three requests. r0: the click is ranked 2nd. r1: two clicks; the 0.8 tie between a non-click and a
# click is broken pessimistically (non-click first), so the clicks are ranked 2nd and 4th. r2: no click.
TOY_REQUESTS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
TOY_SCORES = np.array([0.9, 0.5, 0.1, 0.2, 0.8, 0.8, 0.3, 0.7, 0.6])
TOY_LABELS = np.array([0, 1, 0, 1, 0, 1, 0, 0, 0])
TOY_MRR = (1 / 2 + 1 / 2) / 2
TOY_NDCG = ((1 / np.log2(3)) / 1 + (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))) / 2


def test_mrr_and_ndcg_by_hand_on_three_requests():
    assert request_ranks(TOY_REQUESTS, TOY_SCORES, TOY_LABELS).tolist() == [1, 2, 3, 4, 1, 2, 3, 1, 2]
    # Through the report's machinery (users = requests here), and a slice that keeps only r1's 4th-ranked
    # click: ranks stay those of the whole request, IDCG is for one click.
    users = TOY_REQUESTS
    slices = {"all": {"all": np.ones(9, bool)}, "part": {"late": np.isin(np.arange(9), [3, 6])}}
    report = bootstrap_report(TOY_LABELS, users, {"m": TOY_SCORES}, slices, replicates=10, requests=TOY_REQUESTS)
    cell = report["models"]["m"]["all"]["all"]
    assert cell["mrr"]["value"] == pytest.approx(TOY_MRR, abs=1e-12) and cell["ndcg@10"]["value"] == pytest.approx(TOY_NDCG, abs=1e-12)
    assert (cell["clicked_requests"], cell["requests_without_click"]) == (2, 1)
    late = report["models"]["m"]["part"]["late"]
    assert late["mrr"]["value"] == pytest.approx(1 / 4) and late["ndcg@10"]["value"] == pytest.approx(1 / np.log2(5))


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


def seeded_scorers(rng, effects: dict, users, labels):
    """One scorer per (model, seed): the label signal times the seed's effect, plus noise."""
    return {f"{m} [seed {k}]": Scorer(m, effect * labels + rng.normal(0, 1.0, len(labels)), seed=k)
            for m, per_seed in effects.items() for k, effect in enumerate(per_seed)}


def star_world(rng, num_users=400):
    users = np.repeat(np.arange(num_users), 25)
    labels = (rng.random(len(users)) < 0.2).astype(float)
    return users, labels


def test_star_needs_the_interval_and_every_seed():
    rng = np.random.default_rng(11)
    users, labels = star_world(rng)
    slices = {"all": {"all": np.ones(len(users), bool)}}
    # a's seed mean is far above b's, but a's seed 2 is below every seed of b.
    scorers = seeded_scorers(rng, {"a": [1.6, 1.6, 0.7], "b": [0.9, 0.9, 0.9]}, users, labels)
    out = bootstrap_report(labels, users, scorers, slices, replicates=100, seed=0)
    cell = out["pairs"][0]["auc"]
    assert (out["pairs"][0]["a"], out["pairs"][0]["b"]) == ("a", "b")
    assert cell["interval_excludes_0"] and cell["low"] > 0
    assert not cell["seeds_agree"] and cell["seed_differences"][0] < 0 < cell["seed_differences"][1]
    assert not cell["significant"]
    # The group value is the mean of the seeds' exact AUCs, and the interval is the percentile interval
    # of the seed-averaged replicate differences: recomputed here with scikit-learn and the same weights.
    exact = {k: roc_auc_score(labels, s.scores) for k, s in scorers.items()}
    a_mean = np.mean([v for k, v in exact.items() if k.startswith("a ")])
    b_mean = np.mean([v for k, v in exact.items() if k.startswith("b ")])
    assert out["models"]["a"]["all"]["all"]["auc"]["value"] == pytest.approx(a_mean, abs=1e-12)
    assert cell["value"] == pytest.approx(a_mean - b_mean, abs=1e-12)
    weights = np.random.default_rng(0).poisson(1.0, size=(100, 400))
    draws = [np.mean([roc_auc_score(labels, s.scores, sample_weight=weights[r][users]) for s in scorers.values() if s.group == "a"])
             - np.mean([roc_auc_score(labels, s.scores, sample_weight=weights[r][users]) for s in scorers.values() if s.group == "b"])
             for r in range(100)]
    assert [cell["low"], cell["high"]] == pytest.approx(np.percentile(draws, [2.5, 97.5]).tolist(), abs=1e-9)

    # Every seed of a above every seed of b, and the interval excludes 0: starred.
    scorers = seeded_scorers(rng, {"a": [1.6, 1.5, 1.7], "b": [0.9, 0.8, 1.0]}, users, labels)
    cell = bootstrap_report(labels, users, scorers, slices, replicates=100, seed=0)["pairs"][0]["auc"]
    assert cell["interval_excludes_0"] and cell["seeds_agree"] and cell["significant"]
    # One seed each: the rule still works (the sign check is the single difference).
    scorers = seeded_scorers(rng, {"a": [1.6], "b": [0.9]}, users, labels)
    out = bootstrap_report(labels, users, scorers, slices, replicates=100, seed=0)
    assert out["models"]["a"]["all"]["all"]["auc"]["sd"] is None and out["pairs"][0]["auc"]["significant"]


def test_holm_adjusts_by_hand_and_a_family_of_many_cells_takes_back_a_lone_star():
    from dropdown_rank.evaluate.bootstrap import holm, p_value

    # Holm by hand: sorted p 0.01, 0.02, 0.03, 0.2 -> 4 x 0.01, max(0.04, 3 x 0.02), max(0.06, 2 x 0.03), max(0.06, 0.2).
    assert holm([0.03, 0.01, 0.2, 0.02]).tolist() == pytest.approx([0.06, 0.04, 0.2, 0.06])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1
    # The p-value of a normal difference 1.96 standard errors from 0 is 0.05.
    replicates = np.random.default_rng(0).normal(0.0, 1.0, 200_000)
    assert p_value(replicates, 1.96 * replicates.std(ddof=1)) == pytest.approx(0.05, abs=1e-4)
    assert p_value(np.zeros(10), 0.0) == 1.0 and p_value(np.zeros(10), 0.1) == 0.0

    rng = np.random.default_rng(11)
    users, labels = star_world(rng)
    # A clear difference in one bucket: its family is the bucket's five metrics, and a strong AUC star survives.
    scorers = seeded_scorers(rng, {"a": [1.6, 1.5, 1.7], "b": [0.9, 0.8, 1.0]}, users, labels)
    one = bootstrap_report(labels, users, scorers, {"all": {"all": np.ones(len(users), bool)}}, replicates=200, seed=0)
    cells = {m: one["pairs"][0][m] for m in ("auc", "gauc", "logloss", "mrr", "ndcg@10")}
    assert {c["family_size"] for c in cells.values()} == {5}
    assert cells["auc"]["significant"] and cells["auc"]["significant_holm"]
    np.testing.assert_allclose([c["holm_p"] for c in cells.values()], holm([c["p_value"] for c in cells.values()]))
    # A borderline star: the interval barely excludes 0 on one cell (p just under 0.05); among 5 cells Holm takes it back.
    borderline = {"value": 0.01, "low": 0.0001, "high": 0.02, "p_value": 0.04, "significant": True}
    others = [{"value": 0.0, "low": -1.0, "high": 1.0, "p_value": 0.9, "significant": False} for _ in range(4)]
    rows = [{"a": "a", "b": "b", "auc": borderline}] + [{"a": "a", "b": "b", "auc": c} for c in others]
    from dropdown_rank.evaluate.bootstrap import correct_families
    correct_families(rows, ("auc",))
    assert borderline["holm_p"] == pytest.approx(0.2) and borderline["family_size"] == 5 and not borderline["significant_holm"]
    rows = [{"a": "a", "b": "b", "auc": dict(borderline)}]
    correct_families(rows, ("auc",))
    assert rows[0]["auc"]["significant_holm"]  # alone in its family it stands
    from dropdown_rank.evaluate.markdown import difference_text
    assert difference_text(rows[0]["auc"]).endswith("] *†") and difference_text(borderline).endswith("] *")


def test_a_slice_below_the_minimums_gets_no_interval_and_no_star():
    rng = np.random.default_rng(5)
    users, labels = star_world(rng, num_users=200)
    single = users == 0  # the real case: a bucket of 25 impressions from one user
    labels[single] = np.arange(25) % 3 == 0
    clicking = np.unique(users[labels == 1])
    enough = np.isin(users, clicking[:MIN_CLICKING_USERS])  # exactly 30 users with a click (and plenty of non-clicks)
    short = np.isin(users, clicking[:MIN_CLICKING_USERS - 1])
    slices = {"all": {"all": np.ones(len(users), bool)}, "s": {"one user": single, "30": enough, "29": short}}
    scores = {"a": 2.0 * labels + rng.normal(0, 1, len(users)), "b": rng.normal(0, 1, len(users))}
    out = bootstrap_report(labels, users, scores, slices, replicates=100, seed=0)
    for bucket in ("one user", "29"):
        cell = out["models"]["a"]["s"][bucket]
        assert cell["too_few"] and cell["auc"]["too_few"] == "too few users/clicks" and "low" not in cell["auc"]
        diff = next(p for p in out["pairs"] if p["bucket"] == bucket)["auc"]
        assert "low" not in diff and not diff["significant"]
    assert out["models"]["a"]["s"]["one user"]["auc"]["value"] == pytest.approx(roc_auc_score(labels[single], scores["a"][single]))
    cell = out["models"]["a"]["s"]["30"]
    assert not cell["too_few"] and cell["auc"]["high"] > cell["auc"]["low"]
    assert next(p for p in out["pairs"] if p["bucket"] == "30")["auc"]["significant"]


def test_oov_shares_on_a_toy_vocabulary():
    samples = pa.table({
        "user_id": ["u1", "u2", "u3", "u1"],
        "candidate": ["a", "z", "b", "a"],
        "query_history": [["a", "b"], ["x"], [], ["b", "a", "q"]],  # "q" is beyond L=2: not read, not OOV
        "item_history": [["i1"], ["i1", ""], ["i9"], ["i1", "i1", "i7"]],  # "" is padding, never OOV
    })
    vocabulary = {"users": pa.array(["u1", "u2"]), "queries": pa.array(["a", "b"]), "items": pa.array(["i1"])}
    flags = oov_flags(samples, vocabulary, seq_len=2)
    assert flags["user"].tolist() == [False, False, True, False]
    assert flags["candidate"].tolist() == [False, True, False, False]
    assert flags["query_history"].tolist() == [False, True, False, False]
    assert flags["item_history"].tolist() == [False, False, True, False]
    shares = oov_shares(flags, {"all": {"all": np.ones(4, bool)}, "s": {"first two": np.arange(4) < 2, "last two": np.arange(4) >= 2}})
    assert shares["all"]["all"]["history"] == 0.5 and shares["all"]["all"]["user"] == 0.25
    assert shares["s"]["first two"] == {"user": 0.0, "candidate": 0.5, "history": 0.5, "query_history": 0.5, "item_history": 0.0}
    assert shares["s"]["last two"]["user"] == 0.5 and shares["s"]["last two"]["history"] == 0.5
    assert oov_flags(samples, vocabulary, seq_len=3)["query_history"].tolist() == [False, True, False, True]


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
    truth = auc(score, label)  # population AUC, from 1.2M impressions
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
    assert bucket_labels((1, 5)) == ["0", "1-4", "5+"] and bucket_labels((0, 1, 3)) == ["0", "1-2", "3+"]
    assert [m.tolist() for m in slices["pv"].values()] == [[True, False, False], [False, True, False], [False, False, True]]
    assert info["pv_edges"] == [10, 100]


def test_personal_count_ranks_by_count_then_position():
    # One request of five: counts 0, 2, 2, 0, 1 at positions 0..4. Count first (2, 2, 1, 0, 0), equal counts by
    # position: rank 1 = position 1, then 2, 4, 0, 3.
    count, position = np.array([0, 2, 2, 0, 1]), np.arange(5)
    scores = personal_scores(count, position)
    assert request_ranks(np.zeros(5, int), scores, np.zeros(5)).tolist() == [4, 1, 2, 5, 3]
    # One more past query outranks any position: count 1 at the last position 9 beats count 0 at position 0.
    assert personal_scores(np.array([0, 1]), np.array([0, 9]))[1] > personal_scores(np.array([0, 1]), np.array([0, 9]))[0]
    # Where the count separates clicks perfectly the AUC is 1 whatever the positions; with no counts at all it is the
    # legacy order's.
    labels = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    position = np.array([3, 0, 2, 1, 0, 1, 2, 3])
    assert auc(personal_scores(labels * 3, position), labels) == 1.0
    assert auc(personal_scores(np.zeros(8), position), labels) == pytest.approx(roc_auc_score(labels, -position))


def write_shards(samples_dir, split, frames):
    for i, frame in enumerate(frames):
        (samples_dir / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), samples_dir / split / f"part-{i:05d}.parquet")


def baseline_world(rng, with_count=True, num_users=300):
    """Seeded runs of one model and test samples over ``num_users`` users with 8 impressions each.

    The personal count marks about two thirds of the clicks (and no non-click); the model's seeds separate clicks
    better, so model - personal count is positive."""
    users = np.repeat(np.arange(num_users), 8)
    position = np.tile(np.arange(8), num_users)
    labels = (rng.random(len(users)) < 0.25).astype(np.int8)
    frame = pd.DataFrame({"request_id": users.astype(str), "candidate": [f"q{i}" for i in range(len(users))],
                          "user_id": users.astype(str), "position": position, "label": labels})
    runs = {f"m [seed {k}]": {"dir": f"run{k}", "name": "m", "seed": k,
                              "predictions": frame.assign(prediction=1 / (1 + np.exp(-(3.0 * labels - 1.5 + rng.normal(0, 1, len(users))))))}
            for k in (0, 1)}
    columns = {"position": position}
    if with_count:
        columns["user_candidate_count"] = (labels * rng.integers(0, 3, len(users))).astype(np.int32)
    return frame, runs, pa.table(columns)


def test_constant_ctr_and_personal_count_are_scored_and_paired_like_the_legacy_order(tmp_path):
    rng = np.random.default_rng(4)
    write_shards(tmp_path / "samples", "train", [pd.DataFrame({"label": [1, 0, 0, 0, 0, 0, 0, 0]}, dtype="int8"),
                                                 pd.DataFrame({"label": [1, 0, 0, 0, 1, 0, 0, 0]}, dtype="int8")])
    work = SimpleNamespace(samples_dir=tmp_path / "samples", truth=lambda: None)
    p, train_rows = train_click_rate(work)
    assert (p, train_rows) == (3 / 16, 16)

    frame, runs, samples = baseline_world(rng)
    _, scorers, click_model = _aligned_frame(runs, work, samples, p)
    assert click_model is None and "random order" not in scorers  # no truth: no simulated A/B test
    assert set(scorers) == {"m [seed 0]", "m [seed 1]", LEGACY, PERSONAL, CONSTANT}
    assert not scorers[PERSONAL].probability and scorers[CONSTANT].probability
    count = samples.column("user_candidate_count").to_numpy()
    assert np.array_equal(scorers[PERSONAL].scores, count * 8.0 - frame["position"].to_numpy())
    pairs = _pairs(["m"], scorers)
    assert {("m", LEGACY), ("m", PERSONAL), ("m", CONSTANT)} <= set(pairs)

    labels = frame["label"].to_numpy().astype(float)
    users = pd.factorize(frame["user_id"])[0]
    out = bootstrap_report(labels, users, scorers, {"all": {"all": np.ones(len(frame), bool)}}, replicates=100, seed=0,
                           requests=pd.factorize(frame["request_id"])[0], pairs=pairs)
    overall = out["models"]
    # The constant CTR: AUC 0.5 by construction, logloss of the train rate on the test labels, by hand.
    q = labels.mean()
    assert overall[CONSTANT]["all"]["all"]["auc"]["value"] == 0.5
    assert overall[CONSTANT]["all"]["all"]["logloss"]["value"] == pytest.approx(-(q * np.log(p) + (1 - q) * np.log(1 - p)), abs=1e-12)
    assert "logloss" not in overall[PERSONAL]["all"]["all"]
    assert overall[PERSONAL]["all"]["all"]["auc"]["value"] == pytest.approx(roc_auc_score(labels, count * 8.0 - frame["position"]), abs=1e-12)
    # model - personal count: the difference of the seed means, starred (interval above 0, both seeds above).
    vs_personal = next(r for r in out["pairs"] if (r["a"], r["b"]) == ("m", PERSONAL))
    assert vs_personal["auc"]["value"] == pytest.approx(overall["m"]["all"]["all"]["auc"]["value"] - overall[PERSONAL]["all"]["all"]["auc"]["value"])
    assert len(overall["m"]["all"]["all"]["auc"]["per_seed"]) == 2 and vs_personal["auc"]["significant"]
    assert set(vs_personal) >= {"gauc", "mrr", "ndcg@10"} and "logloss" not in vs_personal
    vs_constant = next(r for r in out["pairs"] if (r["a"], r["b"]) == ("m", CONSTANT))
    assert vs_constant["logloss"]["value"] == pytest.approx(overall["m"]["all"]["all"]["logloss"]["value"] - overall[CONSTANT]["all"]["all"]["logloss"]["value"])

    # When the test rate equals the train rate, the constant's logloss is the entropy of p.
    balanced = np.array([1] * 3 + [0] * 13)
    constant = Scorer(CONSTANT, np.full(16, p))
    cell = bootstrap_report(balanced, np.arange(16), {CONSTANT: constant}, {"all": {"all": np.ones(16, bool)}}, replicates=10)
    assert cell["models"][CONSTANT]["all"]["all"]["logloss"]["value"] == pytest.approx(-(p * np.log(p) + (1 - p) * np.log(1 - p)), abs=1e-12)

    # Old work directories: test samples without user_candidate_count get no personal baseline and no error.
    _, runs, samples = baseline_world(rng, with_count=False)
    _, scorers, click_model = _aligned_frame(runs, work, samples, p)
    assert click_model is None and "random order" not in scorers  # no truth: no simulated A/B test
    assert PERSONAL not in scorers and CONSTANT in scorers and ("m", PERSONAL) not in _pairs(["m"], scorers)


def hand_tables():
    """q2q snapshots at ts 100 and 200, K = 6, nodes a, b, c: degrees a 1 / 6, b 5 / 0, c 0 / 2."""
    ids = np.zeros((2, 4, 6), np.int32)
    ids[0, 1, :1] = [2]
    ids[0, 2, :5] = [1, 3, 1, 3, 1]
    ids[1, 1, :6] = [2, 3, 2, 3, 2, 3]
    ids[1, 3, :2] = [1, 2]
    zeros = np.zeros_like(ids[0])
    nodes = np.array(["", "a", "b", "c"], dtype=object)
    return DailyTables.from_snapshots([NeighborTable("q2q", nodes, ids[day], zeros.astype(np.float32), zeros.astype(np.int64), zeros, ts)
                                       for day, ts in enumerate((100, 200))])


def test_candidate_degree_reads_the_rows_snapshot():
    tables = hand_tables()
    # A row reads the latest snapshot starting at or before it (200 itself reads the second); before every snapshot
    # the first (as the model does); unknown candidates have no neighbors.
    candidates = np.array(["a", "a", "a", "a", "b", "b", "c", "zzz", "c"], dtype=object)
    request_ts = np.array([150, 199, 200, 50, 100, 250, 300, 250, 199])
    degree = candidate_degree(candidates, request_ts, tables)
    assert degree.tolist() == [1, 1, 6, 1, 5, 0, 2, 0, 0]
    nothing = np.zeros_like(tables[0].ids)  # a graph without a single edge: every degree is 0
    no_edges = DailyTables.from_snapshots([NeighborTable("q2q", tables.nodes, nothing, nothing.astype(np.float32), nothing.astype(np.int64),
                                                         nothing, 100)])
    assert candidate_degree(candidates, request_ts, no_edges).tolist() == [0] * 9
    slices, info = make_slices(np.zeros(9), np.zeros(9), SliceConfig(pv_edges=(1, 2)), degree, neighbors=6)
    assert list(slices["degree"]) == ["0", "1-4", "5+"] and info["degree_edges"] == [1, 5]
    assert [np.flatnonzero(m).tolist() for m in slices["degree"].values()] == [[5, 7, 8], [0, 1, 3, 6], [2, 4]]
    # With K = 4 no node reaches 5 neighbors: the edge is dropped rather than leaving an empty bucket.
    slices, info = make_slices(np.zeros(9), np.zeros(9), SliceConfig(pv_edges=(1, 2)), np.minimum(degree, 4), neighbors=4)
    assert list(slices["degree"]) == ["0", "1+"] and info["degree_edges"] == [1]
    assert "degree" not in make_slices(np.zeros(9), np.zeros(9), SliceConfig(pv_edges=(1, 2)))[0]


def test_candidate_freshness_by_hand_at_the_edges():
    day = 86400
    vocabulary, known_since = ["old", "new", "later"], np.array([0, 10 * day, 20 * day])
    candidates = np.array(["old", "new", "new", "new", "later", "later", "zzz"], dtype=object)
    # "new" entered at day 10: fresh up to 7 days later exclusive; "later" is known only from day 20, so a request
    # before that reads it as a lagged vocabulary does (outside), and at day 20 it has just entered.
    request_ts = np.array([30 * day, 10 * day, 17 * day - 1, 17 * day, 20 * day - 1, 20 * day, 0])
    fresh = candidate_freshness(candidates, request_ts, vocabulary, known_since, fresh_days=7)
    assert fresh.tolist() == ["known longer", "entered within 7 days", "entered within 7 days", "known longer",
                              "outside the vocabulary", "entered within 7 days", "outside the vocabulary"]
    assert candidate_freshness(candidates[:1], request_ts[:1], vocabulary, known_since, 1).tolist() == ["known longer"]
    slices, info = make_slices(np.zeros(7), np.zeros(7), SliceConfig(pv_edges=(1, 2)), freshness=fresh)
    assert [np.flatnonzero(m).tolist() for m in slices["freshness"].values()] == [[4, 6], [1, 2, 5], [0, 3]]
    assert info["fresh_days"] == 7
    with pytest.raises(ValueError, match="--fresh-days must be at least 1"):
        SliceConfig(fresh_days=0)


def test_report_on_a_tiny_world(tiny_work, tiny_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(tiny_work), "--runs", *map(str, tiny_runs.values()), "--out", str(out),
                 "--bootstrap", "100"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["test_period"]["test_start"] == json.loads((tiny_work / "build.json").read_text())["split"]["test_start"]
    test_columns = pq.read_schema(sorted((tiny_work / "samples" / "test").glob("part-*.parquet"))[0]).names
    # The personal count needs the build's user_candidate_count; work directories built before it skip the baseline.
    has_count = "user_candidate_count" in test_columns
    samples = read_samples(tiny_work / "samples", "test", columns=["request_id", "user_id", "candidate", "request_ts", "position", "label",
                                                                  "activity"] + ["user_candidate_count"] * has_count)
    truth = samples.merge(pd.read_parquet(tiny_work / "truth.parquet"), on=["request_id", "candidate"], how="left")
    expected = {"base_20", "gat_20", "legacy order", "constant CTR", "oracle", "relevance oracle", "random order",
                "gat_20 (frozen graph)"}
    assert set(report["models"]) == expected | ({"personal count, then position"} if has_count else set())
    assert bool(report["baselines_skipped"]) != has_count
    overall = {m: report["models"][m]["all"]["all"] for m in report["models"]}

    # Exact values: each model's AUC is its run's exact test AUC; the baselines score what they claim.
    for name, run in tiny_runs.items():
        assert overall[name]["auc"]["value"] == pytest.approx(json.loads((run / "metrics.json").read_text())["test_auc"], abs=1e-9)
        assert report["seeds"][name] == [3] and overall[name]["auc"]["sd"] is None
    assert overall["legacy order"]["auc"]["value"] == pytest.approx(roc_auc_score(samples["label"], -samples["position"]), abs=1e-12)
    assert overall["oracle"]["auc"]["value"] == pytest.approx(roc_auc_score(truth["label"], truth["p_click"]), abs=1e-12)
    assert overall["relevance oracle"]["auc"]["value"] == pytest.approx(roc_auc_score(truth["label"], truth["p_relevance"]), abs=1e-12)
    assert "logloss" not in overall["relevance oracle"]
    assert "logloss" not in overall["legacy order"]
    # Legacy MRR, computed independently: rank = logged position + 1 when positions are 0..n-1 per request.
    clicked = samples[samples["label"] == 1]
    first_rank = clicked.groupby("request_id")["position"].min() + 1
    assert (samples.groupby("request_id")["position"].rank(method="first") == samples["position"] + 1).all()
    assert overall["legacy order"]["mrr"]["value"] == pytest.approx(float((1.0 / first_rank).mean()), abs=1e-12)
    assert overall["legacy order"]["clicked_requests"] == len(first_rank)
    assert overall["legacy order"]["requests_without_click"] == samples["request_id"].nunique() - len(first_rank)
    vs_legacy = next(p for p in report["pairs"] if (p["a"], p["b"], p["slice"]) == ("gat_20", "legacy order", "all"))
    assert vs_legacy["auc"]["value"] == pytest.approx(overall["gat_20"]["auc"]["value"] - overall["legacy order"]["auc"]["value"])
    # The constant CTR: the training split's click rate for every test impression.
    train_rate = read_samples(tiny_work / "samples", "train", columns=["label"])["label"].mean()
    q = samples["label"].mean()
    assert report["constant_ctr"]["train_click_rate"] == pytest.approx(train_rate, abs=1e-12)
    assert overall["constant CTR"]["auc"]["value"] == 0.5
    assert overall["constant CTR"]["logloss"]["value"] == pytest.approx(-(q * np.log(train_rate) + (1 - q) * np.log(1 - train_rate)), abs=1e-12)
    vs_constant = next(p for p in report["pairs"] if (p["a"], p["b"], p["slice"]) == ("base_20", "constant CTR", "all"))
    assert vs_constant["logloss"]["value"] == pytest.approx(overall["base_20"]["logloss"]["value"] - overall["constant CTR"]["logloss"]["value"])
    if has_count:
        personal = samples["user_candidate_count"] * (samples["position"].max() + 1.0) - samples["position"]
        assert overall["personal count, then position"]["auc"]["value"] == pytest.approx(roc_auc_score(samples["label"], personal), abs=1e-12)
        assert "logloss" not in overall["personal count, then position"]
        assert any((p["a"], p["b"], p["slice"]) == ("base_20", "personal count, then position", "pv") for p in report["pairs"])
    predictions = pd.read_parquet(tiny_runs["gat_20"] / "predictions" / "test.parquet")
    assert overall["gat_20 (frozen graph)"]["auc"]["value"] == pytest.approx(
        roc_auc_score(predictions["label"], predictions["prediction_frozen"]), abs=1e-12)
    pair = next(p for p in report["pairs"] if p["b"] == "gat_20 (frozen graph)")
    assert pair["seed_pairing"] == "same seed" and report["frozen_graph"] == ["gat_20"]

    # The simulated A/B test, recomputed here with pandas: the legacy order earns the logged expected clicks (positions are
    # 0..n-1), the relevance order earns the most, and a model's order is its scores sorted within each request.
    assert report["online"]["computed"] and report["online"]["position_factor"][:3] == pytest.approx([1.0, 2 ** -0.6, 3 ** -0.6])
    by_request = truth.groupby("request_id")
    assert overall["legacy order"]["expected_clicks"]["value"] == pytest.approx(by_request["p_click"].sum().mean(), abs=1e-12)
    assert overall["legacy order"]["ctr@1"]["value"] == pytest.approx(truth.loc[truth["position"] == 0, "p_click"].mean(), abs=1e-12)
    scored = truth.assign(score=pd.read_parquet(tiny_runs["base_20"] / "predictions" / "test.parquet")["prediction"].to_numpy())
    scored["new_position"] = scored.sort_values(["score", "position"], ascending=[False, True]).groupby("request_id").cumcount()
    model_clicks = (scored["p_relevance"] * (1.0 + scored["new_position"]) ** -0.6).groupby(scored["request_id"]).sum().mean()
    assert overall["base_20"]["expected_clicks"]["value"] == pytest.approx(model_clicks, abs=1e-12)
    best = overall["relevance oracle"]["expected_clicks"]["value"]
    assert all(overall[m]["expected_clicks"]["value"] <= best + 1e-12 for m in overall if "expected_clicks" in overall[m])
    lift = next(p for p in report["pairs"] if (p["a"], p["b"], p["slice"]) == ("base_20", "legacy order", "all"))["expected_clicks_lift"]
    assert lift["value"] == pytest.approx(model_clicks / overall["legacy order"]["expected_clicks"]["value"] - 1, abs=1e-12)
    legacy_clicks = overall["legacy order"]["expected_clicks"]["value"]
    assert overall["base_20"]["oracle_share"]["value"] == pytest.approx((model_clicks - legacy_clicks) / (best - legacy_clicks), abs=1e-9)
    assert "expected_clicks" not in report["models"]["base_20"]["pv"][next(iter(report["models"]["base_20"]["pv"]))]
    if has_count:  # request kind: does a clicked candidate repeat a query the user issued before?
        repeat = samples.assign(r=(samples["label"] == 1) & (samples["user_candidate_count"] > 0)).groupby("request_id")["r"].any()
        clicked_any = samples.groupby("request_id")["label"].max() == 1
        kinds = report["models"]["base_20"]["request_kind"]
        assert [kinds[k]["requests"] for k in ("repeat", "new intent", "no click")] == [
            int(repeat.sum()), int((clicked_any & ~repeat).sum()), int((~clicked_any).sum())]
        novelty = report["models"]["base_20"]["candidate_novelty"]
        assert novelty["new to the user"]["impressions"] == int((samples["user_candidate_count"] == 0).sum())
    # Every cell with an interval is corrected within its pair's family, whose size is that pair's count of such cells.
    for pair in {(p["a"], p["b"]) for p in report["pairs"]}:
        cells = [row[m] for row in report["pairs"] if (row["a"], row["b"]) == pair for m in row
                 if isinstance(row[m], dict) and "low" in row[m] and not m.endswith("_lift")]
        assert all(c["family_size"] == len(cells) and c["holm_p"] >= c["p_value"] for c in cells)
    assert "Holm-Bonferroni" in (out / "report.md").read_text() and "In-sample" not in (out / "report.md").read_text()
    # Freshness against the build's query vocabulary read independently.
    vocab = pd.read_parquet(tiny_work / "vocab" / "queries.parquet").set_index("token")["known_since"]
    since = vocab.reindex(samples["candidate"]).to_numpy()
    outside = np.isnan(since) | (since > samples["request_ts"].to_numpy())
    fresh_cells = report["models"]["base_20"]["freshness"]
    assert fresh_cells["outside the vocabulary"]["impressions"] == int(outside.sum())
    recent = ~outside & (samples["request_ts"].to_numpy() - np.nan_to_num(since) < 7 * 86400)
    assert fresh_cells["entered within 7 days"]["impressions"] == int(recent.sum())
    assert sum(c["impressions"] for c in fresh_cells.values()) == len(samples)

    # Minimums: a bucket is flagged exactly when it has fewer than 30 users with a click (or 30 non-clicks).
    edges = report["slices"]["activity_edges"]
    bucket_of = np.searchsorted(edges, samples["activity"].to_numpy(), side="right")
    for i, (bucket, cell) in enumerate(report["models"]["base_20"]["activity"].items()):
        part = samples[bucket_of == i]
        assert cell["users_with_click"] == part.loc[part["label"] == 1, "user_id"].nunique()
        assert cell["too_few"] == (cell["users_with_click"] < 30 or (part["label"] == 0).sum() < 30)
        assert ("low" in cell["auc"]) != cell["too_few"]
        assert all(not p["auc"]["significant"] for p in report["pairs"] if p["bucket"] == bucket and cell["too_few"])

    # OOV: the user share overall, against the run's vocabulary read independently.
    users = set(pd.read_parquet(tiny_runs["base_20"] / "vocab" / "users.parquet")["token"])
    [oov] = report["oov"]
    assert oov["seq_len"] == 20 and set(oov["models"]) == {"base_20", "gat_20"}
    assert oov["shares"]["all"]["all"]["user"] == pytest.approx(float((~samples["user_id"].isin(users)).mean()), abs=1e-12)

    # Degree slice: each row's candidate degree in the q2q snapshot of its day, found here by merge_asof and per-snapshot
    # degrees, against the bucket sizes the report counted.
    graph = np.load(tiny_work / "graph" / "q2q.npz")
    nodes = [""] + pd.read_parquet(tiny_work / "vocab" / "queries.parquet")["token"].tolist()
    days = pd.DataFrame({"snapshot": np.arange(len(graph["snapshot_ts"])), "ts": graph["snapshot_ts"]})
    rows = pd.merge_asof(samples[["request_ts", "candidate"]].reset_index().sort_values("request_ts"), days, left_on="request_ts",
                         right_on="ts").sort_values("index")
    day_degrees = []
    held = np.zeros((int(graph["rows"]), graph["ids"].shape[1]), bool)
    for day in range(len(graph["snapshot_ts"])):  # each day: the day before, with the rows that change that day
        changed = graph["day"] == day
        held[graph["node"][changed]] = graph["ids"][changed] > 0
        day_degrees.append(held.sum(axis=1))
    degrees = pd.DataFrame(np.stack(day_degrees, axis=1), index=nodes)
    degree = [int(degrees.at[c, s]) if c in degrees.index else 0 for c, s in zip(rows["candidate"], rows["snapshot"])]
    counted = {b: c["impressions"] for b, c in report["models"]["base_20"]["degree"].items()}
    assert list(counted) == ["0", "1-4", "5+"] and report["slices"]["degree_edges"] == [1, 5]
    assert counted == {"0": degree.count(0), "1-4": sum(1 <= d < 5 for d in degree), "5+": sum(d >= 5 for d in degree)}

    for name in ("auc_by_activity.png", "auc_by_pv.png", "auc_by_degree.png", "storage_vs_auc.png", "attention_gat_20.png",
                 "online_lift_by_activity.png"):
        assert (out / name).stat().st_size > 1000, name
    # The tiny test days leave a fixed activity bucket with fewer than 30 users: the report says so and uses quartiles.
    assert list(report["models"]["base_20"]["activity"]) == bucket_labels(report["slices"]["activity_edges"])
    fixed_users = [samples.loc[np.searchsorted([5, 20, 50], samples["activity"], side="right") == i, "user_id"].nunique() for i in range(4)]
    assert (report["slices"]["activity_edges_from"] == "fixed") == (min(fixed_users) >= 30)
    if min(fixed_users) < 30:
        first = samples.drop_duplicates("request_id")["activity"]
        assert report["slices"]["activity_edges"] == sorted({max(1, int(e)) for e in np.quantile(first, [0.25, 0.5, 0.75], method="higher")})
    assert [b.split()[0] for b in report["models"]["base_20"]["pv"]] == ["tail", "torso", "head"]
    storage = report["storage"]["models"]
    assert storage["gat_20"]["parts"]["neighbor_tables"] > 0 and "neighbor_tables" not in storage["base_20"]["parts"]
    assert storage["gat_20"]["parts"]["neighbor_tables"] == sum(f.stat().st_size for f in (tiny_work / "graph").glob("*.npz"))
    assert storage["gat_20"]["if_neighbors_in_every_example"]["total_bytes"] > storage["gat_20"]["total_bytes"]
    assert report["storage"]["measured"]["row_features"] == [c for c in ROW_FEATURES if c in test_columns]
    profile = report["attention_profiles"]["gat_20"]
    assert len(profile["neighbor_rank"]["query"]) == 11 and len(profile["history_position"]["item"]) == 20
    markdown = (out / "report.md").read_text()
    for heading in ("## Overall", "### Against the baselines", "## By user activity", "## By candidate query PV", "## Storage",
                    "## Online: the simulated A/B test", "Why the two can disagree",
                    "## By candidate neighbor degree", "## Attention in gat_20", "legacy order (baseline)", "oracle (ceiling)",
                    "One seed per model", "| constant CTR (baseline) |", "Δlogloss vs constant CTR",
                    f"- Calibration: constant CTR (train click rate p={train_rate:.4f}"):
        assert heading in markdown, heading
    assert ("### Against the personal count" in markdown) == has_count
    pv_section = markdown[markdown.index("## By candidate query PV"):]
    assert pv_section.index("| tail (PV") < pv_section.index("| torso (PV") < pv_section.index("| head (PV")
    # The same report from a work directory without the personal count: one line says why, no table names it.
    older = json.loads(json.dumps(report))
    older["models"].pop(PERSONAL, None)
    older["baselines"].pop(PERSONAL, None)
    older["pairs"] = [p for p in older["pairs"] if PERSONAL not in (p["a"], p["b"])]
    older["baselines_skipped"] = {PERSONAL: "no column"}
    text = render(older)
    assert text.count(PERSONAL) == 1 and f"- Baseline `{PERSONAL}` not scored: no column." in text
    assert "report.md" in capsys.readouterr().out


def copy_run(source, target, seed=None, noise=None, weights=False):
    """A run directory for evaluation only: config, vocabulary, predictions (without the logged position)."""
    if weights:
        shutil.copytree(source, target)
    else:
        for part in ("vocab", "predictions"):
            shutil.copytree(source / part, target / part)
        shutil.copy(source / "config.json", target / "config.json")
    config = json.loads((target / "config.json").read_text())
    config["train"]["seed"] = config["train"]["seed"] if seed is None else seed
    (target / "config.json").write_text(json.dumps(config))
    predictions = pd.read_parquet(target / "predictions" / "test.parquet").drop(columns=["position"], errors="ignore")
    if noise is not None:
        predictions["prediction"] = np.clip(predictions["prediction"] + noise(len(predictions)), 1e-4, 1 - 1e-4)
    predictions.to_parquet(target / "predictions" / "test.parquet")
    return predictions


def test_a_pal_run_reports_its_learned_examination_and_its_logged_position_scores(tiny_work, tiny_runs, tmp_path):
    from dropdown_rank.model import ModelConfig
    from dropdown_rank.train import TrainConfig, train

    pal = tmp_path / "pal"
    metrics = train(tiny_work, pal, ModelConfig(kind="base", position_bias=True), TrainConfig(epochs=2, batch_size=512, seed=3),
                    verbose=0)
    examination = np.asarray(metrics["position_examination"])
    # In two short epochs the tower left its start (every logit 3.0, 0.953) in the world's direction: the world's factor
    # at position 9 is a quarter of the top's (0.966 and 0.935 measured).
    assert examination.shape == (21,) and examination[0] > 0.96 and examination[9] < 0.945
    # The logged-position prediction is the tower's examination of the logged position times the uncalibrated ranker,
    # recovered here from the calibrated prediction through the run's Platt transform.
    scale, bias = metrics["calibration"]["scale"], metrics["calibration"]["bias"]
    for split in ("valid", "test"):
        frame = pd.read_parquet(pal / "predictions" / f"{split}.parquet")
        raw = (np.log(frame["prediction"] / (1 - frame["prediction"])) - bias) / scale
        expected = examination[frame["position"].clip(0, 20)] / (1 + np.exp(-raw))
        np.testing.assert_allclose(frame["prediction_logged_position"], expected, rtol=1e-4)

    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(tiny_work), "--runs", str(tiny_runs["base_20"]), str(pal), "--out", str(out),
                 "--bootstrap", "50", "--no-storage"]) == 0
    report = json.loads((out / "report.json").read_text())
    frame = pd.read_parquet(pal / "predictions" / "test.parquet")
    positions = int(frame["position"].max()) + 1
    bias_section = report["position_bias"]
    assert bias_section["positions"] == positions
    assert bias_section["models"]["base_20+pal"]["per_seed"] == [examination[:positions].tolist()]
    world = np.asarray(bias_section["world"])  # the tiny world's factor, (1 + p)^-0.6 relative to the top
    np.testing.assert_allclose(world / world[0], (1.0 + np.arange(positions)) ** -0.6, rtol=1e-6)
    logged = report["models"]["base_20+pal (logged position)"]["all"]["all"]
    assert logged["auc"]["value"] == pytest.approx(roc_auc_score(frame["label"], frame["prediction_logged_position"]), abs=1e-9)
    assert "expected_clicks" not in logged  # a score that reads the logged position is not re-ranked in the simulated A/B
    assert any((p["a"], p["b"]) == ("base_20+pal (logged position)", LEGACY) and "low" in p["auc"] for p in report["pairs"])
    markdown = (out / "report.md").read_text()
    assert "## Position bias (PAL)" in markdown and (out / report["plots"]["position_examination"]).exists()


def test_runs_of_one_model_are_grouped_as_seeds(tiny_work, tiny_runs, tmp_path):
    """Two runs named gat_20 (seeds 3 and 4) are one model: its value is the mean of the two exact AUCs.

    The runs' predictions lack ``position`` (older runs): the legacy order reads it from the test samples.
    """
    copy_run(tiny_runs["base_20"], tmp_path / "base_20")
    first = copy_run(tiny_runs["gat_20"], tmp_path / "gat_20_seed3", weights=True)
    rng = np.random.default_rng(0)
    second = copy_run(tiny_runs["gat_20"], tmp_path / "gat_20_seed4", seed=4, noise=lambda n: rng.normal(0, 0.05, n))

    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(tiny_work), "--runs", *(str(tmp_path / d) for d in ("base_20", "gat_20_seed3", "gat_20_seed4")),
                 "--out", str(out), "--bootstrap", "50", "--no-storage"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == {"base_20": [3], "gat_20": [3, 4]}
    cell = report["models"]["gat_20"]["all"]["all"]["auc"]
    per_seed = [roc_auc_score(first["label"], first["prediction"]), roc_auc_score(second["label"], second["prediction"])]
    assert cell["per_seed"] == pytest.approx(per_seed, abs=1e-9) and cell["value"] == pytest.approx(np.mean(per_seed), abs=1e-9)
    assert cell["sd"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-9)
    samples = read_samples(tiny_work / "samples", "test", columns=["label", "position"])
    legacy = report["models"]["legacy order"]["all"]["all"]["auc"]["value"]
    assert legacy == pytest.approx(roc_auc_score(samples["label"], -samples["position"]), abs=1e-12)
    assert "### Spread across training seeds" in (out / "report.md").read_text()


def test_runs_trained_on_another_work_directory_are_refused(tiny_logs, tiny_runs, tmp_path):
    from dropdown_rank.build import BuildConfig, build
    from dropdown_rank.evaluate.report import evaluate
    from dropdown_rank.split import SplitConfig

    other = tmp_path / "other_work"
    build(tiny_logs, other, BuildConfig(split=SplitConfig(valid_days=3, test_days=2)), progress=lambda *a: None, progress_bar=False)
    with pytest.raises(ValueError, match="was trained on another work directory"):
        evaluate(other, [tiny_runs["base_20"]], tmp_path / "report", replicates=10)
    assert not (tmp_path / "report").exists()


def test_report_on_validation_days(tiny_work, tiny_runs, tmp_path):
    """``split="valid"``: every number is of the validation days (the runs' valid predictions, the valid samples), and says so."""
    from dropdown_rank.evaluate.report import evaluate

    out = tmp_path / "report"
    report = evaluate(tiny_work, list(tiny_runs.values()), out, replicates=50, storage=False, split="valid", progress=lambda *a: None)
    assert json.loads((out / "report.json").read_text())["split"] == "valid" == report["split"]
    columns = ["request_id", "user_id", "candidate", "position", "label", "user_candidate_count"]
    samples = read_samples(tiny_work / "samples", "valid", columns=columns)
    truth = samples.merge(pd.read_parquet(tiny_work / "truth.parquet"), on=["request_id", "candidate"], how="left")
    test_rows = len(read_samples(tiny_work / "samples", "test", columns=["label"]))
    assert len(samples) != test_rows  # else the row counts below could not tell the splits apart
    overall = {m: report["models"][m]["all"]["all"] for m in report["models"]}
    assert set(overall) == {"base_20", "gat_20", LEGACY, PERSONAL, CONSTANT, "oracle", "relevance oracle", "random order"}
    # The simulated A/B test reads the validation days' truth: the legacy order earns their logged expected clicks.
    assert overall[LEGACY]["expected_clicks"]["value"] == pytest.approx(truth.groupby("request_id")["p_click"].sum().mean(), abs=1e-12)
    assert report["frozen_graph"] == [] and "test_period" not in report  # the frozen graph is scored on test days only
    for name, run in tiny_runs.items():
        predictions = pd.read_parquet(run / "predictions" / "valid.parquet")
        assert len(predictions) == len(samples) == overall[name]["impressions"]
        assert overall[name]["auc"]["value"] == pytest.approx(roc_auc_score(predictions["label"], predictions["prediction"]), abs=1e-9)
        assert sum(c["impressions"] for c in report["models"][name]["pv"].values()) == len(samples)
        assert sum(c["impressions"] for c in report["models"][name]["degree"].values()) == len(samples)
    assert overall[LEGACY]["auc"]["value"] == pytest.approx(roc_auc_score(samples["label"], -samples["position"]), abs=1e-12)
    personal = samples["user_candidate_count"] * (samples["position"].max() + 1.0) - samples["position"]
    assert overall[PERSONAL]["auc"]["value"] == pytest.approx(roc_auc_score(samples["label"], personal), abs=1e-12)
    assert truth["p_click"].notna().all()  # the ground truth covers the validation impressions too
    assert overall["oracle"]["auc"]["value"] == pytest.approx(roc_auc_score(truth["label"], truth["p_click"]), abs=1e-12)
    # The constant CTR stays the training click rate, scored on the validation labels.
    train_rate = read_samples(tiny_work / "samples", "train", columns=["label"])["label"].mean()
    q = samples["label"].mean()
    assert report["constant_ctr"]["train_click_rate"] == pytest.approx(train_rate, abs=1e-12)
    assert overall[CONSTANT]["logloss"]["value"] == pytest.approx(-(q * np.log(train_rate) + (1 - q) * np.log(1 - train_rate)), abs=1e-12)
    users = set(pd.read_parquet(tiny_runs["base_20"] / "vocab" / "users.parquet")["token"])
    assert report["oov"][0]["shares"]["all"]["all"]["user"] == pytest.approx(float((~samples["user_id"].isin(users)).mean()), abs=1e-12)
    assert len(report["attention_profiles"]["gat_20"]["history_position"]["query"]) == 20

    # The period is the work directory's [valid_start, test_start), and the header names the split and its days.
    split = json.loads((tiny_work / "build.json").read_text())["split"]
    period = report["valid_period"]
    assert (period["valid_start"], period["valid_end"]) == (split["valid_start"], split["test_start"])
    assert (period["valid_start_iso"], period["valid_end_iso"]) == (split["valid_start_iso"], split["test_start_iso"])
    markdown = (out / "report.md").read_text()
    header = markdown[:markdown.index("## Overall")]
    assert markdown.startswith("# dropdown_rank evaluation report: validation days (split `valid`)")
    assert f"validation period {split['valid_start_iso']} to {split['test_start_iso']}." in header
    assert "- Split: **valid**" in header and f"- Validation split: {len(samples):,} impressions" in header
    assert "validation-impression quantiles" in header and "test period" not in header and "Test split" not in header
    assert "frozen snapshot" not in markdown
    # The epoch choice and the calibration were made on these days, and the report says for which models.
    assert report["in_sample"] == {"epoch_chosen": ["base_20", "gat_20"], "calibrated": ["base_20", "gat_20"]}
    assert "**In-sample on these days**: the epoch of base_20, gat_20 was chosen on them" in header
    older = {k: v for k, v in report.items() if k != "in_sample"}  # a report written before the record: still said
    assert "predates the per-model record" in render(older)


def test_validation_report_needs_valid_predictions_and_a_known_split(tiny_work, tiny_runs, tmp_path):
    from dropdown_rank.evaluate.report import evaluate

    old = tmp_path / "old_base_20"
    copy_run(tiny_runs["base_20"], old)
    (old / "predictions" / "valid.parquet").unlink()  # a run trained before runs wrote their validation predictions
    with pytest.raises(FileNotFoundError, match=rf"{old}: no predictions/valid.parquet .*retrain it"):
        evaluate(tiny_work, [tiny_runs["gat_20"], old], tmp_path / "report", replicates=10, storage=False, split="valid")
    with pytest.raises(ValueError, match="split must be one of 'test', 'valid', not 'train'"):
        evaluate(tiny_work, [tiny_runs["base_20"]], tmp_path / "report", replicates=10, storage=False, split="train")
    assert not (tmp_path / "report").exists()


def test_a_run_of_a_build_with_only_another_graph_joins_the_report_under_its_graph_settings(tiny_logs, tiny_work, tiny_runs, tmp_path):
    """A graph lever (another --neighbors, --q2q-source, ...) is compared paired with the runs of the first build."""
    from dropdown_rank.build import BuildConfig, GraphConfig, build
    from dropdown_rank.workdir import Work
    from dropdown_rank.evaluate.report import evaluate
    from dropdown_rank.split import SplitConfig

    other = tmp_path / "other_graph"
    build(tiny_logs, other, BuildConfig(split=SplitConfig(valid_days=2, test_days=2), graph=GraphConfig(neighbors=4)),
          progress=lambda *a: None, progress_bar=False)
    assert Work.open(other).fingerprint != Work.open(tiny_work).fingerprint
    run = tmp_path / "run"  # base_20's predictions, as if trained on the other build
    shutil.copytree(tiny_runs["base_20"], run)
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "work": str(other), "work_fingerprint": Work.open(other).fingerprint}))
    report = evaluate(tiny_work, [tiny_runs["base_20"], run], tmp_path / "report", replicates=20, storage=False, progress=lambda *a: None)
    named = "base_20 [graph neighbors=4]"
    assert report["models"][named]["all"]["all"]["auc"] == report["models"]["base_20"]["all"]["all"]["auc"]
    # Its neighbors are not this work's: no slice or storage figure of this work's graph describes it.
    assert report["other_graph_builds"] == {named: str(run)} and "degree" not in report["models"][named]
    assert "Read another build's graph" in (tmp_path / "report" / "report.md").read_text()
    # A run whose build is gone is refused (one whose build has other samples: test_runs_trained_on_another_work_directory_are_refused).
    (run / "config.json").write_text(json.dumps({**saved, "work": str(tiny_work.parent / "nowhere"), "work_fingerprint": "x"}))
    with pytest.raises(ValueError, match="does not hold the same samples and vocabularies"):
        evaluate(tiny_work, [run], tmp_path / "refused", replicates=20, storage=False, progress=lambda *a: None)


def test_a_pal_model_at_any_multiplier_is_paired_with_its_plain_twin():
    from dropdown_rank.evaluate.markdown import _focus_pairs

    configs = {"base_20": {"kind": "base"}, "hgcn_20": {"kind": "hgcn"}, "base_20+pal1x": {"kind": "base", "position_bias": True},
               "hgcn_20+pal": {"kind": "hgcn", "position_bias": True}, "base_20+pal5x-nolag": {"kind": "base", "position_bias": True}}
    pairs = _focus_pairs({"model_configs": configs})
    assert ("base_20+pal1x", "base_20") in pairs and ("hgcn_20+pal", "hgcn_20") in pairs
    assert not any(a == "base_20+pal5x-nolag" for a, _ in pairs)  # its twin, base_20-nolag, is not in the report

"""The simulated A/B test (evaluate/online.py) and the slices that say where a graph can matter (request kind, activity)."""
import numpy as np
import pytest

from dropdown_rank.evaluate.bootstrap import Scorer, bootstrap_report
from dropdown_rank.evaluate.online import ClickModel, order_positions, position_factor, request_values
from dropdown_rank.evaluate.slices import SliceConfig, make_slices, request_kind


def test_position_factor_is_read_off_a_separable_truth_and_refused_otherwise():
    rng = np.random.default_rng(0)
    position = rng.integers(0, 5, size=200)
    relevance = rng.uniform(0.01, 0.9, size=200)
    factor = position_factor((1.0 + position) ** -0.6 * relevance, relevance, position)
    assert factor == pytest.approx((1.0 + np.arange(5)) ** -0.6, rel=1e-12)
    broken = (1.0 + position) ** -0.6 * relevance
    broken[np.flatnonzero(position == 2)[0]] *= 1.01
    with pytest.raises(ValueError, match="position 2"):
        position_factor(broken, relevance, position)
    with pytest.raises(ValueError, match=r"position\(s\) \[3\]"):
        position_factor(relevance[position != 3], relevance[position != 3], np.where(position == 4, 4, position)[position != 3])
    with pytest.raises(ValueError, match="p_relevance 0 and p_click above 0"):
        position_factor(np.r_[(1.0 + position) ** -0.6 * relevance, 0.1], np.r_[relevance, 0.0], np.r_[position, 0])
    with pytest.raises(ValueError, match="increases"):
        position_factor((1.0 + position) * relevance, relevance, position)


def test_order_positions_sort_by_score_within_requests_and_break_ties_by_the_logged_order():
    requests = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.9, 0.9, 0.5, 0.7])
    logged = np.array([0, 2, 1, 0, 1])
    assert order_positions(requests, scores, logged).tolist() == [2, 1, 0, 1, 0]


def test_expected_clicks_by_hand():
    # One request of three candidates; f = 1, 1/2, 1/4. Scores put candidate 2 first, then 0, then 1.
    model = ClickModel(p_relevance=np.array([0.4, 0.2, 0.8]), factor=np.array([1.0, 0.5, 0.25]))
    values = request_values(np.zeros(3, int), np.array([0.5, 0.1, 0.9]), np.arange(3), model, 1)
    assert values["expected_clicks"][0] == pytest.approx(0.8 + 0.4 / 2 + 0.2 / 4)
    assert values["ctr@1"][0] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="covers 2 positions"):
        request_values(np.zeros(3, int), np.zeros(3), np.arange(3), ClickModel(model.p_relevance, model.factor[:2]), 1)


def online_world(rng, num_users=200, per_request=4):
    """Requests of ``per_request`` candidates, one per user, with a separable click model and logged clicks."""
    users = np.repeat(np.arange(num_users), per_request)
    requests = users.copy()
    position = np.tile(np.arange(per_request), num_users)
    relevance = rng.uniform(0.05, 0.6, size=len(users))
    factor = (1.0 + np.arange(per_request)) ** -0.6
    labels = (rng.random(len(users)) < relevance * factor[position]).astype(float)
    return users, requests, position, relevance, factor, labels


def test_bootstrap_scores_orders_lifts_and_oracle_shares():
    rng = np.random.default_rng(1)
    users, requests, position, relevance, factor, labels = online_world(rng)
    noisy = relevance + rng.normal(0, 0.1, size=len(relevance))
    scorers = {"model": Scorer("model", noisy, probability=False), "legacy": Scorer("legacy", -position.astype(float), probability=False),
               "oracle": Scorer("oracle", relevance, probability=False)}
    slices = {"all": {"all": np.ones(len(users), bool)}, "half": {"a": users < 100, "b": users >= 100},
              "per_impression": {"first": position == 0, "rest": position > 0}}
    result = bootstrap_report(labels, users, scorers, slices, replicates=200, requests=requests,
                              pairs=[("model", "legacy"), ("oracle", "legacy")], online=ClickModel(relevance, factor),
                              positions=position, lift=("legacy", "oracle"))
    models = result["models"]
    legacy = (relevance * factor[position]).reshape(-1, 4).sum(axis=1)
    assert models["legacy"]["all"]["all"]["expected_clicks"]["value"] == pytest.approx(legacy.mean())
    assert models["legacy"]["half"]["a"]["expected_clicks"]["value"] == pytest.approx(legacy[:100].mean())
    best = np.sort(relevance.reshape(-1, 4), axis=1)[:, ::-1] @ factor
    assert models["oracle"]["all"]["all"]["expected_clicks"]["value"] == pytest.approx(best.mean())
    model_value = models["model"]["all"]["all"]["expected_clicks"]["value"]
    assert legacy.mean() < model_value < best.mean()
    share = models["model"]["all"]["all"]["oracle_share"]
    assert share["value"] == pytest.approx((model_value - legacy.mean()) / (best.mean() - legacy.mean()))
    assert share["low"] < share["value"] < share["high"] and models["oracle"]["all"]["all"]["oracle_share"]["value"] == pytest.approx(1.0)
    lift = next(p for p in result["pairs"] if (p["a"], p["slice"]) == ("model", "all"))["expected_clicks_lift"]
    assert lift["value"] == pytest.approx(model_value / legacy.mean() - 1) and lift["low"] > 0 and lift["significant"]
    # A slice that cuts requests apart has no per-request value.
    assert "expected_clicks" not in models["model"]["per_impression"]["first"]


def test_the_simulated_ab_needs_users_with_requests_not_users_with_clicks():
    rng = np.random.default_rng(3)
    users, requests, position, relevance, factor, labels = online_world(rng)
    no_click = np.bincount(requests, weights=labels)[requests] == 0
    assert len(np.unique(users[no_click])) >= 30
    scorers = {"model": Scorer("model", relevance + rng.normal(0, 0.1, len(users)), probability=False),
               "legacy": Scorer("legacy", -position.astype(float), probability=False)}
    result = bootstrap_report(labels, users, scorers, {"clicked": {"no": no_click, "yes": ~no_click}}, replicates=100, requests=requests,
                              pairs=[("model", "legacy")], online=ClickModel(relevance, factor), positions=position)
    cell = result["models"]["model"]["clicked"]["no"]
    assert cell["too_few"] and "auc" not in cell  # no click: no AUC, no interval for click metrics
    assert "low" in cell["expected_clicks"] and "low" in cell["ctr@1"]
    # Restricted to other slices, the bucket has no per-request value at all.
    result = bootstrap_report(labels, users, scorers, {"clicked": {"no": no_click, "yes": ~no_click}}, replicates=10, requests=requests,
                              online=ClickModel(relevance, factor), positions=position, online_slices=("all",))
    assert "expected_clicks" not in result["models"]["model"]["clicked"]["no"]


def test_request_kind_uses_the_clicked_candidates_count():
    requests = np.array([0, 0, 1, 1, 2, 2, 3])
    labels = np.array([1, 0, 1, 0, 0, 0, 1])
    # Request 0: the clicked candidate was issued before (repeat); 1: only the unclicked one was (new intent);
    # 2: no click; 3: a click on a never-issued candidate.
    count = np.array([2, 0, 0, 5, 3, 0, 0])
    assert request_kind(requests, labels, count).tolist() == ["repeat"] * 2 + ["new intent"] * 2 + ["no click"] * 2 + ["new intent"]


def test_activity_edges_fall_back_to_quartiles_only_when_a_fixed_bucket_is_nearly_empty():
    rng = np.random.default_rng(2)
    users = np.arange(400)
    heavy = rng.integers(50, 400, size=400)  # every user in 50+: the fixed buckets below 50 are empty
    slices, info = make_slices(heavy, np.ones(400), SliceConfig(), users=users, requests=users)
    assert info["activity_edges"] == sorted({int(e) for e in np.quantile(heavy, [0.25, 0.5, 0.75], method="higher")})
    assert info["activity_edges_from"].startswith("quartiles") and "0-4 0" in info["activity_edges_from"]
    assert all(200 * 0.9 / 2 < mask.sum() < 400 * 0.35 for mask in slices["activity"].values())
    mixed = rng.integers(0, 120, size=2000)  # about 80 users in 0-4, the smallest bucket
    _, info = make_slices(mixed, np.ones(2000), SliceConfig(), users=np.arange(2000), requests=np.arange(2000))
    assert info["activity_edges"] == [5, 20, 50] and info["activity_edges_from"] == "fixed"
    _, info = make_slices(heavy, np.ones(400), SliceConfig(activity_explicit=True), users=users, requests=users)
    assert info["activity_edges"] == [5, 20, 50]

"""Candidate-history relations: the edges between the candidate and the recent queries, by hand, per snapshot, served."""
import numpy as np
import pytest
import tensorflow as tf

from dropdown_rank.workdir import Work
from dropdown_rank.cli import main
from dropdown_rank.dataset import make_dataset
from dropdown_rank.layers import CandidateRelations
from dropdown_rank.model import SIGNATURE, ModelConfig, make_ranker
from dropdown_rank.train import TrainConfig, load_run, predict, predictor, train
from dropdown_rank.vocab import VOCABULARIES
from conftest import made_once

N = 6  # nodes per snapshot in the hand-made tables


def hand_tables():
    """Two snapshots of 6 nodes, K = 3: on day 0 node 2 links to 3 and 4; on day 1 node 5 links to 2."""
    ids = np.zeros((2 * N, 3), np.int32)
    weight = np.zeros((2 * N, 3), np.float32)
    buckets = np.tile(np.array([0, 26], np.int32), (2 * N, 3, 1))
    ids[2], weight[2], buckets[2, :2] = [3, 4, 0], [0.6, 0.4, 0.0], [[10, 28], [12, 27]]
    ids[N + 5], weight[N + 5], buckets[N + 5, 0] = [2, 0, 0], [0.9, 0.0, 0.0], [5, 30]
    return tf.constant(ids), tf.constant(weight), tf.constant(buckets)


def relations(candidate, history, snapshot, history_ts=None, request_ts=3700):
    candidate, history, snapshot = np.array(candidate), np.array(history), np.array(snapshot)
    history_ts = np.full(history.shape, 100) if history_ts is None else np.array(history_ts)
    layer = CandidateRelations(26, 16)
    return layer(tf.constant(candidate), tf.constant(history), tf.constant(history_ts, tf.int64),
                 tf.constant(np.full(len(candidate), request_ts), tf.int64), tf.constant(snapshot * N + candidate),
                 tf.constant(snapshot[:, None] * N + history), *hand_tables()).numpy()


def test_relations_by_hand_both_directions():
    out = relations([3, 5], [[2, 4, 0], [1, 2, 5]], [0, 1], history_ts=[[100, 50, 0], [90, 80, 70]])
    # Request 0: candidate 3 is a neighbor of the latest query 2 (forward edge: weight 0.6, age bucket 10, count bucket 2).
    np.testing.assert_allclose(out[0], [1, np.log1p(1), 0.6, np.log1p(3600 / 3600), 1, 0.6, 10 / 26, 2 / 16], rtol=1e-6)
    # Request 1 (snapshot 1): query 2 is a neighbor of candidate 5 (backward edge); the query equal to the candidate is an
    # exact match, not a relation; the latest query (1) is unrelated.
    np.testing.assert_allclose(out[1], [1, np.log1p(1), 0.9, np.log1p(3620 / 3600), 0, 0, 5 / 26, 4 / 16], rtol=1e-6)


def test_relations_read_the_requests_snapshot_and_ignore_padding():
    # The same request on day 1: node 2's day-0 edges are gone, so nothing relates.
    np.testing.assert_array_equal(relations([3], [[2, 4, 0]], [1]), np.zeros((1, 8)))
    # Padding, a padded candidate and an empty history give zeros.
    np.testing.assert_array_equal(relations([3], [[0, 0, 0]], [0]), np.zeros((1, 8)))
    np.testing.assert_array_equal(relations([0], [[2, 4, 0]], [0]), np.zeros((1, 8)))
    assert relations([3], np.zeros((1, 0), int), [0]).shape == (1, 8)
    # Two related queries: counted, the largest weight kept, recency of the latest related one.
    out = relations([4], [[1, 2, 2]], [0], history_ts=[[3000, 2000, 100]])
    assert out[0, 1] == pytest.approx(np.log1p(2)) and out[0, 2] == pytest.approx(0.4)
    assert out[0, 3] == pytest.approx(np.log1p(1700 / 3600)) and out[0, 4] == 0


@pytest.fixture(scope="module")
def relation_run(tiny_work, tmp_path_factory):
    """Every option on, so that the served-scores check covers the two-hop relations and the session context too."""
    config = ModelConfig(kind="hgcn", relations=True, two_hops=True, session=True)
    root = made_once(tmp_path_factory, "relation_run", lambda out: train(tiny_work, out / "run", config,
                                                                           TrainConfig(epochs=1, batch_size=512, seed=3), verbose=0))
    return root / "run"


def test_a_relation_model_reads_its_rows_day_and_serves_the_same_scores(tiny_work, relation_run, tmp_path):
    ranker = load_run(relation_run)
    assert ranker.config.name == "hgcn_20+rel+2hop+ses"
    features, _ = next(iter(make_dataset(tiny_work / "samples", "train", 20, batch_size=2048, shuffle=True, seed=1)))
    ids = ranker.node_ids(features)["query"]
    work = Work.open(tiny_work)
    daily = make_ranker(ModelConfig(kind="hgcn", relations=True), {n: work.vocabulary(n) for n in VOCABULARIES},
                        {r: work.daily_tables(r) for r in ("q2q", "i2i")})
    own_day = daily.candidate_relations(features, ids).numpy()
    assert (own_day[:, 0] > 0).mean() > 0.05  # the tiny world's histories do reach their candidates through the graph
    # Every row reading the first snapshot instead of its own gives other relations: the day matters.
    first_day = dict(features, request_ts=tf.fill(tf.shape(features["request_ts"]), daily.query_context.snapshot_days[0]))
    shifted = daily.candidate_relations(dict(first_day, query_history_ts=tf.minimum(features["query_history_ts"], daily.query_context.snapshot_days[0])), ids)
    assert not np.allclose(own_day[:, [0, 1, 2, 4, 5, 6, 7]], shifted.numpy()[:, [0, 1, 2, 4, 5, 6, 7]])

    out = tmp_path / "export"
    assert main(["export", "--run", str(relation_run), "--out", str(out)]) == 0
    signature = tf.saved_model.load(str(out)).signatures["serving_default"]
    data = make_dataset(tiny_work / "samples", "test", 20, batch_size=1024)
    expected = predict(predictor(ranker), data)
    got = np.concatenate([signature(**{k: f[k] for k in SIGNATURE})["ctr"].numpy() for f, _ in data])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_relations_need_a_graph():
    with pytest.raises(ValueError, match="--relations reads the q2q neighbor tables"):
        ModelConfig(kind="base", relations=True)
    assert ModelConfig(kind="hgcn", relations=True, position_bias=True).name == "hgcn_20+rel+pal"


def test_two_hops_count_history_queries_that_share_a_neighbor_with_the_candidate():
    ids, weight, buckets = [t.numpy() for t in hand_tables()]
    # Day 0: candidate 2 links to 3 and 4. Node 1 shares both; node 5 shares 3; node 4 is a direct neighbor that also shares 3.
    ids[1, :2], weight[1, :2] = [3, 4], [0.5, 0.5]
    ids[5, 0], weight[5, 0] = 3, 1.0
    ids[4, 0], weight[4, 0] = 3, 1.0
    tables = tf.constant(ids), tf.constant(weight), tf.constant(buckets)
    # History, latest first: 5 (shares 1), 1 (shares 2), 4 (related: one hop, not two), 2 (the candidate itself).
    history, history_ts = np.array([[5, 1, 4, 2]] * 2), np.array([[100, 50, 40, 30]] * 2, np.int64)
    candidate, snapshot = np.array([2, 2]), np.array([0, 1])
    layer = CandidateRelations(26, 16, two_hops=True)
    out = layer(tf.constant(candidate), tf.constant(history), tf.constant(history_ts), tf.constant([3700] * 2, tf.int64),
                tf.constant(snapshot * N + candidate), tf.constant(snapshot[:, None] * N + history), *tables).numpy()
    assert out.shape == (2, 12)
    # Day 0: two queries reached (not 3: the related one and the candidate itself never count); the latest of them is
    # 3600 s old; the most shared neighbors is 2 (a max, not the sum 3).
    np.testing.assert_allclose(out[0, 8:], [1, np.log1p(2), np.log1p(1), np.log1p(2)], rtol=1e-6)
    assert out[0, 0] == 1  # query 4 is related one hop away
    # Day 1 (the same request a day later): only 5 -> 2 exists, a one-hop relation; nothing is two hops away.
    assert out[1, 0] == 1 and np.all(out[1, 8:] == 0)
    # Without two hops the first 8 features are the same.
    one_hop = CandidateRelations(26, 16)(tf.constant(candidate), tf.constant(history), tf.constant(history_ts),
                                         tf.constant([3700] * 2, tf.int64), tf.constant(snapshot * N + candidate),
                                         tf.constant(snapshot[:, None] * N + history), *tables)
    np.testing.assert_allclose(one_hop.numpy(), out[:, :8])


def test_two_hops_and_session_context_need_their_parts():
    with pytest.raises(ValueError, match="--two-hops extends --relations"):
        ModelConfig(kind="hgcn", two_hops=True)
    with pytest.raises(ValueError, match="--session-context pools graph-context vectors"):
        ModelConfig(kind="base", session=True)
    assert ModelConfig(kind="hgcn", relations=True, two_hops=True, session=True).name == "hgcn_20+rel+2hop+ses"

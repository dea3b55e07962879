"""Rankers: raw-string inputs, padding invariance, table swapping, and a few training steps on a tiny world."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from dropdown_rank.workdir import Work
from dropdown_rank.dataset import make_dataset
from dropdown_rank.tables import DailyTables, NeighborTable
from dropdown_rank.layers import GraphContext
from dropdown_rank.model import CTRModel, ModelConfig, make_ranker, table_in_model_space
from dropdown_rank.train import TrainConfig, load_run, make_optimizer, predict, predictor, read_predictions, train
from dropdown_rank.vocab import VOCABULARIES


@pytest.fixture(scope="module")
def tiny(tiny_work):
    work = Work.open(tiny_work)
    vocabularies = {name: work.vocabulary(name) for name in VOCABULARIES}
    tables = {relation: work.neighbor_table(relation) for relation in ("q2q", "i2i")}
    batch = next(iter(make_dataset(work.samples_dir, "train", 50, batch_size=64, shuffle=True, seed=3)))
    return work, vocabularies, tables, batch


def tiny_table(nodes, ids, weight=None):
    ids = np.array(ids, dtype=np.int32)
    weight = np.where(ids > 0, 0.5, 0.0).astype(np.float32) if weight is None else np.array(weight, np.float32)
    return NeighborTable("q2q", np.array(nodes, dtype=object), ids, weight,
                         np.where(ids > 0, 1000, 0).astype(np.int64), np.where(ids > 0, 3, 0).astype(np.int32), 2000)


def read_rows(arrays, keys, neighbors=3):
    """What a ``GraphContext`` holding ``arrays`` reads for ``snapshot * nodes + node`` keys: ids, weights, buckets."""
    context = GraphContext(len(arrays["first_version"]) - 1, neighbors, 4)
    context.set_tables(**arrays)
    return [t.numpy() for t in context.neighbor_rows(tf.constant(keys, tf.int64))]


def test_table_in_model_space_matches_by_string_and_keeps_rank_order():
    # graph rows: 0 "", 1 "a", 2 "b", 3 "c", 4 "zz" (not in the model); a -> [zz, c, b], b -> [a]
    table = tiny_table(["", "a", "b", "c", "zz"], [[0, 0, 0], [4, 3, 2], [1, 0, 0], [0, 0, 0], [1, 0, 0]])
    arrays, stats = table_in_model_space(DailyTables.from_snapshots([table]), ["c", "a", "b", "new"], num_oov=1, neighbors=3)
    # model ids: 0 pad, 1 OOV, 2 "c", 3 "a", 4 "b", 5 "new"; only a and b have rows (zz is not a model token)
    assert arrays["ids"].shape == (3, 3) and stats["row_versions"] == 2
    ids, weight, buckets = read_rows(arrays, np.arange(6))
    assert ids[3].tolist() == [2, 4, 0]  # a -> c, b (zz dropped, order kept)
    assert ids[4].tolist() == [3, 0, 0]
    assert ids[5].tolist() == [0, 0, 0] and ids[:3].sum() == 0
    assert weight[3].tolist() == [0.5, 0.5, 0.0]
    assert buckets[3, :, 0].tolist() == [10, 10, 0]  # age 1000 s at the snapshot: log2 bucket 10
    assert stats == {"tokens_with_table_row": 3, "tokens": 4, "snapshots": 1, "row_versions": 2,
                     "neighbors_dropped_out_of_vocabulary": 1}
    narrower, _ = table_in_model_space(DailyTables.from_snapshots([table]), ["c", "a", "b", "new"], num_oov=1, neighbors=2)
    assert read_rows(narrower, [3], neighbors=2)[0][0].tolist() == [2, 4]
    # A second day: a changes, b keeps its row, c gains one. A key of day 1 reads day 1's rows, and b's unchanged
    # row (stored once) is a day older there.
    later = tiny_table(["", "a", "b", "c", "zz"], [[0, 0, 0], [2, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]])
    later.last_ts[1, 0] = 2000 + 86400 - 10
    later.snapshot_ts = 2000 + 86400
    two, stats = table_in_model_space(DailyTables.from_snapshots([table, later]), ["c", "a", "b", "new"], num_oov=1, neighbors=3)
    assert stats["snapshots"] == 2 and stats["row_versions"] == 4  # a, b on day 0; a, c on day 1
    day0, _, day0_buckets = read_rows(two, np.arange(6))
    np.testing.assert_array_equal(day0, ids)
    day1, _, day1_buckets = read_rows(two, 6 + np.arange(6))
    assert day1[3].tolist() == [4, 0, 0] and day1[4].tolist() == [3, 0, 0] and day1[2].tolist() == [3, 0, 0]
    assert day0_buckets[4, 0, 0] == 10 and day1_buckets[4, 0, 0] == 17  # b's edge: 1000 s old, then 1000 + 86400 s
    assert day1_buckets[3, 0, 0] == 4  # a's new edge: 10 s old


def test_every_day_reads_in_the_model_as_that_days_table_alone(tiny):
    """The model's search over row versions gives, for every day and node of the tiny world, the ids, weights and
    edge buckets a model holding only that day's table reads."""
    work, vocabularies, _, _ = tiny
    for relation, vocab_name in (("q2q", "queries"), ("i2i", "items")):
        history = work.daily_tables(relation)
        arrays, _ = table_in_model_space(history, vocabularies[vocab_name], num_oov=1, neighbors=10)
        nodes = len(arrays["first_version"]) - 1
        every_day = read_rows(arrays, np.arange(len(history) * nodes), neighbors=10)
        for day in range(len(history)):
            alone, _ = table_in_model_space(DailyTables.from_snapshots([history[day]]), vocabularies[vocab_name], num_oov=1,
                                            neighbors=10)
            for got, expected in zip(every_day, read_rows(alone, np.arange(nodes), neighbors=10)):
                np.testing.assert_array_equal(got[day * nodes:(day + 1) * nodes], expected, err_msg=f"{relation} day {day}")


def test_config_names_and_validation():
    assert ModelConfig(kind="hgcn", id_time_only=True).name == "hgcn*_20"
    assert ModelConfig(kind="base", seq_len=50).name == "base_50"
    assert ModelConfig(kind="hgcn", position_bias=True, lagged_vocab=False).name == "hgcn_20+pal-nolag"
    with pytest.raises(ValueError, match="--id-time-only applies to GNN models"):
        ModelConfig(kind="base", id_time_only=True)
    assert ModelConfig.from_dict(ModelConfig(kind="gat").to_dict()) == ModelConfig(kind="gat")
    # a run saved when the graph-attention kind was called attention loads, resumes and evaluates as gat
    renamed = ModelConfig.from_dict({**ModelConfig(kind="gat", id_time_only=True).to_dict(), "kind": "attention"})
    assert renamed == ModelConfig(kind="gat", id_time_only=True) and renamed.name == "gat*_20"
    with pytest.raises(ValueError, match="model kind must be one of"):
        ModelConfig(kind="attention")
    # a run saved before request features existed read sequences only, and keeps its name
    saved = {k: v for k, v in ModelConfig(kind="base").to_dict().items() if k != "features"}
    assert ModelConfig.from_dict(saved).features == () and ModelConfig.from_dict(saved).name == "base_20-nofeat"
    with pytest.raises(ValueError, match="unknown feature groups"):
        ModelConfig(features=("clicks",))


@pytest.mark.parametrize("kind", ["base", "hgcn", "gat"])
def test_padded_positions_have_no_effect_and_long_histories_keep_the_latest(tiny, kind):
    _, vocabularies, tables, (features, _) = tiny
    ranker = make_ranker(ModelConfig(kind=kind, seq_len=20), vocabularies, tables)
    logits = ranker(features).numpy()
    assert logits.shape == (64,)
    # Garbage timestamps where the history is padding must not move the output.
    scrambled = dict(features)
    for name in ("query", "item"):
        ids, ts = features[f"{name}_history"], features[f"{name}_history_ts"]
        scrambled[f"{name}_history_ts"] = tf.where(ids == "", tf.random.uniform(ts.shape, 0, 2**40, tf.int64), ts)
    np.testing.assert_allclose(ranker(scrambled), logits, atol=1e-6)
    # Inputs are 50 long: the model reads the 20 most recent; cutting them first changes nothing.
    cut = {k: (v[:, :20] if v.shape.rank == 2 else v) for k, v in features.items()}
    np.testing.assert_allclose(ranker(cut), logits, atol=1e-6)
    # A shorter input padded with "" gives the same score as the unpadded one.
    short = {k: (v[:, :7] if v.shape.rank == 2 else v) for k, v in features.items()}
    padded = {k: (tf.concat([v, tf.fill([64, 13], "" if v.dtype == tf.string else tf.constant(0, v.dtype))], 1)
                  if v.shape.rank == 2 else v) for k, v in short.items()}
    np.testing.assert_allclose(ranker(padded), ranker(short), atol=1e-6)


@pytest.mark.parametrize("lagged", [True, False])
def test_oov_rows_are_trained_only_with_the_lagged_vocabulary(tiny, lagged):
    """With ids that become known during training, the OOV rows of the user and query tables get gradient
    from the rows of those ids' first day; with every id known from the start, they get none."""
    work, vocabularies, tables, _ = tiny
    known_since = {name: work.known_since(name) for name in VOCABULARIES}
    ranker = make_ranker(ModelConfig(kind="hgcn", lagged_vocab=lagged), vocabularies, tables, known_since)
    model = CTRModel(ranker)
    features, labels = next(iter(make_dataset(work.samples_dir, "train", 20, batch_size=4096, shuffle=False)))
    with tf.GradientTape() as tape:
        loss = model.compute_loss((features, labels), training=True)
    grads = tape.gradient(loss, [ranker.user_embedding.embeddings, ranker.query_embedding.embeddings])
    oov = [float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)[1]))) for g in grads]
    if lagged:
        assert min(oov) > 0
    else:
        assert oov == [0.0, 0.0]
    unseen = dict(features, user_id=tf.fill(tf.shape(features["user_id"]), "nobody"),
                  candidate=tf.fill(tf.shape(features["candidate"]), "never typed"))
    assert ranker.node_ids(unseen)["user"].numpy().tolist() == [1] * len(labels)
    assert ranker.query_lookup(tf.constant(["never typed", ""])).numpy().tolist() == [1, 0]


def test_swapping_tables_changes_predictions_and_keeps_shapes(tiny):
    work, vocabularies, tables, (features, _) = tiny
    ranker = make_ranker(ModelConfig(kind="gat"), vocabularies, tables)
    before = ranker(features).numpy()
    shapes = [v.shape for v in ranker.weights]
    rng = np.random.default_rng(0)
    swapped = {}
    for relation, table in tables.items():  # another day's graph: same nodes, shuffled neighbors
        swapped[relation] = NeighborTable(relation, table.nodes, rng.permutation(table.ids), table.weight,
                                          table.last_ts, table.count, table.snapshot_ts + 86400)
    ranker.set_graph(swapped)
    after = ranker(features).numpy()
    assert [v.shape for v in ranker.weights] == shapes
    assert not np.allclose(before, after)
    ranker.set_graph(tables)
    np.testing.assert_allclose(ranker(features), before, atol=1e-6)
    with pytest.raises(ValueError, match="only hgcn/gat models take neighbor tables"):
        make_ranker(ModelConfig(kind="base"), vocabularies).set_graph(tables)


@pytest.mark.parametrize("config", [ModelConfig(kind="base"), ModelConfig(kind="base", seq_len=50),
                                    ModelConfig(kind="hgcn"), ModelConfig(kind="hgcn", id_time_only=True),
                                    # spektral's GATConv form is not repeated here: test_layers.py shows it computes what the
                                    # fused form computes, in training and inference, with the same gradients
                                    ModelConfig(kind="gat"),
                                    # every GNN option in one model: each adds inputs the ranker must still learn through
                                    ModelConfig(kind="hgcn", position_bias=True, relations=True, two_hops=True, session=True)],
                         ids=lambda c: f"{c.name}-{c.graph_impl}-pal{int(c.position_bias)}")
def test_each_model_trains_and_learns_to_rank(tiny, config):
    """A constant (bias-only) model cannot pass: it lowers the loss but ranks nothing (AUC 0.5). The ranker's own
    logits are scored (a position tower cannot rank for it), eagerly: a traced pass would cost about as much as the
    training."""
    work, vocabularies, tables, (features, labels) = tiny
    tf.keras.utils.set_random_seed(1)
    model = CTRModel(make_ranker(config, vocabularies, tables if config.is_gnn else None))
    model.compile(optimizer=make_optimizer(TrainConfig(learning_rate=3e-3)))
    data = make_dataset(work.samples_dir, "train", config.seq_len, batch_size=256, shuffle=True, seed=1)
    whole = list(make_dataset(work.samples_dir, "train", config.seq_len, batch_size=4096))

    def train_set_loss_and_auc():
        loss = np.average([float(model.compute_loss(batch)) for batch in whole], weights=[len(batch[1]) for batch in whole])
        logits = np.concatenate([model.ranker(batch[0]).numpy() for batch in whole])
        return loss, roc_auc_score(np.concatenate([batch[1].numpy() for batch in whole]), logits)

    loss_before, _ = train_set_loss_and_auc()
    model.fit(data, epochs=3, verbose=0)
    loss_after, auc_after = train_set_loss_and_auc()
    assert loss_after < loss_before
    assert auc_after > 0.75, auc_after


@pytest.mark.onednn_off
def test_a_spektral_gatconv_run_trains_validates_calibrates_and_reloads(tiny_work, tmp_path):
    """The whole of ``train`` (per-epoch validation, calibration, frozen-graph test scores, save) with spektral's GATConv,
    then the run reloaded in this process scores as it did."""
    metrics = train(tiny_work, tmp_path / "run", ModelConfig(kind="gat", graph_impl="spektral"),
                    TrainConfig(epochs=1, batch_size=512, seed=3), verbose=0)
    assert metrics["model"] == "gat_20" and metrics["epochs_run"] == 1 and metrics["calibration"]["scale"] > 0
    reloaded = predict(predictor(load_run(tmp_path / "run")), make_dataset(tiny_work / "samples", "test", 20, 4096))
    np.testing.assert_allclose(reloaded, read_predictions(tmp_path / "run")["prediction_frozen"], atol=1e-6)


def test_position_tower_is_training_only(tiny):
    _, vocabularies, _, (features, labels) = tiny
    model = CTRModel(make_ranker(ModelConfig(kind="base", position_bias=True), vocabularies))
    serving = model(features).numpy()
    np.testing.assert_allclose(model(dict(features, position=tf.fill([64], 9))), serving)
    np.testing.assert_allclose(serving, tf.sigmoid(model.ranker(features)).numpy())
    # In the loss, the examination probability of the logged position multiplies the ranker's.
    model.position_bias.scaled_logit.assign(tf.fill([21], -50.0 / model.position_bias.learning_rate_multiplier))
    assert float(model.compute_loss((features, tf.zeros_like(labels)))) < 1e-6


def test_the_training_loss_is_the_cross_entropy_of_the_logits_even_far_from_zero(tiny):
    """Keras computes it from the logits only when the probability is a sigmoid's output in a traced step."""
    _, vocabularies, _, (features, _) = tiny
    model = CTRModel(make_ranker(ModelConfig(kind="base"), vocabularies))
    model.ranker.calibration.assign([1.0, 50.0])  # every logit about +50
    negatives = tf.zeros([64])
    expected = float(tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(negatives, model.ranker(features))))
    assert expected > 40  # a clipped probability would cap each example's loss at -log(1e-7) = 16.1
    np.testing.assert_allclose(float(tf.function(model.compute_loss)((features, negatives), training=True)), expected, rtol=1e-5)


def test_session_context_pools_the_behaviors_chained_to_the_request(tiny):
    _, vocabularies, tables, (features, _) = tiny
    config = ModelConfig(kind="hgcn", relations=True, two_hops=True, session=True)
    ranker = make_ranker(config, vocabularies, tables)
    queries, items = vocabularies["queries"][:4], vocabularies["items"][:3]
    request = {k: v[:1] for k, v in features.items()}
    request.update(query_history=tf.constant([queries]), item_history=tf.constant([items]), request_ts=tf.constant([10_000], tf.int64),
                   # gaps back from the request: q 1000, i 500, q 500, i 1500, then q 2500 (over 30 minutes: the session ends)
                   query_history_ts=tf.constant([[9_000, 8_000, 4_000, 3_000]], tf.int64),
                   item_history_ts=tf.constant([[8_500, 6_500, 100]], tf.int64))
    parts = ranker.encode(request)
    session = ranker.session_context(request, parts).numpy()[0]
    dim = config.dim
    assert session.shape == (4 * dim + 1,) and session[-1] == pytest.approx(np.log1p(4))
    np.testing.assert_allclose(session[:dim], parts["history_queries"].numpy()[0, :2].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(session[2 * dim:3 * dim], parts["history_items"].numpy()[0, :2].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(session[dim:2 * dim], parts["candidate"].numpy()[0] * session[:dim], rtol=1e-5)
    # A gap of exactly 30 minutes keeps the session; one second more ends it before it starts.
    at_limit = dict(request, request_ts=tf.constant([9_000 + 1_800], tf.int64))
    assert ranker.session_context(at_limit, ranker.encode(at_limit)).numpy()[0, -1] == pytest.approx(np.log1p(4))
    late = dict(request, request_ts=tf.constant([9_000 + 1_801], tf.int64))
    assert not np.any(ranker.session_context(late, ranker.encode(late)).numpy())
    # Padding changes nothing, even with times that would bridge the gap between 6_500 and 4_000 if they counted.
    padded = dict(request, query_history=tf.constant([queries + ["", ""]]),
                  query_history_ts=tf.constant([[9_000, 8_000, 4_000, 3_000, 5_500, 5_000]], tf.int64))
    np.testing.assert_allclose(ranker.session_context(padded, ranker.encode(padded)), [session], rtol=1e-6)
    np.testing.assert_allclose(ranker(padded), ranker(request), atol=1e-6)
    # The ranker reads it: its MLP takes 4 * dim + 1 more inputs than the same model without a session.
    without = make_ranker(ModelConfig(kind="hgcn", relations=True, two_hops=True), vocabularies, tables)
    assert ranker.mlp.layers[0].kernel.shape[0] - without.mlp.layers[0].kernel.shape[0] == 4 * dim + 1


def test_a_gnns_scores_follow_each_rows_own_snapshot_and_its_neighbors(tiny_work):
    """A GNN that read snapshot 0 for every row, or ignored neighbors, would score the same in each comparison."""
    work = Work.open(tiny_work)
    histories = {relation: work.daily_tables(relation) for relation in ("q2q", "i2i")}
    ranker = make_ranker(ModelConfig(kind="hgcn"), {name: work.vocabulary(name) for name in VOCABULARIES}, histories,
                         {name: work.known_since(name) for name in VOCABULARIES})
    features, _ = next(iter(make_dataset(work.samples_dir, "test", 20, batch_size=512)))
    daily = ranker(features, training=False).numpy()

    def set_and_score(tables):
        ranker.set_graph(tables)
        return ranker(features, training=False).numpy()

    first_day = set_and_score({r: DailyTables.from_snapshots([h[0]]) for r, h in histories.items()})
    last = {r: h[len(h) - 1] for r, h in histories.items()}
    empty = {r: DailyTables.from_snapshots([dataclasses.replace(t, ids=np.zeros_like(t.ids), weight=np.zeros_like(t.weight),
                                                                last_ts=np.zeros_like(t.last_ts), count=np.zeros_like(t.count))])
             for r, t in last.items()}
    last_day = set_and_score({r: DailyTables.from_snapshots([t]) for r, t in last.items()})  # built with the test days' events
    without_neighbors = set_and_score(empty)
    assert np.mean(np.abs(daily - first_day) > 1e-5) > 0.5, "test rows read their own day's snapshot, not the first"
    assert np.mean(np.abs(daily - last_day) > 1e-5) > 0.5, "test rows read their own day's snapshot, not the last (a leak)"
    assert np.mean(np.abs(last_day - without_neighbors) > 1e-5) > 0.5, "the scores read the neighbors"
    np.testing.assert_array_equal(set_and_score(histories), daily)

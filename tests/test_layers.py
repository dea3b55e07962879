"""Every layer: shapes, masking, get_config round trip, SavedModel round trip, and numerics.

The fused GNN layers are checked against spektral's GCNConv / GATConv on star subgraphs.
"""
import numpy as np
import pytest
import tensorflow as tf

from dropdown_rank.layers import (GATAggregator, GraphContext, HGCNAggregator, PositionBias, RequestFeatures, SpektralGATStar,
                                  SpektralGCNStar, TargetAttention, TimeGapEmbedding)
from dropdown_rank.layers.time_gap import log2_bucket

RNG = np.random.default_rng(0)


def star_inputs(n=6, k=4, f=5, padded_from=2):
    center = tf.constant(RNG.normal(size=(n, f)), tf.float32)
    neighbors = tf.constant(RNG.normal(size=(n, k, f)), tf.float32)
    weight = RNG.random((n, k)).astype("float32")
    weight[:, padded_from:] = 0.0
    weight[0] = 0.0  # a node without neighbors
    return center, neighbors, tf.constant(weight)


def saved_round_trip(tmp_path, layer, specs, inputs, packed=False):
    """Save ``layer`` behind a signature as a SavedModel, reload it, and return its outputs.

    ``packed``: the layer takes its inputs as one list (the GNN aggregators' convention).
    """
    module = tf.Module()
    module.layer = layer  # tracked, so its variables are saved
    module.tables = getattr(layer, "tables", [])  # graph tables are data, saved beside the weights
    module.serve = tf.function(lambda *args: module.layer(list(args)) if packed else module.layer(*args), input_signature=specs)
    tf.saved_model.save(module, str(tmp_path / "saved"))
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # keep it alive: the function holds weak refs
    return loaded.serve(*inputs)


def assert_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    return clone


# -- time gaps ----------------------------------------------------------------------------------

def test_log2_bucket_edges():
    gaps = tf.constant([-5, 0, 1, 2, 3, 86400 * 30, 10**12])
    assert log2_bucket(gaps, 26).numpy().tolist() == [1, 1, 2, 2, 3, 22, 25]
    assert log2_bucket(tf.constant([0.5, 2.9, 3.0, -1.5]), 26).numpy().tolist() == [1, 2, 3, 1]


def test_log2_bucket_is_exact_eagerly_and_in_a_tf_function():
    """Every value to 2**20 and every power of two, and one less and more, to 2**62: the same exact bucket eagerly and
    traced (where a float log put 7, 63, 4095, ... in the bucket below)."""
    powers = np.array([1 << k for k in range(1, 63)], np.int64)
    values = np.concatenate([np.arange(1 << 20, dtype=np.int64), powers - 1, powers, powers[:-1] + 1])
    exact = np.minimum([int(v + 1).bit_length() for v in values], 53)
    traced = tf.function(lambda x: log2_bucket(x, 54))
    np.testing.assert_array_equal(log2_bucket(tf.constant(values), 54).numpy(), exact)
    np.testing.assert_array_equal(traced(tf.constant(values)).numpy(), exact)
    with pytest.raises(ValueError, match="at most 54"):
        log2_bucket(tf.constant(values), 55)


def test_time_gap_embedding_shape_padding_and_config(tmp_path):
    layer = TimeGapEmbedding(4, num_buckets=26)
    ts = tf.constant([[100, 40, 999], [0, 0, 0]], tf.int64)
    mask = tf.constant([[True, True, False], [False, False, False]])
    out = layer(ts, tf.constant([100, 100], tf.int64), mask)
    assert out.shape == (2, 3, 4)
    padding_row = layer.embedding.embeddings[0]
    np.testing.assert_allclose(out[0, 2], padding_row)  # masked: bucket 0 whatever the timestamp
    np.testing.assert_allclose(out[1], np.tile(padding_row, (3, 1)))
    clone = assert_config_round_trip(layer)
    clone(ts, tf.constant([100, 100], tf.int64), mask)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(ts, tf.constant([100, 100], tf.int64), mask), out)
    specs = [tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, None], tf.bool)]
    np.testing.assert_allclose(saved_round_trip(tmp_path, layer, specs, (ts, tf.constant([100, 100], tf.int64), mask)), out)


# -- target attention ---------------------------------------------------------------------------

def test_target_attention_ignores_padding_and_handles_empty_histories(tmp_path):
    layer = TargetAttention(hidden_units=(8,))
    target = tf.constant(RNG.normal(size=(3, 4)), tf.float32)
    keys = RNG.normal(size=(3, 5, 4)).astype("float32")
    mask = tf.constant([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]) > 0
    pooled, weights = layer(target, tf.constant(keys), mask, return_weights=True)
    assert pooled.shape == (3, 4) and weights.shape == (3, 5)
    np.testing.assert_allclose(tf.reduce_sum(weights, -1), [1.0, 1.0, 0.0], atol=1e-6)
    assert (weights.numpy()[~mask.numpy()] == 0).all()
    np.testing.assert_allclose(pooled[2], np.zeros(4))  # empty history pools to zeros
    garbage = keys.copy()
    garbage[~mask.numpy()] = 1e6 * RNG.normal(size=garbage[~mask.numpy()].shape)
    np.testing.assert_allclose(layer(target, tf.constant(garbage), mask), pooled, rtol=1e-6, atol=1e-6)
    clone = assert_config_round_trip(layer)
    clone(target, tf.constant(keys), mask)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(target, tf.constant(keys), mask), pooled, rtol=1e-6)
    specs = [tf.TensorSpec([None, 4]), tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None], tf.bool)]
    np.testing.assert_allclose(saved_round_trip(tmp_path, layer, specs, (target, tf.constant(keys), mask)), pooled, rtol=1e-6)


# -- HGCN ---------------------------------------------------------------------------------------

def test_hgcn_by_hand():
    layer = HGCNAggregator(2, use_bias=False)
    center = tf.constant([[1.0, 0.0]])
    neighbors = tf.constant([[[0.0, 1.0], [4.0, 4.0]]])
    weight = tf.constant([[1.0, 0.0]])  # second neighbor is padding
    layer([center, neighbors, weight])
    layer.kernel_self.assign(tf.eye(2))
    layer.kernel.assign(2 * tf.eye(2))
    # self [1, 0] + 2 * mean([1, 0], [0, 1]) = [1, 0] + [1, 1]
    np.testing.assert_allclose(layer([center, neighbors, weight]), [[2.0, 1.0]])


def copy_gcn(fused: HGCNAggregator, spektral: SpektralGCNStar):
    spektral.self_transform.kernel.assign(fused.kernel_self)
    spektral.gcn.kernel.assign(fused.kernel)
    fused.bias.assign(tf.random.normal(fused.bias.shape))
    spektral.gcn.bias.assign(fused.bias)


def copy_gat(fused: GATAggregator, spektral: SpektralGATStar):
    for name in ("kernel", "attn_kernel_self", "attn_kernel_neighs"):
        getattr(spektral.gat, name).assign(getattr(fused, name))
    spektral.self_transform.kernel.assign(fused.kernel_self)
    fused.bias.assign(tf.random.normal(fused.bias.shape))
    spektral.gat.bias.assign(fused.bias)


def test_hgcn_matches_spektral_gcnconv_on_star_graphs(tmp_path):
    center, neighbors, weight = star_inputs()
    fused, reference = HGCNAggregator(3, activation="tanh"), SpektralGCNStar(3, activation="tanh")
    fused([center, neighbors, weight])
    reference([center, neighbors, weight])
    copy_gcn(fused, reference)
    expected = reference([center, neighbors, weight])
    np.testing.assert_allclose(fused([center, neighbors, weight]), expected, atol=1e-5)
    combined = fused.combine(center, tf.einsum("nk,nkf->nf", weight, neighbors), tf.reduce_sum(weight, -1))
    np.testing.assert_allclose(combined, expected, atol=1e-5)
    for layer in (fused, reference):
        clone = assert_config_round_trip(layer)
        clone([center, neighbors, weight])
        clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(clone([center, neighbors, weight]), expected, atol=1e-5)
    specs = [tf.TensorSpec([None, 5]), tf.TensorSpec([None, None, 5]), tf.TensorSpec([None, None])]
    np.testing.assert_allclose(saved_round_trip(tmp_path, reference, specs, (center, neighbors, weight), packed=True), expected, atol=1e-5)


# -- attention ----------------------------------------------------------------------------------

@pytest.mark.onednn_off
@pytest.mark.parametrize("heads", [1, 3])
def test_gat_matches_spektral_gatconv_and_padding_gets_zero_attention(tmp_path, heads):
    center, neighbors, weight = star_inputs()
    mask = weight > 0
    fused, reference = GATAggregator(3, heads=heads, activation="tanh"), SpektralGATStar(3, heads=heads, activation="tanh")
    fused([center, neighbors, mask])
    reference([center, neighbors, mask])
    copy_gat(fused, reference)
    out, attention = fused([center, neighbors, mask], return_attention=True)
    expected, expected_attention = reference([center, neighbors, mask], return_attention=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(attention, expected_attention, atol=1e-6)
    assert attention.shape == (6, heads, 5)
    padded = ~np.concatenate([np.ones((6, 1), bool), mask.numpy()], axis=1)
    assert (attention.numpy().transpose(0, 2, 1)[padded] == 0).all()
    np.testing.assert_allclose(attention[0, :, 0], np.ones(heads))  # no neighbors: all weight on self
    clone = assert_config_round_trip(fused)
    clone([center, neighbors, mask])
    clone.set_weights(fused.get_weights())
    np.testing.assert_allclose(clone([center, neighbors, mask]), out, atol=1e-6)
    specs = [tf.TensorSpec([None, 5]), tf.TensorSpec([None, None, 5]), tf.TensorSpec([None, None], tf.bool)]
    np.testing.assert_allclose(saved_round_trip(tmp_path, fused, specs, (center, neighbors, mask), packed=True), out, atol=1e-6)


@pytest.mark.onednn_off
def test_spektral_gat_star_config_round_trip():
    layer = SpektralGATStar(4, heads=2, activation="relu")
    assert_config_round_trip(layer)


# -- graph context ------------------------------------------------------------------------------

NODES, K, DIM = 30, 4, 8


def neighbor_tables(seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, NODES, (NODES, K))
    ids[rng.random((NODES, K)) < 0.3] = 0
    ids[:2] = 0  # padding and OOV rows have no neighbors
    ids[7] = [3, 3, 0, 2]  # a repeated neighbor id
    return dict(ids=ids, weight=rng.random((NODES, K)), age_seconds=rng.integers(0, 10**7, (NODES, K)),
                count=rng.integers(1, 50, (NODES, K)))


def history(*days):
    """``GraphContext.set_tables`` arguments holding the dense day tables ``days`` (``neighbor_tables``), one a day
    apart: every node gets one version per day."""
    snapshots = len(days)
    snapshot_days = 1_700_006_400 + 86400 * np.arange(snapshots)
    node_major = lambda arrays: np.stack(arrays, axis=1).reshape(NODES * snapshots, K)  # noqa: E731
    with_empty_row = lambda array: np.concatenate([np.zeros((1, K), array.dtype), array])  # noqa: E731
    return dict(snapshot_days=snapshot_days, first_version=1 + snapshots * np.arange(NODES + 1),
                version_day=np.concatenate([[0], np.tile(np.arange(snapshots), NODES)]),
                last_ts=with_empty_row(node_major([day - tables["age_seconds"] for day, tables in zip(snapshot_days, days)])),
                **{name: with_empty_row(node_major([tables[name] for tables in days])) for name in ("ids", "weight", "count")})


def fused_context(aggregator, use_edge_weight, heads=1):
    embeddings = tf.constant(RNG.normal(size=(NODES, DIM)), tf.float32)
    fused = GraphContext(NODES, K, DIM, aggregator=aggregator, impl="fused", use_edge_weight=use_edge_weight, heads=heads, activation="tanh")
    ids = tf.constant([[1, 5, 7], [0, 7, 12]])
    fused.set_tables(**history(neighbor_tables()))
    fused(ids, embeddings)
    return fused, ids, embeddings


def paired_contexts(aggregator, use_edge_weight, heads=1):
    fused, ids, embeddings = fused_context(aggregator, use_edge_weight, heads)
    reference = GraphContext(NODES, K, DIM, aggregator=aggregator, impl="spektral", use_edge_weight=use_edge_weight, heads=heads, activation="tanh")
    reference.set_tables(**history(neighbor_tables()))
    reference(ids, embeddings)
    reference.edge_time.embeddings.assign(fused.edge_time.embeddings)
    if fused.weight_vector is not None:
        reference.weight_vector.assign(fused.weight_vector)
    if aggregator == "hgcn":
        copy_gcn(fused.aggregate, reference.aggregate)
    else:
        copy_gat(fused.aggregate, reference.aggregate)
    return fused, reference, ids, embeddings


@pytest.mark.parametrize("aggregator,use_edge_weight,heads", [("hgcn", True, 1), ("hgcn", False, 1),
                                                              pytest.param("gat", True, 1, marks=pytest.mark.onednn_off),
                                                              pytest.param("gat", False, 2, marks=pytest.mark.onednn_off)])
@pytest.mark.parametrize("training", [True, False], ids=["factorized (training)", "gathered (inference)"])
def test_fused_graph_context_equals_spektral_form(aggregator, use_edge_weight, heads, training):
    fused, reference, ids, embeddings = paired_contexts(aggregator, use_edge_weight, heads)
    out = fused(ids, embeddings, training=training)
    assert out.shape == (2, 3, DIM)
    np.testing.assert_allclose(out, reference(ids, embeddings), atol=1e-5)
    if aggregator == "gat":
        _, a = fused.node_context(tf.constant([7, 12]), embeddings, training=training, return_attention=True)
        _, b = reference.node_context(tf.constant([7, 12]), embeddings, return_attention=True)
        np.testing.assert_allclose(a, b, atol=1e-6)
    if training:  # and it learns what the fused form learns: the same gradient reaches the embeddings, and every weight gets one
        probe = tf.constant(RNG.normal(size=out.shape), tf.float32)
        gradients = []
        for context in (fused, reference):
            with tf.GradientTape() as tape:
                tape.watch(embeddings)
                loss = tf.reduce_sum(context(ids, embeddings, training=True) * probe)
            gradients.append(tape.gradient(loss, [embeddings, *context.trainable_variables]))
        np.testing.assert_allclose(tf.convert_to_tensor(gradients[0][0]), tf.convert_to_tensor(gradients[1][0]), atol=1e-5)
        for variable, gradient in zip(reference.trainable_variables, gradients[1][1:], strict=True):
            assert gradient is not None and np.any(tf.convert_to_tensor(gradient).numpy() != 0), variable.name


def test_unique_node_computation_equals_per_occurrence():
    fused, ids, embeddings = fused_context("gat", True)
    per_occurrence = tf.reshape(fused.node_context(tf.reshape(ids, [-1]), embeddings), [2, 3, DIM])
    np.testing.assert_allclose(fused(ids, embeddings), per_occurrence, atol=1e-6)
    np.testing.assert_allclose(tf.gather(fused.precompute(embeddings), ids), per_occurrence, atol=1e-6)


def test_tables_are_swappable_and_shape_checked(tmp_path):
    fused, ids, embeddings = fused_context("hgcn", True)
    before = fused(ids, embeddings).numpy()
    fused.set_tables(**history(neighbor_tables(seed=2)))
    assert not np.allclose(fused(ids, embeddings), before)
    bad = history(neighbor_tables())
    bad["ids"] = bad["ids"][:, :2]
    with pytest.raises(ValueError, match=r"neighbor table 'ids' has shape \(31, 2\), expected \(31, 4\)"):
        fused.set_tables(**bad)
    clone = assert_config_round_trip(fused)
    assert clone.neighbor_ids.numpy().shape == (1, K) and clone.first_version.numpy().tolist() == [1] * (NODES + 1)
    # tables are loaded data, not weights: a checkpoint of the layer leaves them out
    assert {v.name.split("/")[-1].split(":")[0] for v in fused.tables} == {
        "snapshot_days", "first_version", "version_day", "neighbor_ids", "edge_weight", "edge_last_ts", "edge_count_bucket"}
    assert not any(t is v for t in fused.tables for v in fused.variables)
    specs = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([NODES, DIM])]
    np.testing.assert_allclose(saved_round_trip(tmp_path, fused, specs, (ids, embeddings)), fused(ids, embeddings), atol=1e-6)


@pytest.mark.parametrize("aggregator", ["hgcn", "gat"])
@pytest.mark.parametrize("training", [True, False])
def test_each_row_reads_its_own_snapshot(aggregator, training):
    """Two daily snapshots held together: a row of snapshot s gets exactly what a layer holding only s gives."""
    fused, ids, embeddings = fused_context(aggregator, True)
    day0, day1 = neighbor_tables(seed=1), neighbor_tables(seed=2)
    only = {}
    for s, tables in enumerate((day0, day1)):
        fused.set_tables(**history(tables))
        only[s] = fused(ids, embeddings, training=training).numpy()
    assert not np.allclose(only[0], only[1])
    fused.set_tables(**history(day0, day1))
    both = fused(ids, embeddings, snapshot=tf.constant([1, 0]), training=training).numpy()
    np.testing.assert_allclose(both[0], only[1][0], atol=1e-6)
    np.testing.assert_allclose(both[1], only[0][1], atol=1e-6)
    # the precomputed (serving) table is the last snapshot's
    np.testing.assert_allclose(tf.gather(fused.precompute(embeddings), ids), only[1], atol=1e-6)
    with pytest.raises(ValueError, match=r"'first_version' has 30 entries, expected 31"):
        fused.set_tables(**dict(history(day0), first_version=history(day0)["first_version"][:-1]))


@pytest.mark.parametrize("aggregator", ["hgcn", "gat"])
def test_training_touches_only_the_batch_nodes_and_their_neighbors(aggregator):
    """The training path's embedding gradient is IndexedSlices over the node and its neighbors' rows
    (plus padding), never a dense [V, F] matrix: a step's cost must not grow with the vocabulary."""
    fused, _, _ = fused_context(aggregator, True)
    embeddings = tf.Variable(RNG.normal(size=(NODES, DIM)).astype("float32"))
    node = tf.constant([7])  # neighbors 3, 3, padding, 2
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fused(node, embeddings, training=True) ** 2)
    slices = tape.gradient(loss, embeddings)
    assert isinstance(slices, tf.IndexedSlices)
    assert set(slices.indices.numpy()) <= {0, 2, 3, 7}
    grad = tf.convert_to_tensor(slices).numpy()
    assert np.abs(grad[[2, 3, 7]]).sum(axis=1).min() > 0
    assert np.abs(np.delete(grad, [2, 3, 7], axis=0)).sum() == 0


def test_precompute_in_chunks_equals_one_pass():
    fused, _, embeddings = fused_context("gat", True)
    np.testing.assert_allclose(fused.precompute(embeddings, chunk=7), fused.precompute(embeddings, chunk=NODES), atol=1e-6)


# -- position bias ------------------------------------------------------------------------------

def test_position_bias_clips_and_round_trips(tmp_path):
    layer = PositionBias(max_position=3, learning_rate_multiplier=4.0)
    np.testing.assert_allclose(layer.logits(), [3.0] * 4, rtol=1e-6)  # every position starts at the initial logit
    logits = np.array([2.0, 1.0, 0.0, -1.0], np.float32)
    layer.scaled_logit.assign(logits / 4.0)
    positions = tf.constant([0, 2, 3, 10, -4])
    out = layer(positions)
    # each position reads its own logit; beyond max_position the last one, below 0 the first
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-logits[[0, 2, 3, 3, 0]])), rtol=1e-6)
    np.testing.assert_allclose(layer.examination(), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    assert_config_round_trip(layer)
    np.testing.assert_allclose(saved_round_trip(tmp_path, layer, [tf.TensorSpec([None], tf.int32)], (positions,)), out)
    with pytest.raises(ValueError, match="learning_rate_multiplier must be positive"):
        PositionBias(learning_rate_multiplier=0.0)


def _fit_planted_examination(multiplier: float, steps: int, decay: float = 0.6) -> np.ndarray:
    """PositionBias x a one-logit ranker fitted by Adam (1e-3, the default) to clicks drawn with relevance 0.3 and
    examination (1 + p)^-decay; the learned examination relative to position 0."""
    rng = np.random.default_rng(0)
    tower, relevance_logit = PositionBias(max_position=9, learning_rate_multiplier=multiplier), tf.Variable(0.0)
    optimizer = tf.keras.optimizers.legacy.Adam(1e-3)

    @tf.function
    def step(position, clicked):
        with tf.GradientTape() as tape:
            probability = tf.sigmoid(relevance_logit) * tower(position)
            loss = tf.reduce_mean(tf.keras.losses.binary_crossentropy(clicked[:, None], probability[:, None]))
        variables = [relevance_logit, tower.scaled_logit]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    for _ in range(steps):
        position = rng.integers(0, 10, 1024)
        clicked = (rng.random(1024) < 0.3 * (1.0 + position) ** -decay).astype(np.float32)
        step(tf.constant(position, tf.int32), tf.constant(clicked))
    examination = tower.examination().numpy()
    return examination / examination[0]


def test_the_position_tower_learns_a_planted_examination_curve_with_its_own_learning_rate():
    planted = (1.0 + np.arange(10)) ** -0.6
    # 600 steps of 1,024: well under the 1,700 steps of 4 epochs on the static world.
    learned = _fit_planted_examination(multiplier=20.0, steps=600)
    assert np.abs(learned - planted).max() < 0.1  # 0.055 measured: click noise and Adam steps of 0.02 logits
    # The tower as it was (multiplier 1) has barely left its start after the same steps: this is why PAL changed nothing.
    assert np.abs(_fit_planted_examination(multiplier=1.0, steps=600) - planted).max() > 0.3


# -- request features ---------------------------------------------------------------------------

def request_inputs():
    hour = 3600
    return {
        "candidate": tf.constant(["abc", "héllo", "x"]),
        "prefix": tf.constant(["ab", "hé", ""]),
        # most recent first; row 0 repeats the candidate at 1 h and 3 h, row 1 only beyond L=2, row 2 pads ""
        "query_history": tf.constant([["abc", "z", "abc"], ["a", "b", "héllo"], ["", "", ""]]),
        "query_history_ts": tf.constant([[10 * hour - hour, 0, 10 * hour - 3 * hour], [0, 0, 0], [0, 0, 0]], tf.int64),
        "request_ts": tf.constant([10 * hour, 10 * hour, 10 * hour], tf.int64),
        "user_candidate_count": tf.constant([5, 0, 1], tf.int64),
        "user_candidate_age": tf.constant([hour, -1, 0], tf.int64),
        "candidate_query_count": tf.constant([0, 9, 1], tf.int64),
        "candidate_impressions": tf.constant([3, 0, 1], tf.int64),
        "candidate_clicks": tf.constant([2, 0, 1], tf.int64),
    }


def test_request_features_by_hand(tmp_path):
    layer = RequestFeatures(seq_len=3)
    out = layer(request_inputs()).numpy()
    f = np.log1p
    expected = np.array([
        # exact matches (count, seen, hours since the latest), personal (count, seen, hours since), popularity,
        # CTR (shown, clicks, clicks / (shown + 1)), prefix chars / 10, added chars / 10; counts and hours as log1p
        [f(2), 1, f(1), f(5), 1, f(1), f(0), f(3), f(2), 2 / 4, 0.2, 0.1],
        [f(1), 1, f(10), 0, 0, 0, f(9), 0, 0, 0, 0.2, 0.3],
        [0, 0, 0, f(1), 1, f(0), f(1), f(1), f(1), 1 / 2, 0.0, 0.1],
    ], np.float32)
    assert layer.width == expected.shape[1]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    # L=2 does not reach row 1's match at position 3
    np.testing.assert_allclose(RequestFeatures(["exact_match"], seq_len=2)(request_inputs()).numpy()[1], [0, 0, 0])
    assert_config_round_trip(layer)
    specs = [{k: tf.TensorSpec([None] * v.shape.rank, v.dtype) for k, v in request_inputs().items()}]
    np.testing.assert_allclose(saved_round_trip(tmp_path, layer, specs, (request_inputs(),)), out, rtol=1e-6)


def test_request_feature_groups_select_columns_and_refuse_unknown_names():
    assert RequestFeatures(["ctr", "prefix"]).width == 5
    assert RequestFeatures([])(request_inputs()).shape == (3, 0)
    with pytest.raises(ValueError, match="unknown feature groups"):
        RequestFeatures(["clicks"])

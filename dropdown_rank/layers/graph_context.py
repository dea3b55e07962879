"""The GNN context module for one relation: neighbor tables + edge features + an aggregator."""
import tensorflow as tf

from dropdown_rank.layers.gat_aggregator import GATAggregator
from dropdown_rank.layers.hgcn_aggregator import HGCNAggregator
from dropdown_rank.layers.neighbor_sums import bucket_mass, weighted_rows
from dropdown_rank.layers.spektral_gat_star import SpektralGATStar
from dropdown_rank.layers.spektral_gcn_star import SpektralGCNStar
from dropdown_rank.layers.time_gap import log2_bucket

AGGREGATORS = {
    ("hgcn", "fused"): HGCNAggregator,
    ("hgcn", "spektral"): SpektralGCNStar,
    ("attention", "fused"): GATAggregator,
    ("attention", "spektral"): SpektralGATStar,
}
AGE_BUCKETS = 26  # log2 seconds: bucket 22 is about 30 days
COUNT_BUCKETS = 16
EDGE_BUCKETS = AGE_BUCKETS + COUNT_BUCKETS


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class GraphContext(tf.keras.layers.Layer):
    """Replaces node ids by a graph-context representation built from their first-order neighbors.

    The neighbor table (ids, edge weights, edge-time buckets; ``[num_nodes, K]``) is non-trainable
    layer state, swappable with :meth:`set_tables` without retraining. A neighbor's features are its
    id embedding (the model's node embedding, shared and trained end to end) plus embeddings of the
    edge's static time features: its age at graph-snapshot time and its co-occurrence count, both
    log2-bucketed (one table, ``edge_time``, of ``AGE_BUCKETS + COUNT_BUCKETS`` rows). Attention
    models also add ``weight * edge_weight_vector``; HGCN uses the weight in its weighted mean.

    The context is request-independent: a function of the node, its neighbors and their static
    edge features only. So ``call`` computes it once per **unique** id in the batch (``tf.unique``,
    then a gather back), and :meth:`precompute` materializes it for every node at export.

    ``impl="fused"`` (default) in training never gathers neighbor features: neighbor sums are
    sparse products with the embedding table, whose gradient is dense (``neighbor_sums.py``). That
    product reads the whole table, which a 1024-row training batch amortizes but a 10-candidate
    request does not (it was 2.7 of 3.5 ms per served request), so outside training the fused
    layers gather just the neighbor rows instead. ``impl="spektral"`` gathers too and runs
    spektral's ``GCNConv``/``GATConv`` over star subgraphs. All paths compute the same function with
    the same weights (``tests/test_layers.py``).

    With ``use_edge_weight=False`` (the id-and-time-only variant) neighbors carry no weight: HGCN
    takes an unweighted mean, attention gets no weight feature.

    **Mode**: any shape of ids.

    **Input**
    - ``node_ids``: int ``[...]``, model ids (0 = padding, which has no neighbors);
    - ``embeddings``: float ``[num_nodes, dim]``, the node embedding matrix.

    **Output**: float ``[..., dim]``.
    """

    def __init__(self, num_nodes: int, neighbors: int, dim: int, aggregator: str = "hgcn", impl: str = "fused",
                 use_edge_weight: bool = True, heads: int = 1, activation=None, **kwargs):
        super().__init__(**kwargs)
        if (aggregator, impl) not in AGGREGATORS:
            raise ValueError(f"unknown aggregator/impl {aggregator!r}/{impl!r}; choose from {sorted(AGGREGATORS)}")
        self.num_nodes, self.neighbors, self.dim = num_nodes, neighbors, dim
        self.aggregator, self.impl, self.use_edge_weight, self.heads = aggregator, impl, use_edge_weight, heads
        self.activation = tf.keras.activations.get(activation)
        options = {"activation": activation}
        if aggregator == "attention":
            options["heads"] = heads
        self.aggregate = AGGREGATORS[(aggregator, impl)](dim, name=f"{aggregator}_{impl}", **options)
        if impl == "fused":  # called through combine/call_factorized, not __call__, so build here
            self.aggregate.build([tf.TensorShape([None, dim]), tf.TensorShape([None, neighbors, dim]), tf.TensorShape([None, neighbors])])
        self.edge_time = tf.keras.layers.Embedding(EDGE_BUCKETS, dim, name="edge_time")
        self.edge_time.build((None,))
        state = {"initializer": "zeros", "trainable": False}
        self.neighbor_ids = self.add_weight(name="neighbor_ids", shape=[num_nodes, neighbors], dtype=tf.int32, **state)
        self.edge_weight = self.add_weight(name="edge_weight", shape=[num_nodes, neighbors], dtype=tf.float32, **state)
        self.edge_buckets = self.add_weight(name="edge_buckets", shape=[num_nodes, neighbors, 2], dtype=tf.int32, **state)
        # Per node, sum of edge weights per time bucket: HGCN's edge-time term is edge_mass @ edge_time.
        self.edge_mass = self.add_weight(name="edge_mass", shape=[num_nodes, EDGE_BUCKETS], dtype=tf.float32, **state)
        self.weight_vector = None
        if aggregator == "attention" and use_edge_weight:
            self.weight_vector = self.add_weight(name="edge_weight_vector", shape=[dim], initializer="glorot_uniform")

    def set_tables(self, ids, weight, age_seconds, count) -> None:
        """Load a neighbor table already in this layer's id space: arrays ``[num_nodes, K]``.

        ``weight`` is the normalized co-occurrence weight, ``age_seconds`` the edge's age at the
        graph snapshot, ``count`` its co-occurrence count. Padding entries have id 0.
        """
        expected = (self.num_nodes, self.neighbors)
        for name, array in (("ids", ids), ("weight", weight), ("age_seconds", age_seconds), ("count", count)):
            if tuple(array.shape) != expected:
                raise ValueError(f"neighbor table '{name}' has shape {tuple(array.shape)}, expected {expected}")
        present = tf.constant(ids) > 0
        effective = tf.cast(weight, tf.float32) if self.use_edge_weight else tf.ones(expected, tf.float32)
        effective = tf.where(present, effective, 0.0)
        buckets = tf.stack([tf.where(present, log2_bucket(age_seconds, AGE_BUCKETS), 0),
                            tf.where(present, AGE_BUCKETS + log2_bucket(count, COUNT_BUCKETS), AGE_BUCKETS)], axis=-1)
        self.neighbor_ids.assign(tf.cast(ids, tf.int32))
        self.edge_weight.assign(effective)
        self.edge_buckets.assign(buckets)
        self.edge_mass.assign(bucket_mass(effective, buckets, EDGE_BUCKETS))

    def node_context(self, node_ids, embeddings, training=None, return_attention: bool = False):
        """Context of each id in a 1-D ``node_ids`` (no deduplication): ``[n, dim]``.

        With ``return_attention=True`` returns ``(context, attention)``; attention is
        ``[n, heads, K+1]`` (0 = self) for attention aggregators and None for HGCN.
        """
        node_ids = tf.cast(node_ids, tf.int32)
        neighbor_ids = tf.gather(self.neighbor_ids, node_ids)
        weight = tf.gather(self.edge_weight, node_ids)
        buckets = tf.gather(self.edge_buckets, node_ids)
        center = tf.gather(embeddings, node_ids)
        edge_table = self.edge_time.embeddings
        if self.impl == "spektral" or not training:
            features = tf.gather(embeddings, neighbor_ids) + tf.reduce_sum(tf.gather(edge_table, buckets), axis=-2)
            if self.weight_vector is not None:
                features += weight[..., None] * self.weight_vector
            if self.aggregator == "hgcn":
                out = self.aggregate([center, features, weight])
                return (out, None) if return_attention else out
            return self.aggregate([center, features, neighbor_ids > 0], training=training, return_attention=return_attention)
        if self.aggregator == "hgcn":
            neighbor_sum = weighted_rows(neighbor_ids, weight, embeddings)
            neighbor_sum += tf.matmul(tf.gather(self.edge_mass, node_ids), edge_table)
            out = self.aggregate.combine(center, neighbor_sum, tf.reduce_sum(weight, axis=-1))
            return (out, None) if return_attention else out
        return self.aggregate.call_factorized(
            center, embeddings, neighbor_ids, neighbor_ids > 0, edge_table, buckets, edge_weight=weight,
            weight_vector=self.weight_vector, training=training, return_attention=return_attention,
        )

    def call(self, node_ids, embeddings, training=None):
        unique, index = tf.unique(tf.reshape(node_ids, [-1]))
        context = tf.gather(self.node_context(unique, embeddings, training=training), index)
        return tf.reshape(context, tf.concat([tf.shape(node_ids), [self.dim]], axis=0))

    def precompute(self, embeddings):
        """The context of every node id, ``[num_nodes, dim]`` (for serving by lookup)."""
        return self.node_context(tf.range(self.num_nodes), embeddings, training=False)

    def get_config(self):
        return {**super().get_config(), "num_nodes": self.num_nodes, "neighbors": self.neighbors, "dim": self.dim,
                "aggregator": self.aggregator, "impl": self.impl, "use_edge_weight": self.use_edge_weight,
                "heads": self.heads, "activation": tf.keras.activations.serialize(self.activation)}

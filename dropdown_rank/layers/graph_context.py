"""The GNN context module for one relation: neighbor tables + edge features + an aggregator."""
import numpy as np
import tensorflow as tf

from dropdown_rank.layers.gat_aggregator import GATAggregator
from dropdown_rank.layers.hgcn_aggregator import HGCNAggregator
from dropdown_rank.layers.neighbor_sums import batch_rows, bucket_mass, weighted_rows
from dropdown_rank.layers.spektral_gat_star import SpektralGATStar
from dropdown_rank.layers.spektral_gcn_star import SpektralGCNStar
from dropdown_rank.layers.time_gap import log2_bucket

AGGREGATORS = {
    ("hgcn", "fused"): HGCNAggregator,
    ("hgcn", "spektral"): SpektralGCNStar,
    ("gat", "fused"): GATAggregator,
    ("gat", "spektral"): SpektralGATStar,
}
AGE_BUCKETS = 26  # log2 seconds: bucket 22 is about 30 days
COUNT_BUCKETS = 16
EDGE_BUCKETS = AGE_BUCKETS + COUNT_BUCKETS


def set_untracked(owner, name: str, variable: tf.Variable) -> None:
    """``owner.name = variable`` without Keras tracking it, so ``owner``'s weights and checkpoints leave it out.

    Private by necessity: Keras tracks every attribute a layer is given, and its public ways out
    (``trainable=False``, ``tf.Module`` without tracking) still put the variable in ``weights`` and
    checkpoints; ``object.__setattr__`` skips ``Layer.__setattr__``'s tracking. Pinned by
    ``tests/test_layers.py::test_tables_are_swappable_and_shape_checked`` (the tables are in no
    checkpoint and no ``variables`` list) and ``test_training.py``'s reloads (weights load without them)."""
    object.__setattr__(owner, name, variable)


def load_untracked(owner, name: str, value) -> None:
    """Set ``owner.name``, a variable Keras does not track (graph data, not weights), to ``value``.

    In place when it can take the value. Under a ``ParameterServerStrategy`` it is made anew with
    the value's fixed shape: that strategy shards a variable when it is made, and a remote worker
    cannot read a variable of unknown shape (its runtime aborts)."""
    current = getattr(owner, name, None)
    if isinstance(current, tf.Variable) and current.shape.is_compatible_with(value.shape) and \
            not isinstance(tf.distribute.get_strategy(), tf.distribute.ParameterServerStrategy):
        current.assign(value)
    else:
        set_untracked(owner, name, tf.Variable(value, trainable=False, name=name))


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class GraphContext(tf.keras.layers.Layer):
    """Replaces node ids by a graph-context representation built from their first-order neighbors.

    The neighbor tables are non-trainable layer state, swappable with :meth:`set_tables` without
    retraining, and not part of the layer's weights (checkpoints hold what is learned; :attr:`tables`
    lists them for a SavedModel). They hold one or more **daily snapshots** stored as changes
    (``tables.DailyTables``): a node's row is kept once per day it changes, as a *version* (rows of
    ``neighbor_ids``, ``edge_weight``, ``edge_last_ts``, ``edge_count_bucket``; row 0 is the empty
    row), with ``first_version[n] .. first_version[n + 1]`` the versions of node ``n`` in day order
    and ``version_day`` the snapshot index each takes effect. A key ``snapshot * num_nodes + node``
    reads the node's latest version not after its snapshot (a binary search over the node's
    versions: a few lookups, whatever the vocabulary or history length) and measures each edge's age
    from that snapshot's day start (``snapshot_days``). A training model holds every day and each row
    reads its own day's (``snapshot``); an exported model holds one. Memory grows with the rows that
    change, not with days × nodes.

    A neighbor's features are its id embedding (the model's node
    embedding, shared and trained end to end) plus embeddings of the edge's time features: its age
    at the snapshot and its co-occurrence count, both log2-bucketed (one table, ``edge_time``, of
    ``AGE_BUCKETS + COUNT_BUCKETS`` rows). Attention models also add ``weight * edge_weight_vector``;
    HGCN uses the weight in its weighted mean.

    The context is request-independent: a function of the (snapshot, node) pair, its neighbors and
    their edge features only. So ``call`` computes it once per **unique** (snapshot, node) pair in the
    batch (``tf.unique``, then a gather back), and :meth:`precompute` materializes it for every node
    of the last snapshot at export.

    ``impl="fused"`` (default) in training never gathers ``[nodes, K, F]`` neighbor features:
    neighbor sums are sparse products with the rows of the batch's distinct neighbors
    (``neighbor_sums.py``), so a step reads only those rows (and, under ``LazyAdam``, updates only them).
    Outside training (a 10-candidate request has few duplicate neighbors) the fused layers gather
    the neighbor rows directly. ``impl="spektral"`` gathers too and runs
    spektral's ``GCNConv``/``GATConv`` over star subgraphs. All paths compute the same function with
    the same weights (``tests/test_layers.py``).

    With ``use_edge_weight=False`` (the id-and-time-only variant) neighbors carry no weight: HGCN
    takes an unweighted mean, gat gets no weight feature.

    **Mode**: any shape of ids.

    **Input**
    - ``node_ids``: int ``[B, ...]``, model ids (0 = padding, which has no neighbors);
    - ``embeddings``: float ``[num_nodes, dim]``, the node embedding matrix;
    - ``snapshot``: int ``[B]``, each row's snapshot index (default: all 0).

    **Output**: float ``[B, ..., dim]``.
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
        if aggregator == "gat":
            options["heads"] = heads
        self.aggregate = AGGREGATORS[(aggregator, impl)](dim, name=f"{aggregator}_{impl}", **options)
        if impl == "fused":  # called through combine/call_factorized, not __call__, so build here
            self.aggregate.build([tf.TensorShape([None, dim]), tf.TensorShape([None, neighbors, dim]), tf.TensorShape([None, neighbors])])
        self.edge_time = tf.keras.layers.Embedding(EDGE_BUCKETS, dim, name="edge_time")
        self.edge_time.build((None,))
        # The tables are data, not weights: kept out of Keras tracking, so checkpoints and save_weights
        # hold only what training learns. Whoever saves the layer for serving saves them explicitly (``tables``).
        # Every dimension but K may change, so another day's (or every day's) tables load in place.
        def table(name, value):
            variable = tf.Variable(value, shape=tf.TensorShape([None, *value.shape[1:]]), trainable=False, name=name)
            set_untracked(self, name, variable)
        table("snapshot_days", tf.zeros([1], tf.int64))
        table("first_version", tf.ones([num_nodes + 1], tf.int64))  # every node: no versions (row 0)
        table("version_day", tf.zeros([1], tf.int32))
        table("neighbor_ids", tf.zeros([1, neighbors], tf.int32))
        table("edge_weight", tf.zeros([1, neighbors], tf.float32))
        table("edge_last_ts", tf.zeros([1, neighbors], tf.int64))
        table("edge_count_bucket", tf.fill([1, neighbors], AGE_BUCKETS))
        self.weight_vector = None
        if aggregator == "gat" and use_edge_weight:
            self.weight_vector = self.add_weight(name="edge_weight_vector", shape=[dim], initializer="glorot_uniform")

    def set_tables(self, snapshot_days, first_version, version_day, ids, weight, last_ts, count) -> None:
        """Load neighbor history already in this layer's id space (``model.table_in_model_space``).

        ``snapshot_days`` ``[S]``: the snapshots' day starts, ascending. ``first_version`` ``[num_nodes + 1]``:
        node ``n``'s versions are rows ``first_version[n] .. first_version[n + 1] - 1``, in day order.
        ``version_day`` ``[V + 1]``: the snapshot index from which each row holds (row 0: unused). ``ids``,
        ``weight`` (normalized co-occurrence weight), ``last_ts`` (the edge's last co-occurrence) and ``count``:
        ``[V + 1, K]``, row 0 empty; padding entries have id 0.

        The tables load in place when they can (:func:`load_untracked`); under a ``ParameterServerStrategy``,
        or when the variables cannot take the new shape, they are new variables, and a ``tf.function`` traced
        before reads the old ones.
        """
        rows = len(ids)
        if len(first_version) != self.num_nodes + 1:
            raise ValueError(f"neighbor history 'first_version' has {len(first_version)} entries, expected {self.num_nodes + 1} "
                             f"(nodes + 1)")
        if len(snapshot_days) == 0 or np.any(np.diff(snapshot_days) <= 0):
            raise ValueError("neighbor history 'snapshot_days' must be one or more day starts, ascending")
        if first_version[0] != 1 or first_version[-1] != rows or np.any(np.diff(first_version) < 0) or len(version_day) != rows:
            raise ValueError(f"neighbor history: 'first_version' must run from 1 to the {rows} rows of 'ids' (row 0 empty), "
                             f"and 'version_day' have one entry per row")
        expected = (rows, self.neighbors)
        for name, array in (("ids", ids), ("weight", weight), ("last_ts", last_ts), ("count", count)):
            if tuple(array.shape) != expected:
                raise ValueError(f"neighbor table '{name}' has shape {tuple(array.shape)}, expected {expected}")
        present = tf.constant(ids) > 0
        effective = tf.cast(weight, tf.float32) if self.use_edge_weight else tf.ones(expected, tf.float32)
        values = {"snapshot_days": tf.constant(snapshot_days, tf.int64), "first_version": tf.constant(first_version, tf.int64),
                  "version_day": tf.constant(version_day, tf.int32), "neighbor_ids": tf.cast(ids, tf.int32),
                  "edge_weight": tf.where(present, effective, 0.0), "edge_last_ts": tf.constant(last_ts, tf.int64),
                  "edge_count_bucket": tf.where(present, AGE_BUCKETS + log2_bucket(count, COUNT_BUCKETS), AGE_BUCKETS)}
        for name, value in values.items():
            load_untracked(self, name, value)

    @property
    def tables(self) -> list:
        """The neighbor-history variables (untracked by Keras: see ``__init__``)."""
        return [self.snapshot_days, self.first_version, self.version_day, self.neighbor_ids, self.edge_weight,
                self.edge_last_ts, self.edge_count_bucket]

    @property
    def snapshots(self):
        return tf.shape(self.snapshot_days)[0]

    def version_rows(self, keys):
        """Per key ``snapshot * num_nodes + node`` (int64 ``[n]``), the row of the node's latest version not after the
        snapshot, or 0 (no neighbors then)."""
        snapshot, node = tf.cast(keys // self.num_nodes, tf.int32), keys % self.num_nodes
        start = tf.nn.embedding_lookup(self.first_version, node)
        end = tf.nn.embedding_lookup(self.first_version, node + 1)

        def halve(low, high):
            # low..high brackets the node's first version that starts after the snapshot.
            active = low < high
            middle = (low + high) // 2
            later = tf.nn.embedding_lookup(self.version_day, tf.where(active, middle, 0)) > snapshot
            return tf.where(active & ~later, middle + 1, low), tf.where(active & later, middle, high)

        after, _ = tf.while_loop(lambda low, high: tf.reduce_any(low < high), halve, (start, end))
        return tf.where(after > start, after - 1, 0)

    def neighbor_rows(self, keys):
        """Neighbor ids ``[n, K]``, effective weights ``[n, K]`` and edge buckets ``[n, K, 2]`` (log2 age at the key's
        snapshot; ``AGE_BUCKETS`` + log2 count) of each key ``snapshot * num_nodes + node`` in a 1-D ``keys``."""
        keys = tf.cast(keys, tf.int64)
        rows = self.version_rows(keys)
        # embedding_lookup, not gather: under a parameter-server strategy the tables may be sharded variables,
        # which a gather would first concatenate whole.
        neighbor_ids = tf.nn.embedding_lookup(self.neighbor_ids, rows)
        day = tf.gather(self.snapshot_days, keys // self.num_nodes)
        age = day[:, None] - tf.nn.embedding_lookup(self.edge_last_ts, rows)
        age_bucket = tf.where(neighbor_ids > 0, log2_bucket(age, AGE_BUCKETS), 0)
        buckets = tf.stack([age_bucket, tf.nn.embedding_lookup(self.edge_count_bucket, rows)], axis=-1)
        return neighbor_ids, tf.nn.embedding_lookup(self.edge_weight, rows), buckets

    def node_context(self, keys, embeddings, training=None, return_attention: bool = False):
        """Context of each (snapshot, node) key ``snapshot * num_nodes + node`` in a 1-D ``keys``
        (no deduplication; a plain node id is a key of snapshot 0): ``[n, dim]``.

        With ``return_attention=True`` returns ``(context, attention)``; attention is
        ``[n, heads, K+1]`` (0 = self) for attention aggregators and None for HGCN.
        """
        keys = tf.cast(keys, tf.int64)
        neighbor_ids, weight, buckets = self.neighbor_rows(keys)
        center = tf.nn.embedding_lookup(embeddings, keys % self.num_nodes)
        edge_table = self.edge_time.embeddings
        if self.impl == "spektral" or not training:
            features = tf.nn.embedding_lookup(embeddings, neighbor_ids) + tf.reduce_sum(tf.nn.embedding_lookup(edge_table, buckets), axis=-2)
            if self.weight_vector is not None:
                features += weight[..., None] * self.weight_vector
            if self.aggregator == "hgcn":
                out = self.aggregate([center, features, weight])
                return (out, None) if return_attention else out
            return self.aggregate([center, features, neighbor_ids > 0], training=training, return_attention=return_attention)
        local_ids, rows = batch_rows(neighbor_ids, embeddings)
        if self.aggregator == "hgcn":
            neighbor_sum = weighted_rows(local_ids, weight, rows)
            neighbor_sum += tf.matmul(bucket_mass(weight, buckets, EDGE_BUCKETS), edge_table)
            out = self.aggregate.combine(center, neighbor_sum, tf.reduce_sum(weight, axis=-1))
            return (out, None) if return_attention else out
        return self.aggregate.call_factorized(
            center, rows, local_ids, neighbor_ids > 0, edge_table, buckets, edge_weight=weight,
            weight_vector=self.weight_vector, training=training, return_attention=return_attention,
        )

    def keys(self, node_ids, snapshot=None):
        """``snapshot * num_nodes + node_ids`` with ``snapshot`` ``[B]`` broadcast over ``node_ids`` ``[B, ...]``."""
        node_ids = tf.cast(node_ids, tf.int64)  # int64: snapshots x nodes passes 2**31 at 10M nodes x 215 days
        if snapshot is None:
            return node_ids
        snapshot = tf.reshape(tf.cast(snapshot, tf.int64), tf.concat([[-1], tf.ones([tf.rank(node_ids) - 1], tf.int32)], 0))
        return snapshot * self.num_nodes + node_ids

    def call(self, node_ids, embeddings, snapshot=None, training=None):
        unique, index = tf.unique(tf.reshape(self.keys(node_ids, snapshot), [-1]))
        context = tf.gather(self.node_context(unique, embeddings, training=training), index)
        return tf.reshape(context, tf.concat([tf.shape(node_ids), [self.dim]], axis=0))

    def precompute(self, embeddings, chunk: int = 65536):
        """The context of every node id in the last snapshot, ``[num_nodes, dim]`` (for serving by lookup).

        Computed ``chunk`` nodes at a time (eagerly, as at export): the gathered neighbor features are
        ``[chunk, K, dim]``, not ``[num_nodes, K, dim]``."""
        first = (int(self.snapshots) - 1) * self.num_nodes
        return tf.concat([self.node_context(tf.range(first + start, first + min(start + chunk, self.num_nodes)), embeddings,
                                            training=False)
                          for start in range(0, self.num_nodes, chunk)], axis=0)

    def get_config(self):
        return {**super().get_config(), "num_nodes": self.num_nodes, "neighbors": self.neighbors, "dim": self.dim,
                "aggregator": self.aggregator, "impl": self.impl, "use_edge_weight": self.use_edge_weight,
                "heads": self.heads, "activation": tf.keras.activations.serialize(self.activation)}

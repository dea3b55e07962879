"""How the candidate is related, through the q2q graph, to the user's recent queries."""
import tensorflow as tf

HOUR = 3600.0


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class CandidateRelations(tf.keras.layers.Layer):
    """Fixed features of the edges between the candidate and each of the last L history queries; no weights.

    The graph context enriches every node on its own: whether the candidate is *related to what the
    user just did* reaches the ranker only through target attention over enriched vectors. This
    layer reads it off the request's own q2q snapshot directly, as the production system's
    first-order neighbor id and time features do. History query ``h`` and the candidate ``c`` are
    **related** when ``c`` is among ``h``'s K neighbors or ``h`` among ``c``'s (the table keeps a top
    K per node, so either direction can be missing); the edge's features are those of the direction
    found (the larger weight when both are).

    Everything is gathered from the neighbor tables the model already holds (no sample storage;
    the same in a SavedModel). A history query equal to the candidate is an exact match
    (``RequestFeatures``), not a relation, and never counts here.

    **Mode**: batch.

    **Input**
    - ``candidate``: int ``[B]`` model ids (0 padding, OOV ids have no neighbors);
    - ``history``: int ``[B, L]`` model ids, most recent first;
    - ``history_ts``: int64 ``[B, L]``; ``request_ts``: int64 ``[B]``;
    - ``candidate_rows``: int ``[B]`` and ``history_rows``: int ``[B, L]``, each node's row in the
      tables below, which hold it as of the request's snapshot;
    - ``neighbor_ids`` int ``[rows, K]``, ``edge_weight`` float ``[rows, K]``, ``edge_buckets`` int
      ``[rows, K, 2]`` (log2 age bucket, ``age_buckets`` + log2 count bucket): the model passes the batch's
      distinct (snapshot, node) rows read by ``GraphContext.neighbor_rows``
      (an id-and-time-only context holds weight 1 on every edge, so its weight features repeat the indicators).

    **Output**: float32 ``[B, 8]``: whether any of the last L queries is related; ``log1p`` of how
    many are; the largest edge weight; ``log1p`` hours since the latest related query (0 if none);
    whether the latest query is related and its edge weight; the freshest related edge's age
    bucket and the largest count bucket among related edges, each scaled to [0, 1] (0 if none).

    With ``two_hops=True``, ``[B, 12]``: four more features for history queries that are not
    related but share a neighbor with the candidate (``N(h) ∩ N(c)`` non-empty, read off the same
    two rows: a node ``x`` that both keep among their top K):
    whether any is, ``log1p`` of how many, ``log1p`` hours since the latest one (0 if none), and
    ``log1p`` of the most neighbors one of them shares with the candidate. This reaches intents the
    user has not expressed (GIN's argument) at the cost of a ``[B, L, K, K]`` comparison, with no
    more gathers than one hop.
    """

    def __init__(self, age_buckets: int, count_buckets: int, two_hops: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.age_buckets, self.count_buckets, self.two_hops = age_buckets, count_buckets, two_hops

    def call(self, candidate, history, history_ts, request_ts, candidate_rows, history_rows, neighbor_ids, edge_weight,
             edge_buckets):
        candidate = tf.cast(candidate, tf.int32)
        history = tf.cast(history, tf.int32)
        valid = (history > 0) & (history != candidate[:, None]) & (candidate[:, None] > 0)  # [B, L]
        # c in N(h): [B, L, K] from each history query's row.
        history_neighbors = tf.nn.embedding_lookup(neighbor_ids, history_rows)
        forward = tf.equal(history_neighbors, candidate[:, None, None])
        forward_weight = tf.nn.embedding_lookup(edge_weight, history_rows)
        forward_buckets = tf.nn.embedding_lookup(edge_buckets, history_rows)
        # h in N(c): [B, L, K] from the candidate's row.
        candidate_neighbors = tf.nn.embedding_lookup(neighbor_ids, candidate_rows)  # [B, K]
        backward = tf.equal(candidate_neighbors[:, None, :], history[:, :, None])
        backward_weight = tf.nn.embedding_lookup(edge_weight, candidate_rows)[:, None, :]
        backward_buckets = tf.nn.embedding_lookup(edge_buckets, candidate_rows)[:, None, :, :]

        def edge(match, weight, buckets):
            """Per (request, history query): matched?, weight, age bucket, count bucket (0 where unmatched)."""
            found = tf.reduce_any(match, axis=-1) & valid
            pick = tf.cast(match, tf.float32)
            chosen = lambda v: tf.reduce_sum(pick * tf.cast(v, tf.float32), axis=-1)  # noqa: E731  (at most one match per row)
            return (found, tf.where(found, chosen(weight), 0.0), tf.where(found, chosen(buckets[..., 0]), 0.0),
                    tf.where(found, chosen(buckets[..., 1]) - self.age_buckets, 0.0))

        f_found, f_weight, f_age, f_count = edge(forward, forward_weight, forward_buckets)
        b_found, b_weight, b_age, b_count = edge(backward, tf.broadcast_to(backward_weight, tf.shape(forward_weight)),
                                                 tf.broadcast_to(backward_buckets, tf.shape(forward_buckets)))
        use_forward = f_found & (~b_found | (f_weight >= b_weight))
        related = f_found | b_found
        weight = tf.where(use_forward, f_weight, b_weight)
        age = tf.where(use_forward, f_age, b_age)
        count = tf.where(use_forward, f_count, b_count)

        related_f = tf.cast(related, tf.float32)
        any_related = tf.reduce_any(related, axis=1)
        gap = tf.cast(request_ts[:, None] - tf.cast(history_ts, tf.int64), tf.float32)
        latest_gap = tf.reduce_min(tf.where(related, gap, float("inf")), axis=1)
        recency = tf.where(any_related, tf.math.log1p(tf.maximum(latest_gap, 0.0) / HOUR), 0.0)
        freshest = tf.reduce_min(tf.where(related, age, float(self.age_buckets)), axis=1)
        length = tf.shape(history)[1]
        first = tf.cond(length > 0, lambda: related_f[:, 0], lambda: tf.zeros_like(recency))
        first_weight = tf.cond(length > 0, lambda: weight[:, 0], lambda: tf.zeros_like(recency))
        one_hop = [
            tf.cast(any_related, tf.float32),
            tf.math.log1p(tf.reduce_sum(related_f, axis=1)),
            tf.reduce_max(tf.concat([weight * related_f, tf.zeros_like(weight[:, :1])], axis=1), axis=1),
            recency,
            first,
            first_weight,
            tf.where(any_related, freshest / self.age_buckets, 0.0),
            tf.reduce_max(tf.concat([count * related_f, tf.zeros_like(count[:, :1])], axis=1), axis=1) / self.count_buckets,
        ]
        if not self.two_hops:
            return tf.stack(one_hop, axis=1)
        return tf.stack(one_hop + self._shared_neighbors(history_neighbors, candidate_neighbors, valid & ~related, gap), axis=1)

    @staticmethod
    def _shared_neighbors(history_neighbors, candidate_neighbors, eligible, gap):
        """The two-hop features: history queries (``eligible`` ``[B, L]``) sharing a neighbor with the candidate."""
        shared = tf.equal(history_neighbors[:, :, :, None], candidate_neighbors[:, None, None, :]) & \
            (history_neighbors[:, :, :, None] > 0)  # [B, L, K, K]
        shared_count = tf.where(eligible, tf.reduce_sum(tf.cast(shared, tf.float32), axis=[2, 3]), 0.0)  # [B, L]
        reached = shared_count > 0
        any_reached = tf.reduce_any(reached, axis=1)
        latest_gap = tf.reduce_min(tf.where(reached, gap, float("inf")), axis=1)
        return [
            tf.cast(any_reached, tf.float32),
            tf.math.log1p(tf.reduce_sum(tf.cast(reached, tf.float32), axis=1)),
            tf.where(any_reached, tf.math.log1p(tf.maximum(latest_gap, 0.0) / HOUR), 0.0),
            tf.math.log1p(tf.reduce_max(tf.concat([shared_count, tf.zeros_like(shared_count[:, :1])], axis=1), axis=1)),
        ]

    def get_config(self):
        return {**super().get_config(), "age_buckets": self.age_buckets, "count_buckets": self.count_buckets,
                "two_hops": self.two_hops}

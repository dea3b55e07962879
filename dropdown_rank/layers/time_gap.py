"""Log-scale time buckets and the time-gap embedding of a history."""
import tensorflow as tf


# How log2_bucket is computed, in every run's identity: a run trained when buckets came from a float log (values next to
# a power of two one bucket lower when traced) would read other buckets here, so it is not resumed, reused or continued.
BUCKET_RULE = "float64 exponent"
BUCKET_RULE_BEFORE = "float log"  # what a run.json without the key was trained with


def log2_bucket(values, num_buckets: int):
    """Bucket ``1 + floor(log2(1 + max(values, 0)))``, capped at ``num_buckets - 1`` (at most 54); int32.

    Bucket 0 is never produced here: callers reserve it for padding. Used for behavior-to-request
    gaps and edge ages (in seconds) and for edge counts. A fractional value counts as its floor (the
    bucket edges are integers). Values are finite and below 2**63 - 1 (seconds, counts); callers mask
    padding before reading buckets.

    ``floor(log2(v))`` is read off the exponent bits of ``v`` as a float64, exact below 2**53: a float
    ``log`` put values next to a power of two (7, 63, 4095 s, ...) in the bucket below inside a
    ``tf.function`` (Grappler rewrites ``log(1 + x)`` as ``log1p``) but not eagerly, so a model scored
    eagerly read other buckets than it was trained on.
    """
    if num_buckets > 54:
        raise ValueError(f"num_buckets {num_buckets}: at most 54 (float64 exponents are exact below 2**53)")
    whole = tf.cast(tf.maximum(tf.cast(values, tf.int64), 0) + 1, tf.float64)
    floor_log2 = tf.bitwise.right_shift(tf.bitcast(whole, tf.int64), tf.constant(52, tf.int64)) - 1023
    return tf.cast(tf.minimum(1 + floor_log2, num_buckets - 1), tf.int32)


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class TimeGapEmbedding(tf.keras.layers.Layer):
    """Embeds how long before the request each behavior happened, on a log2 scale of seconds.

    **Mode**: batch.

    **Input**
    - ``behavior_ts``: int64 ``[batch, L]``, epoch seconds (anything at padded positions);
    - ``request_ts``: int64 ``[batch]``;
    - ``mask``: bool ``[batch, L]``, True where a behavior exists.

    **Output**: float32 ``[batch, L, dim]``; padded positions get bucket 0 (the padding row).

    Gaps below 1 s share bucket 1, which training never fills (histories are strictly before the request,
    and the serving contract refuses a 0 s gap); about 30 days fall in bucket 22; beyond ``num_buckets - 1``
    all gaps share the last bucket.
    """

    def __init__(self, dim: int, num_buckets: int = 26, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_buckets = dim, num_buckets
        self.embedding = tf.keras.layers.Embedding(num_buckets, dim, name="buckets")

    def call(self, behavior_ts, request_ts, mask):
        gap = tf.cast(request_ts, tf.int64)[:, None] - tf.cast(behavior_ts, tf.int64)
        bucket = tf.where(mask, log2_bucket(gap, self.num_buckets), 0)
        return self.embedding(bucket)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_buckets": self.num_buckets}

"""DIN-style target attention: pool a history with weights conditioned on the candidate."""
import tensorflow as tf


def masked_softmax(scores, mask):
    """Softmax over the last axis restricted to ``mask``; all-masked rows give all-zero weights."""
    mask = tf.cast(mask, scores.dtype)
    scores = scores - tf.reduce_max(scores + (mask - 1.0) * 1e9, axis=-1, keepdims=True)
    exp = tf.exp(tf.minimum(scores, 0.0)) * mask
    return exp / tf.maximum(tf.reduce_sum(exp, axis=-1, keepdims=True), 1e-12)


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class TargetAttention(tf.keras.layers.Layer):
    """Attention pooling of a history, conditioned on the target (candidate), as in DIN.

    A small MLP scores each position from ``[target, key, target - key, target * key]``; the scores
    are turned into weights by a softmax over the unmasked positions. Padded positions get weight
    exactly 0, so their content cannot reach the output; an empty history pools to zeros.

    **Mode**: batch.

    **Input**
    - ``target``: float ``[batch, d]``;
    - ``keys``: float ``[batch, L, d]``;
    - ``mask``: bool ``[batch, L]``.

    **Output**: ``[batch, d]``, and with ``return_weights=True`` also the weights ``[batch, L]``.
    """

    def __init__(self, hidden_units=(32,), activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_units, self.activation = tuple(hidden_units), activation
        self.scorer = tf.keras.Sequential(
            [tf.keras.layers.Dense(u, activation=activation) for u in self.hidden_units] + [tf.keras.layers.Dense(1)],
            name="scorer",
        )

    def call(self, target, keys, mask, return_weights: bool = False):
        target = tf.broadcast_to(target[:, None, :], tf.shape(keys))
        scores = tf.squeeze(self.scorer(tf.concat([target, keys, target - keys, target * keys], axis=-1)), -1)
        weights = masked_softmax(scores, mask)
        pooled = tf.einsum("bl,bld->bd", weights, keys)
        return (pooled, weights) if return_weights else pooled

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units), "activation": self.activation}

"""A shallow position-bias tower (PAL): used in training only, fixed at serving."""
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class PositionBias(tf.keras.layers.Layer):
    """P(seen | position): a learned logit per position, as in PAL (Guo et al., RecSys 2019).

    During training the click probability is modeled as ``P(seen | position) * P(click | seen)``,
    with ``P(click | seen)`` the ranker's output; at serving only the ranker's output is used, so
    the score no longer depends on the logged position. Positions above ``max_position`` share its
    bucket.

    **Mode**: batch. **Input**: int ``[batch]`` 0-based positions. **Output**: ``[batch]`` in (0, 1).
    """

    def __init__(self, max_position: int = 20, **kwargs):
        super().__init__(**kwargs)
        self.max_position = max_position
        self.logit = tf.keras.layers.Embedding(max_position + 1, 1, embeddings_initializer=tf.keras.initializers.Constant(3.0), name="logit")
        self.logit.build((None,))

    def call(self, position):
        position = tf.clip_by_value(tf.cast(position, tf.int32), 0, self.max_position)
        return tf.sigmoid(tf.squeeze(self.logit(position), -1))

    def get_config(self):
        return {**super().get_config(), "max_position": self.max_position}

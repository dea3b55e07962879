"""A shallow position-bias tower (PAL): used in training only, fixed at serving."""
import tensorflow as tf

DEFAULT_LEARNING_RATE_MULTIPLIER = 20.0
OLD_TOWER_MULTIPLIER = 1.0  # the tower until 2026-12-04: its logits learned at the ranker's rate


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class PositionBias(tf.keras.layers.Layer):
    """P(seen | position): a learned logit per position, as in PAL (Guo et al., RecSys 2019).

    During training the click probability is modeled as ``P(seen | position) * P(click | seen)``,
    with ``P(click | seen)`` the ranker's output; at serving only the ranker's output is used, so
    the score no longer depends on the logged position. Positions above ``max_position`` share its
    bucket.

    **Its own learning rate.** A position's logit is ``learning_rate_multiplier * w``, with ``w`` the
    trained variable (initialized so that every logit starts at ``initial_logit``). Adam's step on
    ``w`` is about its learning rate whatever the gradient's scale, so the logits move
    ``learning_rate_multiplier`` times faster than the ranker's weights: the tower gets a larger
    learning rate inside the one optimizer, with no second optimizer to checkpoint. With a
    multiplier of 1 this is the tower as it was until 2026-12-04, whose logits moved from 3.0 to
    2.89-3.33 over a training on the static world (fewer than 1,700 steps of 1e-3) while the world's
    examination falls to a quarter by position 9, about 4 logits away. The default, 20, lets the
    logits cross that distance in about 200 steps, half of the static world's first epoch: the
    multiplier is set by that step budget, not tuned on results.

    **Mode**: batch. **Input**: int ``[batch]`` 0-based positions. **Output**: ``[batch]`` in (0, 1).
    """

    def __init__(self, max_position: int = 20, learning_rate_multiplier: float = DEFAULT_LEARNING_RATE_MULTIPLIER,
                 initial_logit: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        if learning_rate_multiplier <= 0:
            raise ValueError(f"learning_rate_multiplier must be positive, not {learning_rate_multiplier}")
        self.max_position = max_position
        self.learning_rate_multiplier = float(learning_rate_multiplier)
        self.initial_logit = float(initial_logit)
        self.scaled_logit = self.add_weight(
            name="scaled_logit", shape=(max_position + 1,),
            initializer=tf.keras.initializers.Constant(self.initial_logit / self.learning_rate_multiplier))

    def logits(self) -> tf.Tensor:
        """``[max_position + 1]``: each position's logit."""
        return self.learning_rate_multiplier * self.scaled_logit

    def examination(self) -> tf.Tensor:
        """``[max_position + 1]``: P(seen | position) of each position."""
        return tf.sigmoid(self.logits())

    def call(self, position):
        position = tf.clip_by_value(tf.cast(position, tf.int32), 0, self.max_position)
        return tf.gather(self.examination(), position)

    def get_config(self):
        return {**super().get_config(), "max_position": self.max_position,
                "learning_rate_multiplier": self.learning_rate_multiplier, "initial_logit": self.initial_logit}

"""Optimizers whose step cost follows the batch, not the vocabulary.

tf-keras's Adam (new and legacy) decays both moments of every row of a table at every step, even
when the gradient is IndexedSlices, so each step costs ``O(V * dim)`` per embedding table: with
query and item vocabularies of 5e6, base_20 trained 60x slower than at 5e4 (issue 12).
:class:`LazyAdam` applies Adam's update to the rows a batch touched and leaves the other rows and
their moments as they are (the update TensorFlow Addons' LazyAdam made, which has no maintained
release for TF 2.21). Dense variables get plain Adam. ``train.make_optimizer`` picks it.

Why a lazy Adam rather than Adagrad on the tables (``tfrs.experimental.optimizers.CompositeOptimizer``):
it keeps the learning rate and the update the existing runs were tuned with, it is one optimizer
(checkpoints and resume stay as they were), and an id seen once in a while still gets Adam's
normalized step instead of Adagrad's shrinking one.
"""
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class LazyAdam(tf.keras.optimizers.legacy.Adam):
    """Adam whose sparse (IndexedSlices) updates read and write only the touched rows.

    For a row ``i`` in the batch: ``m_i = b1 m_i + (1 - b1) g_i``, ``v_i = b2 v_i + (1 - b2) g_i^2``,
    ``w_i -= lr_t m_i / (sqrt(v_i) + eps)`` with Adam's bias-corrected ``lr_t`` of the global step.
    Rows not in the batch keep their weights and moments (plain Adam would decay the moments and
    still move the weights). Duplicate indices are summed first (the base optimizer does that).
    Dense gradients take Adam's own fused path, so a model with no sparse gradient trains exactly
    as with Adam. A training loop keeps embedding gradients sparse when the optimizer says
    ``updates_touched_rows_only``.
    """

    updates_touched_rows_only = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name="LazyAdam", **kwargs):
        if kwargs.pop("amsgrad", False):
            raise ValueError("LazyAdam does not implement amsgrad")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=False,
                         name=name, **kwargs)

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        device, dtype = var.device, var.dtype.base_dtype
        # _fallback_apply_state: the protected hook every OptimizerV2 subclass uses (tf-keras's own Adam does) when a
        # sparse update runs without the precomputed coefficients; tests/test_optimizers.py checks the update by hand.
        coefficients = (apply_state or {}).get((device, dtype)) or self._fallback_apply_state(device, dtype)
        m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
        m_rows = coefficients["beta_1_t"] * tf.gather(m, indices) + coefficients["one_minus_beta_1_t"] * grad
        v_rows = coefficients["beta_2_t"] * tf.gather(v, indices) + coefficients["one_minus_beta_2_t"] * tf.square(grad)
        step = coefficients["lr"] * m_rows / (tf.sqrt(v_rows) + coefficients["epsilon"])
        return tf.group(m.scatter_update(tf.IndexedSlices(m_rows, indices)),
                        v.scatter_update(tf.IndexedSlices(v_rows, indices)),
                        var.scatter_sub(tf.IndexedSlices(step, indices)))


def create_slots(optimizer: tf.keras.optimizers.legacy.Optimizer, variables) -> None:
    """Make ``optimizer``'s slots (Adam's moments) for ``variables`` now, not lazily inside the first step.

    A resumed run's checkpoint then restores them at once. Made inside the first step, the slots of
    sharded tables (parameter servers) were left at zero (tf-keras#838) and a resumed run trained
    on from fresh moments. Private by necessity: the legacy optimizers have no public ``build``.
    Pinned by ``tests/test_cluster.py::test_a_parameter_server_cluster_shards_the_tables_trains_and_resumes``
    (the resumed run starts from the interrupted run's moments) and ``tests/test_daily.py`` (a
    continuation restores the parent's moments)."""
    optimizer._create_all_weights(variables)

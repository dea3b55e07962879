"""The attention aggregator written with spektral's GATConv over star subgraphs (reference form)."""

import tensorflow as tf

from dropdown_rank._env import onednn_enabled
from dropdown_rank.layers.star_graph import star_graph


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class SpektralGATStar(tf.keras.layers.Layer):
    """Same function and weights as :class:`GATAggregator`, computed by ``spektral.layers.GATConv``.

    ``GATConv(concat_heads=False, add_self_loops=True)`` in batch mode on each center node's star
    subgraph; its center row plus a bias-free ``Dense`` skip of the center is the output (the
    activation moves after the sum). Selected with ``--graph-impl spektral``. This is the
    layer whose training segfaulted in most runs under oneDNN's CPU ops; it refuses to build under oneDNN, and
    ``tests/test_env.py`` trains it with oneDNN off in a fresh process.

    **Mode**: batch. **Input**: ``center`` [nodes, F], ``neighbors`` [nodes, K, F], ``mask``
    [nodes, K]. **Output**: ``[nodes, channels]`` (and ``[nodes, heads, K+1]`` attention weights with
    ``return_attention=True``).
    """

    def __init__(self, channels: int, heads: int = 1, dropout_rate: float = 0.0, activation=None, use_bias: bool = True, **kwargs):
        if onednn_enabled():
            # A segfault mid-fit loses the run and says nothing; refuse up front instead.
            raise RuntimeError(
                "spektral's GATConv crashes under oneDNN (training crashed in 4 of 4 fresh processes, "
                "benchmarks/README.md), which TensorFlow turns on by default. To use it, start Python with "
                "TF_ENABLE_ONEDNN_OPTS=0 in the environment (oneDNN off: the other models train 33-50% slower), "
                "or use --graph-impl fused (the default), which trains cleanly with oneDNN on."
            )
        super().__init__(**kwargs)
        self.channels, self.heads, self.dropout_rate, self.use_bias = channels, heads, dropout_rate, use_bias
        self.activation = tf.keras.activations.get(activation)
        self.self_transform = tf.keras.layers.Dense(channels, use_bias=False, name="self_transform")
        # Imported here: spektral's package import loads its datasets and scikit-learn's model selection (about 1.4 s
        # in every process that imports the model), and only the reference form needs it.
        from spektral.layers import GATConv

        self.gat = GATConv(channels, attn_heads=heads, concat_heads=False, dropout_rate=dropout_rate, return_attn_coef=True,
                           add_self_loops=True, activation=None, use_bias=use_bias, name="gat")

    def call(self, inputs, training=None, return_attention: bool = False):
        center, neighbors, mask = inputs
        x, a = star_graph(center, neighbors, tf.cast(tf.cast(mask, tf.bool), center.dtype))
        out, attention = self.gat([x, a], training=training)
        out, attention = self.activation(out[:, 0] + self.self_transform(center)), attention[:, 0]
        return (out, attention) if return_attention else out

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "heads": self.heads, "dropout_rate": self.dropout_rate,
                "use_bias": self.use_bias, "activation": tf.keras.activations.serialize(self.activation)}

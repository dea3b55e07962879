"""The HGCN aggregator written with spektral's GCNConv over star subgraphs (reference form)."""
import tensorflow as tf

from dropdown_rank.layers.star_graph import star_graph


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class SpektralGCNStar(tf.keras.layers.Layer):
    """Same function and weights as :class:`HGCNAggregator`, computed by ``spektral.layers.GCNConv``.

    Builds each center node's star subgraph, adds self-loops, row-normalizes the adjacency (the
    weighted mean), runs ``GCNConv`` in batch mode and reads the center row; the self transform is a
    bias-free ``Dense``. Selected with ``--graph-impl spektral``. It is slower than the fused layer
    (see benchmarks/) because it materializes ``[nodes, K+1, K+1]`` adjacencies and all K+1 outputs.

    **Mode**: batch. **Input**: ``center`` [nodes, F], ``neighbors`` [nodes, K, F],
    ``edge_weight`` [nodes, K] (0 = padding). **Output**: ``[nodes, channels]``.
    """

    def __init__(self, channels: int, activation=None, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.use_bias = channels, use_bias
        self.activation = tf.keras.activations.get(activation)
        self.self_transform = tf.keras.layers.Dense(channels, use_bias=False, name="self_transform")
        # Imported here: spektral's package import loads its datasets and scikit-learn's model selection (about 1.4 s
        # in every process that imports the model), and only the reference form needs it.
        from spektral.layers import GCNConv

        self.gcn = GCNConv(channels, activation=None, use_bias=use_bias, name="gcn")

    def call(self, inputs):
        center, neighbors, edge_weight = inputs
        x, a = star_graph(center, neighbors, tf.cast(edge_weight, center.dtype))
        a = a + tf.eye(tf.shape(a)[1], dtype=a.dtype)
        a = a / tf.reduce_sum(a, axis=-1, keepdims=True)
        return self.activation(self.gcn([x, a])[:, 0] + self.self_transform(center))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "use_bias": self.use_bias,
                "activation": tf.keras.activations.serialize(self.activation)}

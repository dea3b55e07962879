"""One relation of the heterogeneous GCN: weighted mean over a node's star, plus a self transform."""
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class HGCNAggregator(tf.keras.layers.Layer):
    r"""Graph context of center nodes from their first-order neighbors, for one relation.

    .. math::
        \mathrm{out} = \sigma\Big(x_c W_{self} + \frac{x_c + \sum_k w_k h_k}{1 + \sum_k w_k} W_{neigh} + b\Big)

    The neighborhood term is spektral's ``GCNConv`` applied to the node's star subgraph (center
    plus its K neighbors) with a row-normalized adjacency and a self-loop, read at the center.
    This layer computes that center row directly from a dense ``[nodes, K]`` neighbor layout: it
    never builds the ``(K+1) x (K+1)`` adjacency, never computes the K outputs it would discard, and
    applies ``W_neigh`` once per node after aggregating (the map is linear) instead of once per
    neighbor. :meth:`combine` takes the neighbor sums already computed, which lets
    :class:`GraphContext` form them from lookup tables without gathering neighbors at all
    (``neighbor_sums.py`` says why that is faster). ``tests/test_layers.py`` checks both entry
    points against ``GCNConv`` on star graphs. A heterogeneous model uses one instance per relation (q2q, i2i), so each has its own weights.

    **Mode**: batch of star subgraphs (one per center node).

    **Input**
    - ``center``: ``[nodes, F]``;
    - ``neighbors``: ``[nodes, K, F]``;
    - ``edge_weight``: ``[nodes, K]``, >= 0; 0 means "no neighbor here" (padding). Pass 1 for
      every real neighbor to get an unweighted mean (the id-and-time-only variant).

    **Output**: ``[nodes, channels]``.
    """

    def __init__(self, channels: int, activation=None, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.use_bias = channels, use_bias
        self.activation = tf.keras.activations.get(activation)

    def build(self, input_shape):
        features = int(input_shape[0][-1])
        self.kernel_self = self.add_weight(name="kernel_self", shape=[features, self.channels], initializer="glorot_uniform")
        self.kernel = self.add_weight(name="kernel", shape=[features, self.channels], initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=[self.channels], initializer="zeros") if self.use_bias else None
        super().build(input_shape)

    def call(self, inputs):
        center, neighbors, edge_weight = inputs
        edge_weight = tf.cast(edge_weight, center.dtype)
        return self.combine(center, tf.einsum("nk,nkf->nf", edge_weight, neighbors), tf.reduce_sum(edge_weight, axis=-1))

    def combine(self, center, weighted_neighbor_sum, total_weight):
        """The layer from precomputed ``sum_k w_k h_k`` ``[nodes, F]`` and ``sum_k w_k`` ``[nodes]``.

        :class:`GraphContext` computes those sums from lookup tables without gathering neighbors.
        """
        mean = (center + weighted_neighbor_sum) / (1.0 + total_weight[:, None])
        out = tf.matmul(center, self.kernel_self) + tf.matmul(mean, self.kernel)
        if self.use_bias:
            out += self.bias
        return self.activation(out)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "use_bias": self.use_bias,
                "activation": tf.keras.activations.serialize(self.activation)}

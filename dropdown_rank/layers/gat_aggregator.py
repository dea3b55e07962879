"""GAT-style attention over a node's first-order neighbors, conditioned on the node itself."""
import tensorflow as tf

from dropdown_rank.layers.neighbor_sums import bucket_mass, weighted_rows
from dropdown_rank.layers.target_attention import masked_softmax


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class GATAggregator(tf.keras.layers.Layer):
    r"""Graph context of center nodes by graph attention over their star subgraph.

    With :math:`z_j = x_j W` for the center (:math:`j = 0`, the self-loop) and its neighbors,

    .. math::
        \alpha_{j} = \mathrm{softmax}_j\big(\mathrm{LeakyReLU}_{0.2}(a_{self}^\top z_0 + a_{neigh}^\top z_j)\big),
        \qquad \mathrm{out} = \sigma\Big(x_0 W_{self} + \tfrac{1}{H}\sum_{heads} \sum_j \alpha_j z_j + b\Big)

    where the softmax runs over the self-loop and the real neighbors only: a padded neighbor gets
    weight exactly 0. Apart from the skip term :math:`x_0 W_{self}`, this is the center row of
    spektral's ``GATConv`` (``concat_heads=False``, self-loops on) on the star subgraph, with the
    same weight shapes, computed without an adjacency matrix or outputs for the K leaves.
    ``tests/test_layers.py`` checks it against ``GATConv`` plus the same skip.

    The skip keeps the node's own identity: in a plain GAT row the node is one of K+1 softmax
    entries (about 1/11 of the weight at initialization with K=10), and without it the attention
    ranker scored 0.6919 test AUC on the synthetic default world of then against base_20's 0.7025. HGCN has the same
    self term.

    :meth:`call_factorized` computes the same thing when neighbor features are sums of lookup-table
    rows, without gathering them: :math:`a_{neigh}^\top z_j` is linear in :math:`x_j`, so every
    table is projected onto :math:`W a_{neigh}` once (a scalar per row) and scores are scalar
    gathers; the weighted sum :math:`\sum_j \alpha_j x_j` is a sparse product (``neighbor_sums.py``).

    **Mode**: batch of star subgraphs (one per center node).

    **Input** (``call``)
    - ``center``: ``[nodes, F]``;
    - ``neighbors``: ``[nodes, K, F]``;
    - ``mask``: ``[nodes, K]``, nonzero where a neighbor exists.

    **Output**: ``[nodes, channels]``; with ``return_attention=True`` also the attention weights
    ``[nodes, heads, K + 1]``, index 0 being the self-loop.
    """

    def __init__(self, channels: int, heads: int = 1, dropout_rate: float = 0.0, activation=None, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.heads, self.dropout_rate, self.use_bias = channels, heads, dropout_rate, use_bias
        self.activation = tf.keras.activations.get(activation)
        self.dropout = tf.keras.layers.Dropout(dropout_rate)

    def build(self, input_shape):
        features = int(input_shape[0][-1])
        self.kernel_self = self.add_weight(name="kernel_self", shape=[features, self.channels], initializer="glorot_uniform")
        self.kernel = self.add_weight(name="kernel", shape=[features, self.heads, self.channels], initializer="glorot_uniform")
        self.attn_kernel_self = self.add_weight(name="attn_kernel_self", shape=[self.channels, self.heads, 1], initializer="glorot_uniform")
        self.attn_kernel_neighs = self.add_weight(name="attn_kernel_neigh", shape=[self.channels, self.heads, 1], initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=[self.channels], initializer="zeros") if self.use_bias else None
        super().build(input_shape)

    def _attend(self, z_center, neighbor_scores, mask, training):
        """Attention weights [n, H, K+1] from the center's projection and the neighbors' scores [n, K, H]."""
        score_self = tf.einsum("nhc,ch->nh", z_center, self.attn_kernel_self[..., 0])
        center_as_neighbor = tf.einsum("nhc,ch->nh", z_center, self.attn_kernel_neighs[..., 0])
        scores = tf.concat([center_as_neighbor[:, None, :], neighbor_scores], axis=1)
        scores = tf.nn.leaky_relu(score_self[:, None, :] + scores, alpha=0.2)
        valid = tf.concat([tf.ones_like(mask[:, :1], tf.bool), tf.cast(mask, tf.bool)], axis=1)
        alpha = masked_softmax(tf.transpose(scores, [0, 2, 1]), valid[:, None, :])
        return alpha, self.dropout(alpha, training=training)

    def _finish(self, center, out, alpha, return_attention):
        out += tf.matmul(center, self.kernel_self)
        if self.use_bias:
            out += self.bias
        out = self.activation(out)
        return (out, alpha) if return_attention else out

    def call(self, inputs, training=None, return_attention: bool = False):
        center, neighbors, mask = inputs
        z_center = tf.einsum("nf,fhc->nhc", center, self.kernel)
        z_neighbors = tf.einsum("nkf,fhc->nkhc", neighbors, self.kernel)
        neighbor_scores = tf.einsum("nkhc,ch->nkh", z_neighbors, self.attn_kernel_neighs[..., 0])
        alpha, dropped = self._attend(z_center, neighbor_scores, mask, training)
        z = tf.concat([z_center[:, None], z_neighbors], axis=1)  # [n, K+1, H, C]
        out = tf.einsum("nhk,nkhc->nc", dropped, z) / float(self.heads)
        return self._finish(center, out, alpha, return_attention)

    def call_factorized(self, center, node_table, neighbor_ids, mask, edge_table, edge_buckets, edge_weight=None,
                        weight_vector=None, training=None, return_attention: bool = False):
        """``call`` for neighbors ``x_k = node_table[neighbor_ids[:, k]] + sum_b edge_table[edge_buckets[:, k, b]]
        (+ edge_weight[:, k] * weight_vector)``, never materialized. Shapes: ``node_table`` [V, F] (``GraphContext``
        passes only the batch's neighbor rows), ``neighbor_ids``/``mask``/``edge_weight`` [n, K], ``edge_table`` [B, F],
        ``edge_buckets`` [n, K, 2]."""
        to_score = tf.einsum("fhc,ch->fh", self.kernel, self.attn_kernel_neighs[..., 0])  # W a_neigh per head
        neighbor_scores = tf.gather(tf.matmul(node_table, to_score), neighbor_ids)
        neighbor_scores += tf.reduce_sum(tf.gather(tf.matmul(edge_table, to_score), edge_buckets), axis=-2)
        if weight_vector is not None:
            neighbor_scores += edge_weight[..., None] * tf.linalg.matvec(to_score, weight_vector, transpose_a=True)
        z_center = tf.einsum("nf,fhc->nhc", center, self.kernel)
        alpha, dropped = self._attend(z_center, neighbor_scores, mask, training)
        heads = []
        for h in range(self.heads):
            share = dropped[:, h, 1:]
            mixed = weighted_rows(neighbor_ids, share, node_table)
            mixed += tf.matmul(bucket_mass(share, edge_buckets, tf.shape(edge_table)[0]), edge_table)
            if weight_vector is not None:
                mixed += tf.reduce_sum(share * edge_weight, axis=-1, keepdims=True) * weight_vector
            heads.append(dropped[:, h, :1] * z_center[:, h] + tf.matmul(mixed, self.kernel[:, h]))
        return self._finish(center, tf.add_n(heads) / float(self.heads), alpha, return_attention)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "heads": self.heads, "dropout_rate": self.dropout_rate,
                "use_bias": self.use_bias, "activation": tf.keras.activations.serialize(self.activation)}

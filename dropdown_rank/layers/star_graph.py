"""Star subgraphs in spektral's batch mode: one small graph per center node."""
import tensorflow as tf


def star_graph(center, neighbors, edge_weight):
    """Node features ``x`` [n, K+1, F] (center first) and adjacency ``a`` [n, K+1, K+1].

    ``a[0, k+1] = a[k+1, 0] = edge_weight[k]``; leaves are not linked to each other and there are no
    self-loops (the spektral layers add their own normalization or self-loops).
    """
    x = tf.concat([center[:, None, :], neighbors], axis=1)
    w = tf.concat([tf.zeros_like(edge_weight[:, :1]), edge_weight], axis=1)
    first = tf.one_hot(0, tf.shape(w)[1], dtype=w.dtype)
    a = w[:, None, :] * first[None, :, None] + w[:, :, None] * first[None, None, :]
    return x, a

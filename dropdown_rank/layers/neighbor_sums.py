"""Weighted sums over neighbors whose features are rows of lookup tables, without gathering them.

A GNN layer's neighbor features here are sums of table rows: ``x_k = E[id_k] + T[bucket_k, 0] +
T[bucket_k, 1]`` (node embedding plus edge-time embeddings). A weighted sum over neighbors is then
a sparse matrix times ``E`` plus a bucket histogram times ``T``. Computing it that way, rather than
gathering a ``[nodes, K, F]`` tensor, saves the gather and the gradient's nodes x K duplicate rows.
:func:`batch_rows` first cuts ``E`` to the batch's distinct neighbors, so neither the product nor
its gradient (IndexedSlices of those rows) grows with the vocabulary.
"""
import tensorflow as tf


def batch_rows(ids, table):
    """``(local_ids, rows)``: the distinct ``ids`` gathered from ``table`` (``rows`` ``[U, F]``) and
    ``ids`` re-indexed into ``rows`` (same shape as ``ids``). ``rows[local_ids] == table[ids]``."""
    unique, local = tf.unique(tf.reshape(ids, [-1]))
    return tf.reshape(local, tf.shape(ids)), tf.nn.embedding_lookup(table, unique)  # reads a sharded table shard by shard


def weighted_rows(ids, values, table):
    """``sum_k values[:, k] * table[ids[:, k]]``: ``[n, F]`` from ids/values ``[n, K]``, table ``[V, F]``.

    Entries with value 0 (padding) contribute nothing; repeated ids in a row add up.
    """
    n, k = tf.shape(ids)[0], tf.shape(ids)[1]
    rows = tf.repeat(tf.range(n, dtype=tf.int64), k)
    indices = tf.stack([rows, tf.reshape(tf.cast(ids, tf.int64), [-1])], axis=1)
    shape = tf.cast(tf.stack([n, tf.shape(table)[0]]), tf.int64)
    matrix = tf.SparseTensor(indices, tf.reshape(tf.cast(values, table.dtype), [-1]), shape)
    return tf.sparse.sparse_dense_matmul(matrix, table)


def bucket_mass(values, buckets, num_buckets: int):
    """``[n, num_buckets]``: per row, the sum of ``values[:, k]`` over every bucket index of neighbor k.

    ``values`` is ``[n, K]``, ``buckets`` int ``[n, K, B]`` (B bucket features per neighbor).
    """
    n = tf.shape(values)[0]
    segments = tf.range(n)[:, None, None] * num_buckets + tf.cast(buckets, tf.int32)
    spread = tf.broadcast_to(values[..., None], tf.shape(buckets))
    mass = tf.math.unsorted_segment_sum(tf.reshape(spread, [-1]), tf.reshape(segments, [-1]), n * num_buckets)
    return tf.reshape(mass, [n, num_buckets])

"""Request features beyond the sequences: exact matches, the user's long-window count, popularity, CTR, prefix."""
import tensorflow as tf

from dropdown_rank.features import ENCODED_FEATURES

FEATURE_GROUPS = ("exact_match", "personal", "popularity", "ctr", "prefix")
_WIDTH = {"exact_match": 3, "personal": 3, "popularity": 1, "ctr": 3, "prefix": 2}
HOUR = 3600.0


def _log1p(values):
    return tf.math.log1p(tf.maximum(tf.cast(values, tf.float32), 0.0))


def _recency(age_seconds, seen):
    """``log1p(hours)`` of an age where one exists, else 0 (the ``seen`` indicator beside it tells the two apart)."""
    return tf.where(seen, _log1p(tf.cast(age_seconds, tf.float32) / HOUR), 0.0)


@tf.keras.utils.register_keras_serializable(package="dropdown_rank")
class RequestFeatures(tf.keras.layers.Layer):
    """Fixed transforms of a request's scalar features into a dense vector; no weights.

    **Mode**: batch.

    **Input**: a dict of ``[batch]`` tensors (and ``[batch, L]`` histories), as in the serving signature:
    - ``exact_match``: ``candidate``, ``query_history`` string ``[batch, L]`` (most recent first, ""
      padded), ``query_history_ts`` int64 ``[batch, L]`` and ``request_ts`` int64 give how many of the
      last L queries equal the candidate, whether any does, and ``log1p`` hours since the latest;
    - ``personal``: ``user_candidate_count`` int64 (>= 0) and ``user_candidate_age`` int64 seconds
      (-1: never) give ``log1p`` count, a seen indicator and ``log1p`` hours since;
    - ``popularity``: ``candidate_query_count`` int64 gives its ``log1p``;
    - ``ctr``: ``candidate_impressions`` and ``candidate_clicks`` int64 give both ``log1p`` and the
      smoothed rate ``clicks / (impressions + 1)`` (0 for a never-shown candidate);
    - ``prefix``: ``prefix`` and ``candidate`` strings give the prefix length and the characters the
      candidate adds beyond it (UTF-8 characters, divided by 10).

    and after the groups, whatever the groups: each scalar input the schema gives an ``encode``
    (``features.ENCODED_FEATURES``, none in the built-in schema): ``log1p`` of a count, or the value.

    **Output**: float32 ``[batch, width]``, the enabled groups in :data:`FEATURE_GROUPS` order, then the
    encoded inputs (``width`` is :meth:`width`).
    """

    def __init__(self, groups=FEATURE_GROUPS, seq_len: int = 20, **kwargs):
        super().__init__(**kwargs)
        unknown = set(groups) - set(FEATURE_GROUPS)
        if unknown:
            raise ValueError(f"unknown feature groups {sorted(unknown)}; known: {', '.join(FEATURE_GROUPS)}")
        self.groups = tuple(g for g in FEATURE_GROUPS if g in groups)
        self.seq_len = seq_len

    @property
    def width(self) -> int:
        return sum(_WIDTH[g] for g in self.groups) + len(ENCODED_FEATURES)

    def call(self, features):
        parts = []
        if "exact_match" in self.groups:
            history = features["query_history"][:, : self.seq_len]
            match = tf.logical_and(tf.equal(history, features["candidate"][:, None]), tf.not_equal(history, ""))
            matches = tf.reduce_sum(tf.cast(match, tf.float32), axis=1)
            seen = matches > 0
            # A max, not an argmax over positions: it also works for an empty history ([batch, 0]).
            match_ts = tf.where(match, tf.cast(features["query_history_ts"][:, : self.seq_len], tf.int64), tf.int64.min)
            latest = tf.reduce_max(match_ts, axis=1)
            age = tf.where(seen, tf.cast(features["request_ts"], tf.int64) - latest, 0)
            parts += [tf.math.log1p(matches), tf.cast(seen, tf.float32), _recency(age, seen)]
        if "personal" in self.groups:
            seen = features["user_candidate_age"] >= 0
            parts += [_log1p(features["user_candidate_count"]), tf.cast(seen, tf.float32),
                      _recency(features["user_candidate_age"], seen)]
        if "popularity" in self.groups:
            parts.append(_log1p(features["candidate_query_count"]))
        if "ctr" in self.groups:
            shown = tf.cast(tf.maximum(features["candidate_impressions"], 0), tf.float32)
            clicks = tf.cast(tf.maximum(features["candidate_clicks"], 0), tf.float32)
            parts += [tf.math.log1p(shown), tf.math.log1p(clicks), clicks / (shown + 1.0)]
        if "prefix" in self.groups:
            prefix_chars = tf.cast(tf.strings.length(features["prefix"], unit="UTF8_CHAR"), tf.float32)
            candidate_chars = tf.cast(tf.strings.length(features["candidate"], unit="UTF8_CHAR"), tf.float32)
            parts += [prefix_chars / 10.0, tf.maximum(candidate_chars - prefix_chars, 0.0) / 10.0]
        for name, encode in ENCODED_FEATURES:
            parts.append(_log1p(features[name]) if encode == "log1p" else tf.cast(features[name], tf.float32))
        if not parts:
            return tf.zeros([tf.shape(features["candidate"])[0], 0])
        return tf.stack(parts, axis=1)

    def get_config(self):
        return {**super().get_config(), "groups": list(self.groups), "seq_len": self.seq_len}

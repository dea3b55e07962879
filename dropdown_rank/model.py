"""Rankers that take raw strings: ``base`` (DIN-style) and the GNN rankers ``hgcn`` / ``gat``.

All three share one body:

* ``StringLookup`` layers map the user id, the candidate and the histories to ids, with an OOV
  bucket; "" is the padding token (id 0). Vocabularies come from the training period. With
  ``lagged_vocab`` (default) an id whose ``known_since`` is after the request reads as OOV, as it
  would have in a vocabulary refreshed daily (``vocab.py``): this is what trains the OOV vectors.
* The candidate query, each history query and each history item become a vector: their id
  embedding (``base``), or their graph context (GNN: :class:`~dropdown_rank.layers.GraphContext`
  over the q2q or i2i table of the request's day, computed once per unique (day, id) in the batch).
  A model may hold several daily snapshots (training does); each request reads the latest one that
  starts at or before its ``request_ts``, so an exported model holding one snapshot reads it always.
* Each history behavior adds an embedding of its log-bucketed gap to the request time.
* Target attention, conditioned on the candidate and masking padding, pools each history.
* :class:`~dropdown_rank.layers.RequestFeatures` turns the request's scalar features (exact
  matches of the candidate in the query history, computed here from the raw strings; the user's
  long-window count of the candidate; its popularity and past CTR; the prefix) into a vector
  (``features``: which groups; none gives the sequence-only ranker).
* With ``relations`` (GNN models; the ``+rel`` variants), :class:`~dropdown_rank.layers.CandidateRelations`
  adds how the candidate is related to each of the last L queries in the request's q2q snapshot
  (edge found either way, its weight, age and count, pooled with recency) to the request features;
  ``two_hops`` (``+2hop``) adds the history queries that share a neighbor with the candidate.
* With ``session`` (GNN models; ``+ses``), the **current session** is a context of its own: the
  history behaviors chained to the request by gaps of at most :data:`SESSION_GAP_SECONDS` (both
  kinds together) are mean-pooled from their graph-context vectors, per kind, and the MLP
  reads the two session vectors, their products with the candidate and ``log1p`` of the session's
  length.
* An MLP over ``[candidate, pooled queries, pooled items, user, candidate * pooled queries,
  candidate * pooled items, request features]`` plus a linear term of the request features gives
  the logit: count-like evidence (a user's repeat of the candidate) also has a direct path to it.
* ``calibration`` (scale, bias), fitted on validation days after training (``train.py``), maps the
  logit to a calibrated one; it is (1, 0) while training.

``base_20`` and ``base_50`` differ only in ``seq_len``: the model reads the first ``seq_len``
entries of most-recent-first histories, so longer inputs are cut to the latest behaviors.

:class:`CTRModel` wraps a ranker for training (``tfrs.models.Model`` with a ``tfrs.tasks.Ranking``
task, binary cross-entropy) and holds the optional position-bias tower, used in training only.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from dropdown_rank.features import BY_NAME, COUNTER_FIELDS, HISTORY_FIELDS, MODEL_INPUTS
from dropdown_rank.logs.schema import MAX_ID_CHARS, SESSION_GAP_MINUTES, TS_MAX, TS_MIN, WHITESPACE
from dropdown_rank.tables import RELATIONS, DailyTables
from dropdown_rank.layers import CandidateRelations, GraphContext, PositionBias, RequestFeatures, TargetAttention, TimeGapEmbedding
from dropdown_rank.layers.position_bias import DEFAULT_LEARNING_RATE_MULTIPLIER, OLD_TOWER_MULTIPLIER
from dropdown_rank.layers.graph_context import AGE_BUCKETS, COUNT_BUCKETS
from dropdown_rank.layers.request_features import FEATURE_GROUPS

KINDS = ("base", "hgcn", "gat")
GNN_KINDS = ("hgcn", "gat")
RELATION_OF = {kind: (relation, vocab_name) for relation, (kind, vocab_name) in RELATIONS.items()}  # by node kind
# The graph build's default session gap. The session context does not read the work directory's build settings,
# nor cut sessions at midnight as the build does: it is the user's recent burst of activity, not the graph's session.
SESSION_GAP_SECONDS = SESSION_GAP_MINUTES * 60.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    kind: str = "base"
    seq_len: int = 20
    dim: int = 16
    id_time_only: bool = False
    graph_impl: str = "fused"
    heads: int = 1
    context_activation: str | None = None
    attention_units: tuple = (32,)
    mlp_units: tuple = (128, 64)
    time_buckets: int = 26
    num_oov: int = 1
    neighbors: int | None = None  # GNN: read the top N of each row's stored neighbors; None: all the build stores
    position_bias: bool = False
    max_position: int = 20
    position_lr_multiplier: float = DEFAULT_LEARNING_RATE_MULTIPLIER  # the PAL tower's logits learn this many times faster
    lagged_vocab: bool = True
    features: tuple = FEATURE_GROUPS
    relations: bool = False
    two_hops: bool = False
    session: bool = False

    def __post_init__(self):
        unknown = set(self.features) - set(FEATURE_GROUPS)
        if unknown:
            raise ValueError(f"unknown feature groups {sorted(unknown)}; known: {', '.join(FEATURE_GROUPS)}")
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, not {self.kind!r}")
        if self.id_time_only and self.kind == "base":
            raise ValueError("--id-time-only applies to GNN models (hgcn, gat), not base")
        if self.relations and self.kind == "base":
            raise ValueError("--relations reads the q2q neighbor tables: it applies to GNN models (hgcn, gat), not base")
        if self.two_hops and not self.relations:
            raise ValueError("--two-hops extends --relations: give both")
        if self.session and self.kind == "base":
            raise ValueError("--session-context pools graph-context vectors: it applies to GNN models (hgcn, gat), not base")
        if self.neighbors is not None and (self.kind == "base" or self.neighbors < 1):
            raise ValueError(f"neighbors={self.neighbors}: a GNN reads at least 1 neighbor per node, and base reads none")
        if self.position_lr_multiplier <= 0:
            raise ValueError(f"--position-lr-multiplier must be positive, not {self.position_lr_multiplier}")
        if self.graph_impl not in ("fused", "spektral"):
            raise ValueError(f"graph_impl must be 'fused' or 'spektral', not {self.graph_impl!r}")

    @property
    def is_gnn(self) -> bool:
        return self.kind in GNN_KINDS

    @property
    def name(self) -> str:
        """``base_20``, ``hgcn_20``, ``gat*_20`` (``*``: neighbors carry only id and time), ``base_20+pal``
        (trained with the position-bias tower), ``hgcn_20+rel`` (with candidate-history relations; ``+rel+2hop``
        with two-hop ones), ``hgcn_20+ses`` (with the session context),
        ``base_20-nolag`` (without the lagged vocabulary),
        ``base_20-nofeat`` (no request features), ``base_20-noctr`` (without one feature group)."""
        missing = [g for g in FEATURE_GROUPS if g not in self.features]
        features = "-nofeat" if len(missing) == len(FEATURE_GROUPS) else "".join(f"-no{g}" for g in missing)
        return (f"{self.kind}{'*' if self.id_time_only else ''}_{self.seq_len}{'+rel' if self.relations else ''}"
                f"{'+2hop' if self.two_hops else ''}{'+ses' if self.session else ''}{self._pal_suffix}"
                f"{'' if self.lagged_vocab else '-nolag'}{features}")

    @property
    def _pal_suffix(self) -> str:
        """``+pal``, or ``+pal1x`` for a tower learning at another rate than the default (runs of another tower are
        another model, not seeds of this one)."""
        if not self.position_bias:
            return ""
        multiplier = self.position_lr_multiplier
        return "+pal" if multiplier == DEFAULT_LEARNING_RATE_MULTIPLIER else f"+pal{multiplier:g}x"

    @property
    def slug(self) -> str:
        """:attr:`name` as a directory or Keras layer name: ``*`` spelled ``_star`` and ``+`` spelled ``_``
        (``hgcn*_20+rel`` -> ``hgcn_star_20_rel``)."""
        return self.name.replace("*", "_star").replace("+", "_")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        values.setdefault("features", ())  # runs saved before request features read sequences only
        if values.get("kind") == "attention":  # runs saved before the graph-attention kind was named gat
            values["kind"] = "gat"
        if values.get("kind", "base") == "base":
            values.pop("neighbors", None)  # runs saved before it was None for base recorded the default, 10
        if values.get("position_bias"):  # PAL runs saved before the tower had its own learning rate
            values.setdefault("position_lr_multiplier", OLD_TOWER_MULTIPLIER)
        return cls(**values)


def table_in_model_space(tables: DailyTables, vocabulary: list[str], num_oov: int, neighbors: int) -> tuple[dict, dict]:
    """Re-index a neighbor history by a model's vocabulary: the arrays ``GraphContext.set_tables`` takes, and stats.

    Model ids: 0 = padding, 1..num_oov = OOV buckets, then the vocabulary. A model token missing from
    the tables gets no neighbors; a neighbor missing from the model vocabulary is dropped (the model
    has no embedding for it) and the remaining neighbors keep their rank order. Tables from another
    day or another build are matched by id strings, which is what makes them swappable. Only the
    stored versions are re-indexed, so memory grows with the rows that change, not days × nodes
    (``neighbors_dropped_out_of_vocabulary`` counts them per stored version).
    """
    rows = len(vocabulary) + 1 + num_oov
    first = 1 + num_oov
    to_model = pd.Index(vocabulary).get_indexer(tables.nodes)
    to_model = np.where(to_model >= 0, to_model + first, 0)
    to_model[0] = 0
    node = to_model[tables.node]
    kept = node > 0
    order = np.lexsort((tables.day[kept], node[kept]))  # model ids need not follow the graph's row order
    node, day = node[kept][order], tables.day[kept][order]
    graph_ids = tables.ids[kept][order]
    ids = to_model[graph_ids]  # [V, K]
    dropped = int(((graph_ids > 0) & (ids == 0)).sum())
    rank = np.argsort(ids == 0, axis=-1, kind="stable")  # real neighbors first, in rank order
    k_table = tables.ids.shape[-1]

    def place(values, dtype):
        out = np.zeros((len(node) + 1, neighbors), dtype=dtype)  # row 0: the empty row
        ranked = np.take_along_axis(np.where(ids > 0, values, 0), rank, axis=-1)[..., :neighbors]
        out[1:, : min(neighbors, k_table)] = ranked
        return out

    arrays = {
        "snapshot_days": tables.snapshot_ts.astype(np.int64),
        "first_version": 1 + np.searchsorted(node, np.arange(rows + 1)).astype(np.int64),
        "version_day": np.concatenate([[0], day]).astype(np.int32),
        "ids": place(ids, np.int32),
        "weight": place(tables.weight[kept][order], np.float32),
        "last_ts": place(tables.last_ts[kept][order], np.int64),
        "count": place(tables.count[kept][order], np.int64),
    }
    found = int((pd.Index(tables.nodes).get_indexer(vocabulary) >= 0).sum())
    stats = {"tokens_with_table_row": found, "tokens": len(vocabulary), "snapshots": len(tables), "row_versions": int(len(node)),
             "neighbors_dropped_out_of_vocabulary": dropped}
    return arrays, stats


def as_daily(table) -> DailyTables:
    return table if isinstance(table, DailyTables) else DailyTables.from_snapshots([table])


# -- serving inputs and their contract -----------------------------------------------------------
SIGNATURE = {name: tf.TensorSpec([None, None] if BY_NAME[name].history else [None], BY_NAME[name].dtype, name=name)
             for name in MODEL_INPUTS}
COUNTS = tuple(name for name in COUNTER_FIELDS if BY_NAME[name].padding == 0)  # counts proper; user_candidate_age is -1 when never
# A candidate made only of what the build strips is blank there (a bad row), so serving refuses it too. RE2 class syntax.
BLANK_PATTERN = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]*"


def _assert_none(bad_rows, message: str):
    """An assertion that no row is bad; its error gives the message and the first bad rows (from 0)."""
    return tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad_rows)), [message, "first rows:", tf.where(bad_rows)[:5, 0]],
                               summarize=5)


def check_serving_features(features: dict) -> dict:
    """The serving contract (README, Serving): ``features`` with every tensor made to depend
    on the checks. A broken contract raises ``tf.errors.InvalidArgumentError`` naming the input.

    The exported SavedModel's signature applies it, and so does :meth:`DropdownRanker.score`. It works
    eagerly and inside a ``tf.function``. Extra keys (``position``) pass through unchecked.
    """
    features = dict(features)
    for name in HISTORY_FIELDS:
        # A runtime rank check the graph optimizer cannot fold away (the signature declares rank 2, so
        # tf.rank is a constant there). Named so that the error points at the input.
        features[name] = tf.ensure_shape(features[name], [None, None], name=f"{name}_must_be_2D_batch_by_length")
    batch = tf.shape(features["user_id"])[0]
    checks = [tf.debugging.assert_positive(batch, message="empty batch: send at least one (request, candidate) row")]
    for name in SIGNATURE:
        if name != "user_id":
            checks.append(tf.debugging.assert_equal(tf.shape(features[name])[0], batch,
                                                    message=f"{name} has a different batch size than user_id"))
    for kind in ("query", "item"):
        checks.append(tf.debugging.assert_equal(
            tf.shape(features[f"{kind}_history"]), tf.shape(features[f"{kind}_history_ts"]),
            message=f"{kind}_history and {kind}_history_ts must have the same shape [batch, length]"))
    with tf.control_dependencies(checks):  # the value checks below index rows: run them on consistent shapes
        candidate, request_ts = tf.identity(features["candidate"]), tf.identity(features["request_ts"])
        blank = tf.strings.regex_full_match(candidate, BLANK_PATTERN)
        value_checks = [
            # No double quotes in these messages: the error text would show them escaped.
            _assert_none(blank, "candidate is blank (empty or whitespace only): the empty string is the padding id, not a "
                                "suggestion; send only real candidates"),
            *[_assert_none(tf.strings.length(features[name], unit="UTF8_CHAR") > MAX_ID_CHARS,
                           f"{name} is longer than {MAX_ID_CHARS:,} characters, which the build refuses as a bad row")
              for name in ("candidate", "prefix")],
            # The build's range for every timestamp: a model never saw a request outside it.
            tf.debugging.assert_greater_equal(request_ts, tf.constant(TS_MIN, tf.int64),
                                              message="request_ts is before 1990: send epoch seconds from 1990 to 2100, as the build takes"),
            tf.debugging.assert_less_equal(request_ts, tf.constant(TS_MAX, tf.int64),
                                           message="request_ts is after 2100: send epoch seconds, not milliseconds (1990 to 2100, as the "
                                                   "build takes)"),
            tf.debugging.assert_greater_equal(features["user_candidate_age"], tf.constant(-1, tf.int64),
                                              message="user_candidate_age is below -1: send seconds since the user's last "
                                                      "query equal to the candidate, or -1 for never"),
            # the build counts the user's queries strictly before the request, so no training row has an age of 0 s
            _assert_none(tf.equal(features["user_candidate_age"], 0),
                         "user_candidate_age is 0: count only the queries strictly before request_ts (as the build "
                         "does), so a counted query is at least 1 s old"),
            *[tf.debugging.assert_non_negative(features[name], message=f"{name} is negative: counts are >= 0")
              for name in COUNTS],
            _assert_none(tf.not_equal(features["user_candidate_count"] > 0, features["user_candidate_age"] >= 0),
                         "user_candidate_count and user_candidate_age disagree: a count above 0 needs an age >= 0 (the latest "
                         "one), a count of 0 needs age -1"),
            _assert_none(features["candidate_clicks"] > features["candidate_impressions"],
                         "candidate_clicks exceeds candidate_impressions: clicks are counted among the impressions"),
        ]
        for kind in ("query", "item"):
            ids, ts = features[f"{kind}_history"], features[f"{kind}_history_ts"]
            # Training histories hold behaviors strictly before the request: one at its own second would read a
            # time-gap bucket no training row reached.
            not_before = tf.logical_and(tf.not_equal(ids, ""), ts >= request_ts[:, None])
            value_checks.append(_assert_none(
                tf.reduce_any(not_before, axis=1),
                f"{kind}_history_ts has entries at or after request_ts (history is strictly before the request, as the "
                f"build writes it; empty-string entries are padding and their timestamps are ignored)"))
    with tf.control_dependencies(checks + value_checks):
        return {name: tf.identity(value) for name, value in features.items()}


class DropdownRanker(tf.keras.Model):
    """Maps a batch of raw dropdown features to click logits ``[batch]``.

    **Input** (dict): ``user_id`` string [B]; ``candidate`` string [B]; ``query_history`` and
    ``item_history`` string [B, L'] most recent first, "" padded; ``query_history_ts`` and
    ``item_history_ts`` int64 [B, L'] epoch seconds; ``request_ts`` int64 [B]; ``prefix`` string [B];
    the counters ``user_candidate_count``, ``user_candidate_age`` (-1: never),
    ``candidate_query_count``, ``candidate_impressions``, ``candidate_clicks`` int64 [B]
    (:data:`SIGNATURE`). Histories longer than ``seq_len`` are cut to the latest ``seq_len``. Other
    keys (``position``) are ignored.
    """

    def __init__(self, config: ModelConfig, vocabularies: dict, known_since: dict | None = None, **kwargs):
        super().__init__(name=config.slug, **kwargs)
        self.config = config
        self.vocabularies = {k: list(v) for k, v in vocabularies.items()}
        lookup = dict(mask_token="", num_oov_indices=config.num_oov)
        # Per model id, the day start from which the id is known (padding and OOV: always).
        self.known_since = {}
        for name, tokens in self.vocabularies.items():
            since = np.zeros(len(tokens) + 1 + config.num_oov, np.int64)
            if known_since is not None and config.lagged_vocab:
                since[1 + config.num_oov:] = known_since[name]
            self.known_since[name] = tf.Variable(since, trainable=False, name=f"{name}_known_since")
        self.user_lookup = tf.keras.layers.StringLookup(vocabulary=self.vocabularies["users"], name="user_lookup", **lookup)
        self.query_lookup = tf.keras.layers.StringLookup(vocabulary=self.vocabularies["queries"], name="query_lookup", **lookup)
        self.item_lookup = tf.keras.layers.StringLookup(vocabulary=self.vocabularies["items"], name="item_lookup", **lookup)
        self.sizes = {"users": self.user_lookup.vocabulary_size(), "queries": self.query_lookup.vocabulary_size(),
                      "items": self.item_lookup.vocabulary_size()}
        self.user_embedding = tf.keras.layers.Embedding(self.sizes["users"], config.dim, name="user_embedding")
        self.query_embedding = tf.keras.layers.Embedding(self.sizes["queries"], config.dim, name="query_embedding")
        self.item_embedding = tf.keras.layers.Embedding(self.sizes["items"], config.dim, name="item_embedding")
        for embedding in (self.user_embedding, self.query_embedding, self.item_embedding):
            embedding.build((None,))
        self.query_time = TimeGapEmbedding(config.dim, config.time_buckets, name="query_time_gap")
        self.item_time = TimeGapEmbedding(config.dim, config.time_buckets, name="item_time_gap")
        self.query_pool = TargetAttention(config.attention_units, name="query_attention")
        self.item_pool = TargetAttention(config.attention_units, name="item_attention")
        self.contexts = {}
        if config.is_gnn:
            for kind, (relation, vocab_name) in RELATION_OF.items():
                self.contexts[kind] = GraphContext(
                    self.sizes[vocab_name], config.neighbors, config.dim, aggregator=config.kind, impl=config.graph_impl,
                    use_edge_weight=not config.id_time_only, heads=config.heads, activation=config.context_activation,
                    name=f"{relation}_context",
                )
        self.query_context = self.contexts.get("query")
        self.item_context = self.contexts.get("item")
        self.context_tables = {}
        self.request_features = RequestFeatures(config.features, config.seq_len, name="request_features")
        self.relations = CandidateRelations(AGE_BUCKETS, COUNT_BUCKETS, two_hops=config.two_hops,
                                            name="candidate_relations") if config.relations else None
        self.wide = tf.keras.layers.Dense(1, use_bias=False, name="wide") if config.features or config.relations else None
        self.mlp = tf.keras.Sequential([tf.keras.layers.Dense(u, activation="relu") for u in config.mlp_units], name="mlp")
        self.logit = tf.keras.layers.Dense(1, name="logit")
        self.calibration = tf.Variable([1.0, 0.0], trainable=False, name="calibration")

    # -- graph state -------------------------------------------------------------------------
    def set_graph(self, tables: dict) -> dict:
        """Load neighbor tables ``{"q2q": ..., "i2i": ...}``, each a ``NeighborTable`` (one snapshot, as
        served) or ``DailyTables`` (one per day, as trained); no retraining needed."""
        if not self.config.is_gnn:
            raise ValueError(f"{self.config.name} has no graph context; only hgcn/gat models take neighbor tables")
        tables = {relation: as_daily(table) for relation, table in tables.items()}
        days = tables["q2q"].snapshot_ts
        if not np.array_equal(days, tables["i2i"].snapshot_ts) or np.any(np.diff(days) <= 0):
            raise ValueError("q2q and i2i tables must hold the same snapshots, in time order")
        stats = {}
        for kind, (relation, vocab_name) in RELATION_OF.items():
            arrays, stats[relation] = table_in_model_space(tables[relation], self.vocabularies[vocab_name], self.config.num_oov,
                                                           self.config.neighbors)
            self.contexts[kind].set_tables(**arrays)
        return stats

    def graph_state(self) -> list:
        """The loaded graph's variables (snapshot days and neighbor history): not in ``variables`` or checkpoints, so a
        SavedModel must track them itself."""
        return [table for context in self.contexts.values() for table in context.tables]

    def freeze_context(self) -> None:
        """Materialize every node's graph context into a table; afterwards contexts are gathered.

        The context is request-independent, so serving can look it up instead of aggregating
        neighbors per request (computing embeddings once, as PinSAGE does). Call it after the
        weights and neighbor tables are final: the table is a snapshot of both.
        """
        for kind, context in self.contexts.items():
            self.context_tables[kind] = tf.Variable(context.precompute(self._embedding(kind).embeddings), trainable=False,
                                                    name=f"{kind}_context_table")

    # -- forward -----------------------------------------------------------------------------
    def _embedding(self, kind: str) -> tf.keras.layers.Embedding:
        return self.query_embedding if kind == "query" else self.item_embedding

    def _known(self, name: str, ids, request_ts):
        """``ids`` with those not yet known at each row's ``request_ts`` (``[B]``) replaced by OOV."""
        since = tf.nn.embedding_lookup(self.known_since[name], ids)  # may be sharded (parameter servers)
        request_ts = tf.reshape(tf.cast(request_ts, tf.int64), tf.concat([[-1], tf.ones([tf.rank(ids) - 1], tf.int32)], 0))
        return tf.where(since > request_ts, tf.ones_like(ids), ids)

    def node_ids(self, features) -> dict:
        """Model ids of the nodes a request reads: ``query`` is ``[B, 1 + L]`` (the candidate, then the
        query history), ``item`` is ``[B, L]``, ``user`` is ``[B]``. The candidate and history queries go
        through the context module together, so a query that is both the candidate and in a history is
        computed once."""
        length, request_ts = self.config.seq_len, features["request_ts"]
        queries = tf.concat([self.query_lookup(features["candidate"])[:, None],
                             self.query_lookup(features["query_history"][:, :length])], axis=1)
        return {"query": self._known("queries", queries, request_ts),
                "item": self._known("items", self.item_lookup(features["item_history"][:, :length]), request_ts),
                "user": self._known("users", self.user_lookup(features["user_id"]), request_ts)}

    def snapshot_index(self, request_ts):
        """Per request ``[B]``, the index of the latest loaded graph snapshot starting at or before it."""
        days = self.query_context.snapshot_days  # the same in both contexts (set_graph)
        found = tf.searchsorted(days[None, :], tf.cast(request_ts, tf.int64)[None, :], side="right")[0] - 1
        return tf.maximum(found, 0)

    def node_vectors(self, kind: str, ids, request_ts=None, training=None):
        """Id embedding (base), graph context (GNN) or its frozen table, for ids ``[B, ...]``."""
        if kind in self.context_tables:
            return tf.gather(self.context_tables[kind], ids)
        if kind in self.contexts:
            snapshot = None if request_ts is None else self.snapshot_index(request_ts)
            return self.contexts[kind](ids, self._embedding(kind).embeddings, snapshot=snapshot, training=training)
        return self._embedding(kind)(ids)

    def encode(self, features, training=None):
        """The pieces the MLP reads, and the history masks: a dict of tensors."""
        length, request_ts = self.config.seq_len, features["request_ts"]
        ids = self.node_ids(features)
        query_mask, item_mask = ids["query"][:, 1:] != 0, ids["item"] != 0
        queries = self.node_vectors("query", ids["query"], request_ts, training)
        candidate, history_queries = queries[:, 0], queries[:, 1:]
        history_items = self.node_vectors("item", ids["item"], request_ts, training)
        query_keys = history_queries + self.query_time(features["query_history_ts"][:, :length], request_ts, query_mask)
        item_keys = history_items + self.item_time(features["item_history_ts"][:, :length], request_ts, item_mask)
        return {"candidate": candidate, "query_keys": query_keys, "query_mask": query_mask, "item_keys": item_keys,
                "item_mask": item_mask, "user": self.user_embedding(ids["user"]), "query_ids": ids["query"],
                "history_queries": history_queries, "history_items": history_items}

    def session_context(self, features, parts):
        """The current session's pooled query and item context vectors, their products with the candidate and
        ``log1p`` of its length: ``[B, 4 * dim + 1]``.

        The session is the behaviors chained back from the request by gaps of at most
        :data:`SESSION_GAP_SECONDS` (the graph build's default gap), over both histories together."""
        length, request_ts = self.config.seq_len, tf.cast(features["request_ts"], tf.int64)
        masks = (parts["query_mask"], parts["item_mask"])
        times = [tf.cast(features[f"{kind}_history_ts"][:, :length], tf.int64) for kind in ("query", "item")]
        # Padding (-1; request times are checked non-negative) sorts last; the session ends at the first gap over the limit.
        merged = tf.concat([tf.where(mask, ts, tf.constant(-1, tf.int64)) for mask, ts in zip(masks, times)], axis=1)
        newest_first = tf.sort(merged, axis=1, direction="DESCENDING")
        previous = tf.concat([request_ts[:, None], newest_first[:, :-1]], axis=1)
        broken = tf.cast((previous - newest_first) > int(SESSION_GAP_SECONDS), tf.int32)
        chained = tf.equal(tf.cumsum(broken, axis=1), 0) & (newest_first >= 0)
        start = tf.reduce_min(tf.where(chained, newest_first, request_ts[:, None]), axis=1)
        pieces, size = [], 0.0
        for mask, ts, vectors in zip(masks, times, (parts["history_queries"], parts["history_items"])):
            inside = tf.cast(mask & (ts >= start[:, None]), tf.float32)
            count = tf.reduce_sum(inside, axis=1, keepdims=True)
            pooled = tf.reduce_sum(vectors * inside[:, :, None], axis=1) / tf.maximum(count, 1.0)
            pieces += [pooled, parts["candidate"] * pooled]
            size += count
        return tf.concat(pieces + [tf.math.log1p(size)], axis=-1)

    def candidate_relations(self, features, query_ids):
        """:class:`CandidateRelations` of each request ``[B, 8]`` (``[B, 12]`` with two hops), read from the q2q tables of its
        snapshot."""
        context = self.query_context
        keys = context.keys(query_ids, self.snapshot_index(features["request_ts"]))
        # The batch's distinct (snapshot, node) rows, read once; the layer indexes them.
        unique, rows = tf.unique(tf.reshape(keys, [-1]))
        rows = tf.reshape(rows, tf.shape(keys))
        return self.relations(query_ids[:, 0], query_ids[:, 1:], features["query_history_ts"][:, :self.config.seq_len],
                              tf.cast(features["request_ts"], tf.int64), rows[:, 0], rows[:, 1:], *context.neighbor_rows(unique))

    def call(self, features, training=None):
        parts = self.encode(features, training)
        pooled_queries = self.query_pool(parts["candidate"], parts["query_keys"], parts["query_mask"])
        pooled_items = self.item_pool(parts["candidate"], parts["item_keys"], parts["item_mask"])
        candidate = parts["candidate"]
        request = self.request_features(features)
        if self.relations is not None:
            request = tf.concat([request, self.candidate_relations(features, parts["query_ids"])], axis=-1)
        pieces = [candidate, pooled_queries, pooled_items, parts["user"], candidate * pooled_queries, candidate * pooled_items, request]
        if self.config.session:
            pieces.append(self.session_context(features, parts))
        x = tf.concat(pieces, axis=-1)
        logit = self.logit(self.mlp(x, training=training))
        if self.wide is not None:
            logit += self.wide(request)
        return self.calibration[0] * tf.squeeze(logit, -1) + self.calibration[1]

    def score(self, features):
        """Click probabilities ``[B]`` for serving requests; refuses a request that breaks the serving
        contract (:func:`check_serving_features`) with an ``InvalidArgumentError`` naming the input."""
        return tf.sigmoid(self(check_serving_features(features), training=False))

    def explain(self, features) -> dict:
        """Attention weights for reports: history target attention ``[B, L]`` per history, and for
        ``gat`` models the neighbor attention ``[nodes, K+1]`` (head mean; 0 = self) of the batch's
        unique history and candidate nodes, with their neighbor masks."""
        parts = self.encode(features, training=False)
        out = {}
        _, out["query_history_weights"] = self.query_pool(parts["candidate"], parts["query_keys"], parts["query_mask"], return_weights=True)
        _, out["item_history_weights"] = self.item_pool(parts["candidate"], parts["item_keys"], parts["item_mask"], return_weights=True)
        out["query_mask"], out["item_mask"] = parts["query_mask"], parts["item_mask"]
        if self.config.kind == "gat":
            snapshot = self.snapshot_index(features["request_ts"])
            for kind, context in self.contexts.items():
                ids = self.node_ids(features)[kind]
                unique, _ = tf.unique(tf.reshape(context.keys(ids, snapshot), [-1]))
                unique = tf.boolean_mask(unique, unique % context.num_nodes > 0)
                _, attention = context.node_context(unique, self._embedding(kind).embeddings, return_attention=True)
                out[f"{kind}_neighbor_attention"] = tf.reduce_mean(attention, axis=1)
                out[f"{kind}_neighbor_mask"] = context.neighbor_rows(unique)[0] > 0
        return out


def example_features(batch: int = 2, length: int = 3) -> dict:
    """A batch of empty-history features: builds a model's variables on first call."""
    return {name: tf.fill([batch, length] if field.history else [batch], tf.constant(field.padding, field.dtype))
            for name, field in BY_NAME.items() if name in MODEL_INPUTS or name == "position"}


def make_ranker(config: ModelConfig, vocabularies: dict, tables: dict | None = None, known_since: dict | None = None) -> DropdownRanker:
    """A built ranker; GNN rankers need ``tables`` (``{"q2q": ..., "i2i": ...}``). ``known_since``
    (``{name: int64 array}`` aligned with ``vocabularies``) makes the vocabulary point-in-time."""
    if config.is_gnn and tables is None:
        raise ValueError(f"{config.name} needs neighbor tables")
    if config.is_gnn and config.neighbors is None:  # all the tables store; a trained config keeps its own (set_graph pads)
        config = dataclasses.replace(config, neighbors=min(table.ids.shape[1] for table in tables.values()))
    ranker = DropdownRanker(config, vocabularies, known_since)
    ranker(example_features())
    if config.is_gnn:
        ranker.set_graph(tables)
    return ranker


class CTRModel(tfrs.models.Model):
    """Training wrapper: the ranker, a ``tfrs.tasks.Ranking`` task and the optional position tower.

    ``call`` returns the serving click probability (the ranker alone). In ``compute_loss`` with the
    position tower on, the predicted click probability is ``P(seen | position) * ranker`` (PAL).

    ``train_step`` is tfrs's, except for embedding gradients (IndexedSlices with one row per lookup,
    duplicates included). With an optimizer that ``updates_touched_rows_only`` (``LazyAdam``, the
    default) they stay sparse, so a step's cost follows the batch's ids, not the vocabulary size. With plain Adam they
    are made dense first: Adam decays every row at every step anyway, and a dense gradient lets it
    run one fused kernel per table instead of deduplicating ~40k rows (1.34x faster base_20 steps on
    the static world's vocabulary).
    """

    def __init__(self, ranker: DropdownRanker):
        super().__init__()
        self.ranker = ranker
        self.position_bias = (PositionBias(ranker.config.max_position, ranker.config.position_lr_multiplier)
                              if ranker.config.position_bias else None)
        self.task = tfrs.tasks.Ranking(
            # Per-example losses, averaged in compute_loss over the global batch: under a
            # distribution strategy each replica's gradient is then its share of the global mean.
            loss=tf.keras.losses.BinaryCrossentropy(reduction=tf.keras.losses.Reduction.NONE),
            metrics=[tf.keras.metrics.AUC(name="auc_approx")],  # progress bar only; reports use exact AUC
        )
        # BackupAndRestore wants a built model. The ranker is built already, so this creates no
        # variables and draws no random numbers: the initial weights are those of an unbuilt wrapper.
        self(example_features())

    def call(self, features, training=False):
        return tf.sigmoid(self.ranker(features, training=training))

    # Keras traces train_step with AutoGraph on, which would convert the whole ranker's code: nothing in it needs
    # converting (no Python control flow on tensors), and the conversion took most of a GNN's first step.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, inputs):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses])
            total_loss = loss + regularization_loss
        gradients = tape.gradient(total_loss, self.trainable_variables)
        if not getattr(self.optimizer, "updates_touched_rows_only", False):
            gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        # Keras sums what replicas return: the loss shares add up to the global batch's mean, while a metric's
        # result is already global (synced when read), so it is divided by the replicas the sum counts it for.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return {"loss": loss, **{metric.name: metric.result() / replicas for metric in self.metrics}}

    def compute_loss(self, inputs, training: bool = False):
        """This replica's share of the global batch's mean binary cross-entropy (the batch's mean in one process)."""
        features, labels = inputs
        # [B, 1]: Keras losses average over the last axis, so [B] would give one number, not one per example. The
        # sigmoid comes last: Keras then computes the cross-entropy from its logits, not from a clipped probability.
        probability = tf.sigmoid(self.ranker(features, training=training)[:, None])
        if self.position_bias is not None:
            probability = probability * self.position_bias(features["position"])[:, None]
        per_example = self.task(labels=labels[:, None], predictions=probability, training=training)
        return tf.nn.compute_average_loss(per_example)

"""First-order query→query (q2q) and item→item (i2i) co-occurrence graphs, as daily neighbor tables.

**Point in time.** A graph is a *snapshot* taken at the start of a UTC day ``d``: it is built from
the events in the trailing window ``[d - window_days, d)`` only, so no edge in it was formed at or
after any request of day ``d``. Every sample reads the snapshot of its own request day (training,
validation and test rows alike: that is the table a daily-refreshed serving system would use on
that day), and an edge's age is measured from that snapshot. A row therefore never sees the
co-occurrence its own click creates (after a click the clicked candidate becomes the user's next
query, which session co-occurrence would link to the row's own query history).

Two behaviors of the same kind co-occur when they belong to the same user and

* ``mode="session"`` (default): the same session, where a session ends after a gap longer than
  ``session_gap_minutes`` between consecutive behaviors of the user (of either kind), and at
  midnight UTC, so that each session's pairs belong to exactly one day; or
* ``mode="window"``: they are at most ``window_minutes`` apart.

Either way the pair must be at most ``max_distance`` same-kind behaviors apart, which bounds the
pairs a very long session can produce. A pair of identical ids is not an edge.

Per directed edge a→b of a snapshot:

* ``count``: in session mode, the number of sessions in the window in which a and b co-occur; in
  window mode, the number of co-occurring event pairs;
* ``weight``: count(a, b) / sum over b' of count(a, b'), the share of a's co-occurrences that go to b,
  computed before the top-K cut so it keeps its meaning;
* ``last_ts``: the last time the pair co-occurred (the later event's ts), always before the snapshot.

**Where q2q neighbors come from** (``q2q_source``; i2i is always session/window co-occurrence):

* ``"session"`` (default): the co-occurrence above;
* ``"item"``: query-item-query paths. A query q *leads to* an item i when the user clicks i after q in
  the same session (sessions as above: gap and midnight cuts) with no other query in between; per day
  of the click, the sessions per (q, i) are counted (:func:`query_item_pairs`). In snapshot ``d``,
  over the same window days, two queries q != q' that led to a common item are linked, with
  ``count`` = sum over their common items i of min(count(q, i), count(q', i)) and ``last_ts`` the
  latest click on a common item (:func:`query_item_edges`). An item that more than
  ``max_item_queries`` distinct (vocabulary) queries led to in the window is a hub (a navigational
  item like google.com would link everything, with pairs growing as the square of its queries): it
  is skipped, links nothing, and is counted in the stats (``hub_items_skipped``);
* ``"both"``: the session edges and the query-item-query edges added (counts summed, latest
  ``last_ts`` kept).

Then weights, thresholds and the top-K cut are the same as for session edges. The option keeps the
point-in-time property: every query-item-query edge of snapshot ``d`` comes from clicks of the
window days, all before ``d`` (and so its ``last_ts`` is before ``d``), between queries known at
``d``. Only the in-memory build computes it; ``build --engine beam`` refuses it.

Edges with ``count < min_count`` or ``weight < min_weight`` are dropped; each node keeps its top-K
neighbors by weight (ties: count, then recency, then id). Counting is vectorized: one shifted
comparison per distance 1..max_distance over the sorted arrays gives per-day pair counts once;
each snapshot then sums the days of its window.

**How neighbors are ranked** (``neighbor_rank``, both relations):

* ``"cooccurrence"`` (default): by the co-occurrence weight above;
* ``"random_walk"``: by importance, as PinSAGE does, from the visit counts of short random walks that
  start (restart) at the node, computed exactly rather than sampled (:func:`walk_top_k`). The walks run
  on the snapshot's graph after the thresholds above (for q2q, the edges ``q2q_source`` gives), with
  transition probability a -> b = count(a, b) over a's total count; a walk at a node with no edge
  stops. A node's score for v is the expected number of visits to v in a walk of ``walk_length``
  steps (default 3): sum over t = 1..walk_length of (P^t)[node, v], with the node itself excluded. So
  neighbors need not be direct co-occurrences: a node within ``walk_length`` hops can outrank a weak
  direct edge. ``weight`` is the score over the sum of the node's scores for all the nodes its walks
  visit (before the top-K cut, like the co-occurrence weight); the top K by weight are kept (same
  ties). A neighbor that is an edge of the graph keeps the edge's ``count`` and ``last_ts``; one
  reached only through other nodes has ``count = 0`` (so the model can tell it apart: count 0 has
  its own bucket) and ``last_ts`` = min(latest ``last_ts`` of the node's outgoing edges, latest of
  the neighbor's incoming edges). Every path from the node to that neighbor starts with one of the
  former and ends with one of the latter, so this is the freshest any path between them can be
  (an upper bound of the path's recency, computed from two per-node maxima). Memory guard: powers
  of P densify around hubs, so a walk leaves a node only along its ``walk_keep`` (default 50) most
  likely edges, and after each step each node's walk distribution keeps only its ``walk_keep``
  largest entries (the mass cut away is dropped: those walks stop). A step's sparse product then
  has at most ``walk_keep ** 2`` entries per node, and it is computed in row chunks of bounded size.

  This is still point in time: the walks of snapshot ``d`` only run over snapshot ``d``'s edges (its
  window's events, all before ``d``, between tokens known at ``d``), so every neighbor is a node known
  at ``d`` and every ``last_ts`` (an edge's, or the minimum of two edges') is before ``d``. Only the
  in-memory build computes it; ``build --engine beam`` refuses it (a walk is not per source node,
  so it does not fit the Beam build's partition of edges by source).

Tables index nodes as the vocabulary does, shifted by one: row 0 is the padding node (no
neighbors, and neighbor id 0 means "no neighbor"); row i is vocabulary entry i-1. A token that is
not yet known on day d (see ``vocab.py``: its ``known_since`` is later) has no row content and is
nobody's neighbor in snapshot d.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dropdown_rank.logs.schema import DAY, SESSION_GAP_MINUTES
from dropdown_rank.tables import RELATIONS, ROW_FIELDS, NeighborTable, SnapshotChanges, iso_day

Q2Q_SOURCES = ("session", "item", "both")
NEIGHBOR_RANKS = ("cooccurrence", "random_walk")
QIQ_SOURCE_NAMES = {"item": "query-item-query paths", "both": "sessions and query-item-query paths"}




@dataclasses.dataclass(frozen=True)
class GraphConfig:
    neighbors: int = 10
    mode: str = "session"
    session_gap_minutes: float = SESSION_GAP_MINUTES
    window_minutes: float = 60.0
    max_distance: int = 10
    min_count: int = 1
    min_weight: float = 0.0
    window_days: int = 30
    q2q_source: str = "session"
    max_item_queries: int = 50
    neighbor_rank: str = "cooccurrence"
    walk_length: int = 3
    walk_keep: int = 50

    def __post_init__(self):
        if self.mode not in ("session", "window"):
            raise ValueError(f"co-occurrence mode must be 'session' or 'window', not {self.mode!r}")
        if self.q2q_source not in Q2Q_SOURCES:
            raise ValueError(f"q2q source must be one of {', '.join(map(repr, Q2Q_SOURCES))} (session co-occurrence, "
                             f"query-item-query paths, or both added), not {self.q2q_source!r}")
        if self.max_item_queries < 2:
            raise ValueError(f"max_item_queries must be at least 2 (an item links queries only when two or more lead to it), "
                             f"not {self.max_item_queries}")
        if self.neighbor_rank not in NEIGHBOR_RANKS:
            raise ValueError(f"neighbor rank must be one of {', '.join(map(repr, NEIGHBOR_RANKS))} (co-occurrence weight, "
                             f"or random-walk visits), not {self.neighbor_rank!r}")
        if self.walk_length < 1:
            raise ValueError(f"walk_length must be at least 1 (steps of each random walk), not {self.walk_length}")
        if self.walk_keep < 1:
            raise ValueError(f"walk_keep must be at least 1 (walk entries kept per node after each step), not {self.walk_keep}")
        if self.neighbor_rank == "random_walk" and self.walk_keep < self.neighbors:
            raise ValueError(f"walk_keep {self.walk_keep} < neighbors {self.neighbors}: the walk would keep fewer "
                             f"candidates per node after each step than the top-K table holds; raise walk_keep")
        if self.neighbors < 1 or self.max_distance < 1:
            raise ValueError("neighbors and max_distance must be at least 1")
        if self.window_days < 1:
            raise ValueError("the graph window must be at least 1 day")


def session_ids(user_codes: np.ndarray, ts: np.ndarray, gap_seconds: float) -> np.ndarray:
    """Session number per behavior; arrays must be sorted by (user, ts). Sessions also end at midnight UTC."""
    new = np.ones(len(ts), dtype=bool)
    new[1:] = (user_codes[1:] != user_codes[:-1]) | (np.diff(ts) > gap_seconds) | (np.diff(ts // DAY) != 0)
    return np.cumsum(new) - 1


def daily_pair_counts(user_codes, ts, session, node, config: GraphConfig) -> pd.DataFrame:
    """Directed pairs per day (day, src, dst, count, last_ts) among ``node`` codes; inputs sorted by (user, ts).

    ``day`` is the UTC day of the later event, so a snapshot at day start ``d`` may use exactly the
    rows with ``day < d``. ``node`` < 0 marks behaviors outside the vocabulary: they keep their place in
    the sequence (so distances are real) but form no edge.
    """
    srcs, dsts, sessions, lasts = [], [], [], []
    window = config.window_minutes * 60.0
    for d in range(1, min(config.max_distance, len(node) - 1) + 1):
        a, b = node[:-d], node[d:]
        together = user_codes[:-d] == user_codes[d:]
        if config.mode == "session":
            together &= session[:-d] == session[d:]
        else:
            together &= (ts[d:] - ts[:-d]) <= window
        keep = together & (a != b) & (a >= 0) & (b >= 0)
        srcs += [a[keep], b[keep]]
        dsts += [b[keep], a[keep]]
        sessions += [session[d:][keep]] * 2
        lasts += [ts[d:][keep]] * 2
    empty = np.zeros(0, np.int64)
    pairs = pd.DataFrame({
        "src": np.concatenate(srcs or [empty]),
        "dst": np.concatenate(dsts or [empty]),
        "session": np.concatenate(sessions or [empty]),
        "last_ts": np.concatenate(lasts or [empty]),
    })
    if config.mode == "session":
        # A pair repeated inside one session counts once (sessions never cross midnight).
        pairs = pairs.groupby(["session", "src", "dst"], sort=False)["last_ts"].max().reset_index()
    pairs["day"] = pairs["last_ts"] // DAY
    return pairs.groupby(["day", "src", "dst"], sort=False).agg(count=("last_ts", "size"), last_ts=("last_ts", "max")).reset_index()


def window_edges(pairs: pd.DataFrame, snapshot_ts: int, window_days: int) -> pd.DataFrame:
    """Edges (src, dst, count, last_ts) of the snapshot at ``snapshot_ts``: the days of ``[snapshot - window, snapshot)``."""
    day = snapshot_ts // DAY
    inside = pairs[(pairs["day"] < day) & (pairs["day"] >= day - window_days)]
    return inside.groupby(["src", "dst"], sort=False).agg(count=("count", "sum"), last_ts=("last_ts", "max")).reset_index()


def top_k(edges: pd.DataFrame, config: GraphConfig) -> tuple[pd.DataFrame, int]:
    """Normalize, threshold and rank ``edges`` (0-based node codes) per source node.

    Returns the kept edges (src, dst, count, last_ts, weight, rank < K), and the number of edges before the top-K
    cut. Everything here is per source node, so any partition of the edges by ``src`` gives the same rows.
    """
    edges = thresholded(edges, config)
    return _cut(edges, edges["weight"], config), int(len(edges))


def thresholded(edges: pd.DataFrame, config: GraphConfig) -> pd.DataFrame:
    """``edges`` with ``count >= min_count``, their co-occurrence ``weight`` (share of the source's count), and
    ``weight >= min_weight``: the snapshot's graph before any top-K cut."""
    edges = edges[edges["count"] >= config.min_count].copy()
    edges["weight"] = edges["count"] / edges.groupby("src")["count"].transform("sum")
    return edges[edges["weight"] >= config.min_weight]


def _cut(edges: pd.DataFrame, key, config: GraphConfig) -> pd.DataFrame:
    """The top ``neighbors`` rows per ``src`` by ``key`` (ties: count, then recency, then id), with their ``rank``."""
    edges = edges.assign(_key=key)
    edges = edges.sort_values(["src", "_key", "count", "last_ts", "dst"], ascending=[True, False, False, False, True], kind="stable")
    rank = edges.groupby("src", sort=False).cumcount().to_numpy()
    kept = edges[rank < config.neighbors].drop(columns="_key")
    kept["rank"] = rank[rank < config.neighbors]
    return kept


WALK_PRODUCT_BUDGET = 8_000_000  # entries of one row chunk of a walk step's sparse product, before its top-M cut


def walk_scores(src: np.ndarray, dst: np.ndarray, count: np.ndarray, num_nodes: int, config: GraphConfig):
    """Expected visits of random walks from every node: ``sum over t = 1..walk_length of (P^t)[node, :]``, as
    (row, col, score) arrays without the diagonal (a node is not its own neighbor), sorted by row then col.

    ``P`` is the row-normalized transition matrix of the directed edges src -> dst weighted by ``count`` (a walk
    at a node with no out-edge stops). Exact, not sampled, but for the memory guard: a walk leaves a node only
    along its ``walk_keep`` most likely edges, and after each step each row of the step's distribution keeps its
    ``walk_keep`` largest entries (:func:`_top_per_row`); the mass cut away ends those walks. So a step's product
    has at most ``walk_keep ** 2`` entries per row; it is computed in row chunks (:func:`_next_step`).
    """
    from scipy import sparse

    n = int(num_nodes)
    if len(src) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float64)
    count = np.asarray(count, dtype=np.float64)
    out = np.bincount(src, weights=count, minlength=n)
    step = sparse.csr_matrix((count / out[src], (src, dst)), shape=(n, n))
    step.sum_duplicates()
    step = _keep_top(step, config.walk_keep)
    walk = total = step
    for _ in range(config.walk_length - 1):
        walk = _next_step(walk, step, config.walk_keep)
        total = total + walk
    total = total.tocsr()
    total.sum_duplicates()  # canonical: sorted columns
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(total.indptr))
    col, score = total.indices.astype(np.int64), total.data
    keep = (row != col) & (score > 0)
    return row[keep], col[keep], score[keep]


def _next_step(walk, step, keep: int):
    """``walk @ step`` with each row cut to its ``keep`` largest entries, in chunks of rows whose product has at most
    about :data:`WALK_PRODUCT_BUDGET` entries before the cut."""
    from scipy import sparse

    reach = walk.copy()
    reach.data = np.ones_like(reach.data)
    bound = np.cumsum(reach @ np.diff(step.indptr).astype(np.float64))  # each row's product entries at most, summed
    n = walk.shape[0]
    starts = [0]
    while starts[-1] < n:
        done = bound[starts[-1] - 1] if starts[-1] else 0.0
        end = int(np.searchsorted(bound, done + WALK_PRODUCT_BUDGET, side="right"))
        starts.append(min(n, max(end, starts[-1] + 1)))
    parts = [_keep_top(walk[a:b] @ step, keep) for a, b in zip(starts[:-1], starts[1:])]
    return parts[0] if len(parts) == 1 else sparse.vstack(parts, format="csr")


def _keep_top(matrix, keep: int):
    """``matrix`` (CSR, entries > 0) with each row cut to its ``keep`` largest entries (:func:`_top_per_row`)."""
    from scipy import sparse

    matrix = matrix.tocsr()
    lengths = np.diff(matrix.indptr)
    if len(lengths) == 0 or lengths.max() <= keep:
        return matrix
    chosen = _top_per_row(matrix, keep)
    return sparse.csr_matrix((matrix.data[chosen], matrix.indices[chosen],
                              np.concatenate([[0], np.cumsum(np.minimum(lengths, keep))])), shape=matrix.shape)


def _top_per_row(matrix, keep: int, ties: bool = False) -> np.ndarray:
    """A mask of the entries of CSR ``matrix`` (values >= 0) that are among the ``keep`` largest of their row: ties
    by lower column, or with ``ties=True`` every entry that ties the ``keep``-th largest too.

    Values are compared as float32 rounded to ``63 - bits(rows) - bits(columns)`` bits (at least 6 significant
    digits up to 131,072 nodes): one int64 sort of (row, value, column) packed keys, 10-20x faster than a lexsort.
    With too few bits left for the value (millions of nodes) it uses an exact lexsort (then ``ties`` keeps all).
    """
    lengths = np.diff(matrix.indptr)
    n_rows, n_cols = matrix.shape
    long_row = lengths > keep
    all_long = bool(long_row.all())
    is_long = None if all_long else np.repeat(long_row, lengths)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.where(long_row, lengths, 0))
    col = matrix.indices if all_long else matrix.indices[is_long]
    value = matrix.data if all_long else matrix.data[is_long]
    col_bits, row_bits = max(1, (n_cols - 1).bit_length()), max(1, (n_rows - 1).bit_length())
    value_bits = min(31, 63 - col_bits - row_bits)
    if value_bits >= 20:
        key = value.astype(np.float32).view(np.int32).astype(np.int64)  # monotone in value >= 0
        key >>= 31 - value_bits
        np.subtract((1 << value_bits) - 1, key, out=key)  # larger values first
        key <<= col_bits
        key |= col
        key |= rows << (value_bits + col_bits)
        ordered = np.sort(key)
    elif ties:  # pragma: no cover - graphs of millions of nodes
        return np.ones(len(matrix.data), dtype=bool)
    else:  # pragma: no cover
        key = np.empty(len(rows), np.int64)
        key[np.lexsort((col, -value, rows))] = np.arange(len(rows))
        ordered = np.arange(len(rows))
    # keys are unique and ``ordered`` groups them by row: the keep-th smallest of a row bounds what it keeps
    long_lengths = np.where(long_row, lengths, 0)
    limit = np.zeros(n_rows, np.int64)
    limit[long_row] = ordered[(np.cumsum(long_lengths) - long_lengths)[long_row] + keep - 1]
    chosen = (key >> col_bits) <= (limit[rows] >> col_bits) if ties else key <= limit[rows]
    if not all_long:  # rows of at most ``keep`` entries keep them all
        kept_long, chosen = chosen, ~is_long
        chosen[is_long] = kept_long
    return chosen


def walk_top_k(edges: pd.DataFrame, num_nodes: int, config: GraphConfig) -> tuple[pd.DataFrame, int]:
    """:func:`top_k` for ``neighbor_rank="random_walk"``: the same thresholded graph, its nodes' neighbors ranked by
    random-walk visits (:func:`walk_scores`).

    A node's candidates are every other node its walks visit; ``weight`` is the candidate's visits over the sum
    of all its candidates' visits (before the top-K cut, as the co-occurrence weight), and the top K by weight
    are kept (ties: count, then recency, then id). A candidate that is an edge of the graph keeps that edge's
    ``count`` and ``last_ts``; one reached only in several hops has ``count`` 0 and ``last_ts`` = min(latest
    ``last_ts`` of the source's out-edges, latest of the candidate's in-edges): every path from the source to
    it starts with one and ends with the other, so no path is more recent (an upper bound of the path's
    recency), and like every edge time it is before the snapshot. Returns (kept, candidates before the cut).
    """
    from scipy import sparse

    edges = thresholded(edges, config)
    src, dst = edges["src"].to_numpy(np.int64), edges["dst"].to_numpy(np.int64)
    row, col, score = walk_scores(src, dst, edges["count"].to_numpy(), num_nodes, config)
    n = int(num_nodes)
    candidates = len(row)
    # rank on the weight rounded to 12 digits, so that float noise between equal visit counts leaves the ties to
    # count, recency and id
    weight = score / np.bincount(row, weights=score, minlength=n)[row]
    rounded = np.round(weight, 12)
    # only each row's top K by weight, and what ties its K-th, can be kept: the exact sort below needs no more
    lengths = np.bincount(row, minlength=n)
    if len(row) and lengths.max() > config.neighbors:
        ranked = sparse.csr_matrix((rounded, col, np.concatenate([[0], np.cumsum(lengths)])), shape=(n, n))
        top = _top_per_row(ranked, config.neighbors, ties=True)
        row, col, weight, rounded = row[top], col[top], weight[top], rounded[top]
    key, wanted = src * n + dst, row * n + col
    order = np.argsort(key, kind="stable")
    at = order[np.minimum(np.searchsorted(key[order], wanted), len(key) - 1)] if len(row) else np.zeros(0, np.int64)
    direct = key[at] == wanted  # the candidate is an edge of the graph (there is one when a walk visited anything)
    ts = edges["last_ts"].to_numpy(np.int64)
    latest_out, latest_in = np.zeros(n, np.int64), np.zeros(n, np.int64)
    np.maximum.at(latest_out, src, ts)
    np.maximum.at(latest_in, dst, ts)
    count = np.where(direct, edges["count"].to_numpy(np.int64)[at], 0)
    last_ts = np.where(direct, ts[at], np.minimum(latest_out[row], latest_in[col]))
    kept = pd.DataFrame({"src": row, "dst": col, "count": count, "last_ts": last_ts, "weight": weight})
    return _cut(kept, rounded, config), candidates


def table_from_top_k(kept: pd.DataFrame, edges_before_top_k: int, num_nodes: int, config: GraphConfig, relation: str, nodes,
                     snapshot_ts: int):
    """The snapshot's table from :func:`top_k`'s kept edges (in any row order). Returns (table, stats)."""
    k = config.neighbors
    ids = np.zeros((num_nodes + 1, k), dtype=np.int32)
    weight = np.zeros((num_nodes + 1, k), dtype=np.float32)
    last_ts = np.zeros((num_nodes + 1, k), dtype=np.int64)
    count = np.zeros((num_nodes + 1, k), dtype=np.int32)
    row = kept["src"].to_numpy() + 1
    rank = kept["rank"].to_numpy()
    ids[row, rank] = kept["dst"].to_numpy() + 1
    weight[row, rank] = kept["weight"].to_numpy()
    last_ts[row, rank] = kept["last_ts"].to_numpy()
    count[row, rank] = kept["count"].to_numpy()
    table = NeighborTable(relation, np.asarray(nodes, dtype=object), ids, weight, last_ts, count, int(snapshot_ts))
    degree = table.degree()
    stats = {
        "snapshot": iso_day(snapshot_ts),
        "nodes": int(num_nodes),
        "nodes_with_neighbors": int((degree > 0).sum()),
        "edges_before_top_k": int(edges_before_top_k),
        "edges_kept": int(len(kept)),
        "degree_histogram": {str(d): int(n) for d, n in enumerate(np.bincount(degree, minlength=k + 1))},
        "mean_degree": float(degree.mean()) if len(degree) else 0.0,
        "weight_quantiles": _quantiles(kept["weight"].to_numpy()),
        "count_quantiles": _quantiles(kept["count"].to_numpy()),
        "age_days_quantiles": _quantiles((snapshot_ts - kept["last_ts"].to_numpy()) / DAY),
    }
    return table, stats


def neighbor_table(edges: pd.DataFrame, num_nodes: int, config: GraphConfig, relation: str, nodes, snapshot_ts: int):
    """Normalize, threshold and cut ``edges`` (0-based node codes) to a top-K table, ranked as ``config.neighbor_rank``
    says (:func:`top_k` or :func:`walk_top_k`). Returns (table, stats)."""
    if config.neighbor_rank == "random_walk":
        kept, before = walk_top_k(edges, num_nodes, config)
        table, stats = table_from_top_k(kept, before, num_nodes, config, relation, nodes, snapshot_ts)
        stats["multi_hop_neighbors"] = int((kept["count"] == 0).sum())
        return table, stats
    kept, before = top_k(edges, config)
    return table_from_top_k(kept, before, num_nodes, config, relation, nodes, snapshot_ts)


def _quantiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    return {str(q): float(np.quantile(values, q)) for q in (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)}


def _sessions(events: pd.DataFrame, config: GraphConfig):
    """``events`` sorted by (user, ts) (ties keep their order), with user codes, ts and session numbers."""
    events = events.sort_values(["user_id", "ts"], kind="stable")
    user_codes = pd.factorize(events["user_id"])[0]
    ts = events["ts"].to_numpy(dtype=np.int64)
    return events, user_codes, ts, session_ids(user_codes, ts, config.session_gap_minutes * 60.0)


def _no_pairs() -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0, np.int64) for c in ("day", "src", "dst", "count", "last_ts")})


def relation_pairs(events: pd.DataFrame, vocabs: dict, config: GraphConfig):
    """Per relation, the daily pair counts of ``events`` (:func:`daily_pair_counts`), with the number of behaviors
    and of behaviors outside the vocabulary: yields ``(relation, (pairs, behaviors, outside))``.

    Everything here is per user: the events of any set of users (all of them, or one partition) give their pairs,
    and the pairs of a partition of the users add up to the pairs of all (:func:`merge_pairs`). Ties in ts keep the
    order of ``events``. With ``q2q_source="item"`` q2q has no session pairs (its edges come from
    :func:`query_item_pairs` alone), so none are counted.
    """
    events, user_codes, ts, session = _sessions(events, config)
    kinds = events["kind"].to_numpy()
    for relation, (kind, vocab_name) in RELATIONS.items():
        mask = kinds == kind
        codes = pd.Index(vocabs[vocab_name]["token"]).get_indexer(events["id"].to_numpy()[mask])
        if relation == "q2q" and config.q2q_source == "item":
            pairs = _no_pairs()
        else:
            pairs = daily_pair_counts(user_codes[mask], ts[mask], session[mask], codes, config)
        yield relation, (pairs, int(mask.sum()), int((codes < 0).sum()))


def query_item_pairs(events: pd.DataFrame, vocabs: dict, config: GraphConfig) -> pd.DataFrame:
    """Per day, the clicks that queries lead to: (day, query, item, count, last_ts).

    A query q leads to an item i when the user clicks i after q in the same session (:func:`session_ids`: gap and
    midnight cuts) with no other query in between: every item event is credited to the session's latest query
    before it (ties in ts keep the order of ``events``), and to none when the session has no query before it.
    ``count`` is the number of sessions in which q led to i, ``last_ts`` the last such click and ``day`` its UTC
    day (a session never crosses midnight). ``query`` is a code of the queries vocabulary (a click after a query
    outside it is dropped); ``item`` is a code of the clicked item ids themselves (an item is only the link
    between queries, so it need not be in the items vocabulary).
    """
    events, _, ts, session = _sessions(events, config)
    kinds, ids = events["kind"].to_numpy(), events["id"].to_numpy()
    is_query, is_item = kinds == "query", kinds == "item"
    query_code = np.full(len(kinds), -1, dtype=np.int64)
    query_code[is_query] = pd.Index(vocabs["queries"]["token"]).get_indexer(ids[is_query])
    latest_query = np.maximum.accumulate(np.where(is_query, np.arange(len(kinds)), -1))
    click = np.flatnonzero(is_item & (latest_query >= 0))
    click = click[session[latest_query[click]] == session[click]]  # the latest query is in the click's own session
    query = query_code[latest_query[click]]
    click, query = click[query >= 0], query[query >= 0]
    pairs = pd.DataFrame({"session": session[click], "query": query, "item": pd.factorize(ids[click])[0].astype(np.int64),
                          "last_ts": ts[click]})
    pairs = pairs.groupby(["session", "query", "item"], sort=False)["last_ts"].max().reset_index()  # once per session
    pairs["day"] = pairs["last_ts"] // DAY
    return pairs.groupby(["day", "query", "item"], sort=False).agg(count=("last_ts", "size"), last_ts=("last_ts", "max")).reset_index()


def query_item_edges(query_items: pd.DataFrame, snapshot_ts: int, known_since: np.ndarray, config: GraphConfig):
    """The query-item-query edges (src, dst, count, last_ts) of the snapshot at ``snapshot_ts``, and the number of hub
    items skipped.

    Over the days of ``[snapshot - window_days, snapshot)`` of ``query_items`` (:func:`query_item_pairs`), the
    sessions per (query, item) are summed. Queries q != q' that led to a common item are linked: ``count`` is the
    sum over their common items i of min(count(q, i), count(q', i)) (the smaller side, so that one busy query does
    not make a strong link alone), ``last_ts`` the latest click on a common item from either. An item that more than ``max_item_queries``
    distinct queries led to in the window is a hub (a navigational item links everything, and the pairs grow as
    the square of its queries): it links nothing. Tokens not known at the snapshot are left out, as in
    :func:`snapshot_edges`.
    """
    day = snapshot_ts // DAY
    inside = query_items[(query_items["day"] < day) & (query_items["day"] >= day - config.window_days)]
    reached = inside.groupby(["query", "item"], sort=False).agg(count=("count", "sum"), last_ts=("last_ts", "max")).reset_index()
    fan_in = reached.groupby("item", sort=False)["query"].transform("size").to_numpy()
    hubs = int(reached.loc[fan_in > config.max_item_queries, "item"].nunique())
    reached = reached[(fan_in >= 2) & (fan_in <= config.max_item_queries)]  # an item of one query links nothing
    both = reached.merge(reached, on="item", suffixes=("_a", "_b"))
    both = both[both["query_a"].to_numpy() != both["query_b"].to_numpy()]
    edges = pd.DataFrame({
        "src": both["query_a"].to_numpy(), "dst": both["query_b"].to_numpy(),
        "count": np.minimum(both["count_a"].to_numpy(), both["count_b"].to_numpy()),
        "last_ts": np.maximum(both["last_ts_a"].to_numpy(), both["last_ts_b"].to_numpy()),
    })
    edges = edges.groupby(["src", "dst"], sort=False).agg(count=("count", "sum"), last_ts=("last_ts", "max")).reset_index()
    known = (known_since[edges["src"].to_numpy()] <= snapshot_ts) & (known_since[edges["dst"].to_numpy()] <= snapshot_ts)
    return edges[known], hubs


def q2q_snapshot_edges(session_edges: pd.DataFrame, query_items: pd.DataFrame, snapshot_ts: int, known_since: np.ndarray,
                       config: GraphConfig):
    """The q2q edges of a snapshot for ``config.q2q_source`` "item" (query-item-query edges) or "both" (those and the
    session edges ``session_edges`` of :func:`snapshot_edges`, added: counts summed, latest ts kept). Returns
    (edges, hub items skipped)."""
    edges, hubs = query_item_edges(query_items, snapshot_ts, known_since, config)
    if config.q2q_source == "both":
        edges = pd.concat([session_edges, edges], ignore_index=True)
        edges = edges.groupby(["src", "dst"], sort=False).agg(count=("count", "sum"), last_ts=("last_ts", "max")).reset_index()
    return edges, hubs


def merge_pairs(parts) -> pd.DataFrame:
    """Daily pair counts of several sets of users, added up: counts summed, latest ts kept."""
    pairs = pd.concat(list(parts), ignore_index=True)
    return pairs.groupby(["day", "src", "dst"], sort=False).agg(count=("count", "sum"), last_ts=("last_ts", "max")).reset_index()


def snapshot_edges(pairs: pd.DataFrame, snapshot_ts: int, known_since: np.ndarray, window_days: int) -> pd.DataFrame:
    """The edges of the snapshot at ``snapshot_ts``: its window's pairs between tokens known by then."""
    edges = window_edges(pairs, int(snapshot_ts), window_days)
    known = (known_since[edges["src"].to_numpy()] <= snapshot_ts) & (known_since[edges["dst"].to_numpy()] <= snapshot_ts)
    return edges[known]


def relation_stats(day_stats: dict, sizes: list, behaviors: int, outside: int, config: GraphConfig) -> dict:
    """A relation's stats: the latest snapshot's (``day_stats``), the behaviors counted, and every snapshot's size."""
    return {**day_stats, "behaviors": int(behaviors), "behaviors_outside_vocabulary": int(outside), "snapshots": len(sizes),
            "window_days": config.window_days, "per_snapshot": sizes}


def snapshot_size(day_stats: dict) -> dict:
    # the last two: q-i-q and random-walk ranking only
    keys = ("snapshot", "nodes_with_neighbors", "edges_kept", "mean_degree", "hub_items_skipped", "multi_hop_neighbors")
    return {k: day_stats[k] for k in keys if k in day_stats}


def relation_summary(relation: str, stats: dict) -> str:
    sizes = stats["per_snapshot"]
    source = ""
    if "q2q_source" in stats:
        source = (f"; neighbors from {QIQ_SOURCE_NAMES[stats['q2q_source']]}, {stats['hub_items_skipped']:,} hub items "
                  f"(over {stats['max_item_queries']} queries) skipped")
    if stats.get("neighbor_rank") == "random_walk":
        source += (f"; ranked by {stats['walk_length']}-step random-walk visits (top {stats['walk_keep']} kept per step), "
                   f"{stats['multi_hop_neighbors']:,} of the kept neighbors multi-hop")
    return (f"graph {relation}: {len(sizes)} daily snapshots ({sizes[0]['snapshot']} .. {sizes[-1]['snapshot']}, "
            f"{stats['window_days']}-day window); latest {stats['nodes_with_neighbors']:,} of {stats['nodes']:,} nodes "
            f"with neighbors, {stats['edges_kept']:,} edges kept of {stats['edges_before_top_k']:,}, "
            f"mean degree {stats['mean_degree']:.2f}" + source)


def build_graphs(events: pd.DataFrame, vocabs: dict, snapshot_days: np.ndarray, config: GraphConfig, progress=print,
                 progress_bar: bool = False):
    """Daily q2q and i2i snapshots. Returns ({relation: DailyTables}, {relation: stats}).

    ``events`` are the events the snapshots may draw on (a snapshot only reads those of its own
    trailing window, all before it); ``snapshot_days`` are the day starts (epoch seconds) to build.
    ``vocabs[name]`` has ``token`` and ``known_since``: a token not known at a snapshot is left out of it.
    Stats hold the full statistics of the latest snapshot and per-snapshot sizes.
    """
    tables, stats = {}, {}
    for relation, (pairs, behaviors, outside) in relation_pairs(events, vocabs, config):
        vocab_name = RELATIONS[relation][1]
        vocab = vocabs[vocab_name]["token"]
        known_since = vocabs[vocab_name]["known_since"].to_numpy(dtype=np.int64)
        query_items = query_item_pairs(events, vocabs, config) if relation == "q2q" and config.q2q_source != "session" else None
        changes, sizes = SnapshotChanges(relation), []
        for day in tqdm(snapshot_days, desc=f"graph {relation}", unit="day", disable=not progress_bar):
            edges = snapshot_edges(pairs, int(day), known_since, config.window_days)
            if query_items is not None:
                edges, hubs = q2q_snapshot_edges(edges, query_items, int(day), known_since, config)
            table, day_stats = neighbor_table(edges, len(vocab), config, relation, [""] + list(vocab), int(day))
            if query_items is not None:
                day_stats["hub_items_skipped"] = hubs
            changes.add(table.snapshot_ts, *(getattr(table, f) for f in ROW_FIELDS))
            sizes.append(snapshot_size(day_stats))
        tables[relation] = changes.finish([""] + list(vocab))
        stats[relation] = relation_stats(day_stats, sizes, behaviors, outside, config)
        if query_items is not None:
            stats[relation].update(q2q_source=config.q2q_source, max_item_queries=config.max_item_queries)
        if config.neighbor_rank != "cooccurrence":
            stats[relation].update(neighbor_rank=config.neighbor_rank, walk_length=config.walk_length, walk_keep=config.walk_keep)
        progress(relation_summary(relation, stats[relation]))
    return tables, stats

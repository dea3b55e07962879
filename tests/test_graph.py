"""The co-occurrence graph on a hand-worked log, against a naive reference, and the leakage rule."""
import numpy as np
import pandas as pd
import pytest

from conftest import neighbors_of
from dropdown_rank.workdir import Work
from dropdown_rank.graph import GraphConfig, build_graphs, neighbor_table, relation_pairs, relation_summary, session_ids, snapshot_edges
from dropdown_rank.tables import RELATIONS, DailyTables, NeighborTable
from dropdown_rank.vocab import build_vocabularies

T0 = 1767225600


def hand_log():
    # user A: session 1 = q a, q b, item x, q c; 40 minutes later session 2 = q a, q b
    # user B: one session = q a, q c
    rows = [
        ("A", 0, "query", "a"), ("A", 60, "query", "b"), ("A", 120, "item", "x"), ("A", 180, "query", "c"),
        ("A", 2580, "query", "a"), ("A", 2640, "query", "b"),
        ("B", 0, "query", "a"), ("B", 100, "query", "c"),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"])
    frame["ts"] += T0
    return frame.sample(frac=1.0, random_state=0)  # order must not matter


DAY = 86400


def graphs(events, **config):
    """The snapshot of the day after the hand log (it holds every pair)."""
    vocabs = build_vocabularies(events, pd.DataFrame({"user_id": [], "candidate": [], "ts": []}))
    tables, stats = build_graphs(events, vocabs, np.array([T0 + DAY]), GraphConfig(**config), progress=lambda *a: None)
    return {relation: daily.latest() for relation, daily in tables.items()}, stats


def as_dict(table, node):
    return {n: (round(w, 6), c, t - T0) for n, w, c, t in neighbors_of(table, node)}


def test_session_mode_counts_sessions_and_normalizes_by_hand():
    tables, _ = graphs(hand_log())
    q2q = tables["q2q"]
    # a-b co-occur in A's two sessions; a-c in A's first session and B's; b-c in A's first only.
    assert as_dict(q2q, "a") == {"b": (0.5, 2, 2640), "c": (0.5, 2, 180)}
    assert as_dict(q2q, "b") == {"a": (round(2 / 3, 6), 2, 2640), "c": (round(1 / 3, 6), 1, 180)}
    assert as_dict(q2q, "c") == {"a": (round(2 / 3, 6), 2, 180), "b": (round(1 / 3, 6), 1, 180)}
    # equal weights: the more recent pair ranks first
    assert [n for n, *_ in neighbors_of(q2q, "a")] == ["b", "c"]
    assert tables["i2i"].degree().tolist() == [0]  # one item, no pairs
    assert q2q.ids[0].tolist() == [0] * 10 and q2q.nodes[0] == ""


def test_max_distance_limits_pairs():
    tables, _ = graphs(hand_log(), max_distance=1)
    # A's query sequence a b c | a b: with distance 1, a-c only co-occurs in B's session.
    assert as_dict(tables["q2q"], "a") == {"b": (round(2 / 3, 6), 2, 2640), "c": (round(1 / 3, 6), 1, 100)}


def test_window_mode_counts_event_pairs_within_the_window():
    tables, _ = graphs(hand_log(), mode="window", window_minutes=2)
    assert as_dict(tables["q2q"], "a") == {"b": (round(2 / 3, 6), 2, 2640), "c": (round(1 / 3, 6), 1, 100)}
    assert as_dict(tables["q2q"], "b") == {"a": (round(2 / 3, 6), 2, 2640), "c": (round(1 / 3, 6), 1, 180)}


def test_top_k_and_thresholds():
    tables, stats = graphs(hand_log(), neighbors=1)
    assert tables["q2q"].k == 1
    assert as_dict(tables["q2q"], "c") == {"a": (round(2 / 3, 6), 2, 180)}
    assert stats["q2q"]["edges_before_top_k"] == 6 and stats["q2q"]["edges_kept"] == 3
    tables, _ = graphs(hand_log(), min_count=2)
    assert as_dict(tables["q2q"], "b") == {"a": (1.0, 2, 2640)}


def test_session_ids_split_on_gap_user_and_midnight():
    users = np.array([0, 0, 0, 1, 1, 1])
    ts = np.array([0, 100, 5000, 5001, DAY - 10, DAY + 10])
    assert session_ids(users, ts, 1800).tolist() == [0, 0, 1, 2, 3, 4]


def naive_edges(events, gap_seconds, max_distance, kind):
    """Reference: loop over each user's sessions; count sessions per unordered pair."""
    counts = {}
    for _, user_events in events.sort_values(["user_id", "ts"], kind="stable").groupby("user_id"):
        rows = list(user_events.itertuples(index=False))
        sessions, current = [], [rows[0]]
        for prev, row in zip(rows, rows[1:]):
            if row.ts - prev.ts > gap_seconds or row.ts // DAY != prev.ts // DAY:
                sessions.append(current)
                current = []
            current.append(row)
        sessions.append(current)
        for session in sessions:
            ids = [r.id for r in session if r.kind == kind]
            pairs = {(ids[i], ids[j]) for i in range(len(ids)) for j in range(i + 1, min(len(ids), i + max_distance + 1)) if ids[i] != ids[j]}
            for a, b in pairs | {(b, a) for a, b in pairs}:
                counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def test_vectorized_counts_match_naive_reference_and_use_only_earlier_events(tiny_logs, tiny_work):
    work = Work.open(tiny_work)
    events = pd.read_parquet(tiny_logs / "events.parquet")
    # the snapshot of the first validation day counts the training period's events, no later one
    earlier = events[(events["ts"] >= work.split.train_start) & (events["ts"] < work.split.valid_start)]
    expected = naive_edges(earlier, 30 * 60, 10, "query")
    vocab = np.array([""] + work.vocabulary("queries"), dtype=object)
    counts = {}
    table = work.daily_tables("q2q").at(work.split.valid_start)
    for row in range(1, len(vocab)):
        for col in np.flatnonzero(table.ids[row]):
            counts[(vocab[row], vocab[table.ids[row, col]])] = int(table.count[row, col])
    # Every kept edge has exactly the reference count; no edge exists without training evidence.
    assert counts and all(expected.get(pair) == n for pair, n in counts.items())
    # Nodes with <= K reference neighbors keep all of them.
    degree = {}
    for a, _ in expected:
        degree[a] = degree.get(a, 0) + 1
    full = [a for a, d in degree.items() if d <= 10]
    assert all(sum(1 for (x, _) in counts if x == a) == degree[a] for a in full)
    assert table.snapshot_ts == work.split.valid_start and table.last_ts.max() < work.split.valid_start


def test_each_day_snapshot_holds_only_edges_of_earlier_days(tmp_path):
    """Test rows never see their own clicks: a pair first formed on day d is in no snapshot up to d."""
    from dropdown_rank.build import BuildConfig, build
    from dropdown_rank.split import SplitConfig

    rows, impressions = [], []
    for d in range(6):  # one request and one session per day
        rows += [("u", T0 + d * DAY, "query", f"q{d}"), ("u", T0 + d * DAY + 60, "query", f"q{d}b"), ("u", T0 + d * DAY + 90, "item", "x")]
        impressions += [(f"r{d}", "u", T0 + d * DAY + 30, "q", f"q{d}", 0, 1), (f"r{d}", "u", T0 + d * DAY + 30, "q", "qx", 1, 0)]
    # a pair that only ever co-occurs on the last (test) day
    rows += [("v", T0 + 5 * DAY + 100, "query", "q0"), ("v", T0 + 5 * DAY + 160, "query", "q1")]
    logs = tmp_path / "logs"
    logs.mkdir()
    pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"]).to_csv(logs / "events.csv", index=False)
    pd.DataFrame(impressions, columns=["request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked"]).to_csv(logs / "impressions.csv", index=False)
    build(logs, tmp_path / "work", BuildConfig(split=SplitConfig(valid_days=1, test_days=1, warmup_days=1)),
          progress=lambda *a: None, progress_bar=False)
    daily = Work.open(tmp_path / "work").daily_tables("q2q")
    assert [(t - T0) // DAY for t in daily.snapshot_ts] == [1, 2, 3, 4, 5, 6]  # days with samples, then the day after
    assert as_dict(daily.at(T0 + DAY), "q0") == {"q0b": (1.0, 1, 60)}
    assert as_dict(daily.at(T0 + DAY), "q1") == {}  # q1's session is on day 1 itself
    assert as_dict(daily.at(T0 + 2 * DAY), "q1") == {"q1b": (1.0, 1, DAY + 60)}
    assert as_dict(daily.at(T0 + 5 * DAY), "q0") == {"q0b": (1.0, 1, 60)}  # the test day's snapshot: no test-day pair
    assert as_dict(daily.at(T0 + 6 * DAY), "q0") == {"q0b": (0.5, 1, 60), "q1": (0.5, 1, 5 * DAY + 160)}
    assert "q4" not in set(daily.nodes) and "q5" not in set(daily.nodes)  # valid/test ids are not even nodes
    for table in daily:
        assert table.last_ts[table.ids > 0].max() < table.snapshot_ts


def test_trailing_window_forgets_old_days(tmp_path):
    rows = [("u", T0, "query", "a"), ("u", T0 + 60, "query", "b"), ("u", T0 + 3 * DAY, "query", "a"), ("u", T0 + 3 * DAY + 60, "query", "c")]
    events = pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"])
    vocabs = build_vocabularies(events, pd.DataFrame({"user_id": [], "candidate": [], "ts": []}))
    tables, _ = build_graphs(events, vocabs, np.array([T0 + 4 * DAY]), GraphConfig(window_days=2), progress=lambda *a: None)
    assert as_dict(tables["q2q"].latest(), "a") == {"c": (1.0, 1, 3 * DAY + 60)}
    tables, _ = build_graphs(events, vocabs, np.array([T0 + 4 * DAY]), GraphConfig(window_days=4), progress=lambda *a: None)
    assert set(as_dict(tables["q2q"].latest(), "a")) == {"b", "c"}


# -- q2q from query-item-query paths (q2q_source "item" / "both") --------------------------------------------------

def qiq_log(with_session_overlap=False):
    # A, session 1: q1 -> clicks i1, i2, i5; session 2 (an hour later): q1 -> i1.
    # B, one session: q2 -> i1, then q3 -> i2, i5 (q3 stands between q2 and i2/i5: q2 does not lead to them).
    # C, session 1: q3; session 2 (two hours later): i1 before any query (credited to nobody, not to q3), then q2.
    rows = [
        ("A", 0, "query", "q1"), ("A", 30, "item", "i1"), ("A", 40, "item", "i2"), ("A", 50, "item", "i5"),
        ("A", 3600, "query", "q1"), ("A", 3630, "item", "i1"),
        ("B", 100, "query", "q2"), ("B", 200, "item", "i1"), ("B", 250, "query", "q3"), ("B", 300, "item", "i2"),
        ("B", 310, "item", "i5"),
        ("C", 0, "query", "q3"), ("C", 7200, "item", "i1"), ("C", 7210, "query", "q2"),
    ]
    if with_session_overlap:  # B ends with q1: session edges q1-q2, q1-q3, q2-q3; q1 leads to nothing here
        rows.append(("B", 320, "query", "q1"))
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"])
    frame["ts"] += T0
    return frame.sample(frac=1.0, random_state=1)


def test_queries_leading_to_the_same_items_are_linked_by_hand():
    tables, stats = graphs(qiq_log(), q2q_source="item")
    q2q = tables["q2q"]
    # (q1,i1): 2 sessions, last 3630; (q1,i2), (q1,i5): 1; (q2,i1): 1, last 200; (q3,i2), (q3,i5): 1, last 300 / 310.
    # q1-q2 share i1: min(2, 1) = 1, last max(3630, 200); q1-q3 share i2 and i5: 1 + 1, last max(40, 300, 50, 310).
    assert as_dict(q2q, "q1") == {"q3": (round(2 / 3, 6), 2, 310), "q2": (round(1 / 3, 6), 1, 3630)}
    assert as_dict(q2q, "q2") == {"q1": (1.0, 1, 3630)}
    assert as_dict(q2q, "q3") == {"q1": (1.0, 2, 310)}  # no q2-q3 edge: no shared item, though they share a session
    assert stats["q2q"]["q2q_source"] == "item" and stats["q2q"]["hub_items_skipped"] == 0
    assert stats["q2q"]["per_snapshot"][-1]["hub_items_skipped"] == 0


def test_session_source_is_unchanged_and_i2i_never_changes():
    session, session_stats = graphs(qiq_log(with_session_overlap=True), q2q_source="session")
    default, default_stats = graphs(qiq_log(with_session_overlap=True))
    assert as_dict(session["q2q"], "q1") == {"q2": (0.5, 1, 320), "q3": (0.5, 1, 320)}
    assert as_dict(session["q2q"], "q2") == {"q1": (0.5, 1, 320), "q3": (0.5, 1, 250)}
    assert session_stats == default_stats and "q2q_source" not in session_stats["q2q"]
    assert "hub_items_skipped" not in session_stats["q2q"]["per_snapshot"][-1]
    for source in ("item", "both"):
        tables, _ = graphs(qiq_log(with_session_overlap=True), q2q_source=source)
        for field in ("ids", "weight", "last_ts", "count"):
            assert np.array_equal(getattr(tables["i2i"], field), getattr(default["i2i"], field))
    for field in ("ids", "weight", "last_ts", "count"):
        assert np.array_equal(getattr(session["q2q"], field), getattr(default["q2q"], field))


def test_both_adds_session_and_item_edges():
    tables, _ = graphs(qiq_log(with_session_overlap=True), q2q_source="both")
    q2q = tables["q2q"]
    # session: q1-q2 (1, 320), q1-q3 (1, 320), q2-q3 (1, 250); items: q1-q2 (1, 3630), q1-q3 (2, 310)
    assert as_dict(q2q, "q1") == {"q3": (0.6, 3, 320), "q2": (0.4, 2, 3630)}
    assert as_dict(q2q, "q2") == {"q1": (round(2 / 3, 6), 2, 3630), "q3": (round(1 / 3, 6), 1, 250)}
    assert as_dict(q2q, "q3") == {"q1": (0.75, 3, 320), "q2": (0.25, 1, 250)}


def test_a_hub_item_links_nothing():
    # i1 is reached from q1, q2, q3 (one user each); i2 from q1 and q2 only.
    rows = [(u, 0, "query", q) for u, q in (("A", "q1"), ("B", "q2"), ("C", "q3"))]
    rows += [(u, 10, "item", "i1") for u in "ABC"] + [(u, 20, "item", "i2") for u in "AB"]
    events = pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"]).assign(ts=lambda f: f["ts"] + T0)
    tables, stats = graphs(events, q2q_source="item", max_item_queries=3)
    assert as_dict(tables["q2q"], "q3") == {"q1": (0.5, 1, 10), "q2": (0.5, 1, 10)}
    assert as_dict(tables["q2q"], "q1") == {"q2": (round(2 / 3, 6), 2, 20), "q3": (round(1 / 3, 6), 1, 10)}
    assert stats["q2q"]["hub_items_skipped"] == 0
    tables, stats = graphs(events, q2q_source="item", max_item_queries=2)
    assert as_dict(tables["q2q"], "q3") == {}  # only i1 linked q3, and i1 is now a hub
    assert as_dict(tables["q2q"], "q1") == {"q2": (1.0, 1, 20)}  # through i2 alone
    assert stats["q2q"]["hub_items_skipped"] == 1 and stats["q2q"]["max_item_queries"] == 2
    assert "1 hub items (over 2 queries) skipped" in relation_summary("q2q", stats["q2q"])


def test_a_click_of_day_d_reaches_snapshot_d_plus_1_not_d():
    rows = [("A", 0, "query", "q1"), ("A", 60, "item", "i1"),  # day 0: q1 -> i1
            ("C", 100, "query", "q2"),  # day 0: q2 is issued (so it is known from day 1), no click
            ("B", DAY + 100, "query", "q2"), ("B", DAY + 160, "item", "i1")]  # day 1: q2 -> i1
    events = pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"]).assign(ts=lambda f: f["ts"] + T0)
    vocabs = build_vocabularies(events, pd.DataFrame({"user_id": [], "candidate": [], "ts": []}))
    for source in ("item", "both"):
        tables, _ = build_graphs(events, vocabs, np.array([T0 + DAY, T0 + 2 * DAY]), GraphConfig(q2q_source=source),
                                 progress=lambda *a: None)
        daily = tables["q2q"]
        assert as_dict(daily.at(T0 + DAY), "q2") == {} and as_dict(daily.at(T0 + DAY), "q1") == {}
        assert as_dict(daily.at(T0 + 2 * DAY), "q2") == {"q1": (1.0, 1, DAY + 160)}
        for table in daily:
            assert (table.last_ts[table.ids > 0] < table.snapshot_ts).all()
    tables, _ = build_graphs(events, vocabs, np.array([T0 + 3 * DAY]), GraphConfig(q2q_source="item", window_days=1),
                             progress=lambda *a: None)
    assert as_dict(tables["q2q"].latest(), "q2") == {}  # day 0's click left the 1-day window of day 3


def test_q2q_source_and_max_item_queries_are_validated():
    with pytest.raises(ValueError, match="q2q source must be one of 'session', 'item', 'both'.*not 'items'"):
        GraphConfig(q2q_source="items")
    with pytest.raises(ValueError, match="max_item_queries must be at least 2"):
        GraphConfig(q2q_source="item", max_item_queries=1)


def naive_query_item_edges(events, gap_seconds, max_item_queries):
    """Reference: loop over each user's sessions; credit each click to the session's latest query; link queries."""
    reached = {}  # (query, item) -> set of sessions
    for user, user_events in events.sort_values(["user_id", "ts"], kind="stable").groupby("user_id"):
        query, prev, session = None, None, 0
        for row in user_events.itertuples(index=False):
            if prev is not None and (row.ts - prev.ts > gap_seconds or row.ts // DAY != prev.ts // DAY):
                query, session = None, session + 1
            if row.kind == "query":
                query = row.id
            elif query is not None:
                reached.setdefault((query, row.id), set()).add((user, session))
            prev = row
    by_item = {}
    for (query, item), sessions in reached.items():
        by_item.setdefault(item, {})[query] = len(sessions)
    counts = {}
    for item, queries in by_item.items():
        if len(queries) > max_item_queries:
            continue
        for a in queries:
            for b in queries:
                if a != b:
                    counts[(a, b)] = counts.get((a, b), 0) + min(queries[a], queries[b])
    return counts


def test_query_item_edges_match_naive_reference_on_the_tiny_world(tiny_logs, tiny_work):
    work = Work.open(tiny_work)
    events = pd.read_parquet(tiny_logs / "events.parquet").drop_duplicates()
    events = events[(events["ts"] >= work.split.train_start) & (events["ts"] < work.split.test_end)]
    vocabs = {name: pd.read_parquet(tiny_work / "vocab" / f"{name}.parquet") for name in ("queries", "items")}
    day = work.split.valid_start
    tables, stats = build_graphs(events, vocabs, np.array([day]), GraphConfig(q2q_source="item", max_item_queries=20),
                                 progress=lambda *a: None)
    table = tables["q2q"].latest()
    earlier = events[(events["ts"] >= day - 30 * DAY) & (events["ts"] < day)]
    expected = naive_query_item_edges(earlier, 30 * 60, 20)
    known = set(vocabs["queries"]["token"][vocabs["queries"]["known_since"] <= day])
    expected = {pair: n for pair, n in expected.items() if pair[0] in known and pair[1] in known}
    vocab = table.nodes
    counts = {}
    for row in range(1, len(vocab)):
        for col in np.flatnonzero(table.ids[row]):
            counts[(vocab[row], vocab[table.ids[row, col]])] = int(table.count[row, col])
    assert len(counts) > 100 and all(expected.get(pair) == n for pair, n in counts.items())
    degree = {}
    for a, _ in expected:
        degree[a] = degree.get(a, 0) + 1
    assert all(sum(1 for (x, _) in counts if x == a) == d for a, d in degree.items() if d <= 10)
    assert stats["q2q"]["hub_items_skipped"] > 0  # the tiny world has items above 20 queries: the guard was exercised
    assert table.last_ts[table.ids > 0].max() < day


# -- neighbors ranked by random-walk visits (neighbor_rank "random_walk") -------------------------------------------

def walk_log():
    # a-b co-occur in 3 sessions (last at 100, 200, 300), b-c in 3 (last at 1000, 1100, 1200), a-e in 1 (last at 500):
    # a -> b 3/4, a -> e 1/4; b -> a 1/2, b -> c 1/2; c -> b 1; e -> a 1. c is two hops from a.
    rows = []
    for i, t in enumerate((100, 200, 300)):
        rows += [(f"ab{i}", t - 50, "query", "a"), (f"ab{i}", t, "query", "b")]
    for i, t in enumerate((1000, 1100, 1200)):
        rows += [(f"bc{i}", t - 50, "query", "b"), (f"bc{i}", t, "query", "c")]
    rows += [("ae", 450, "query", "a"), ("ae", 500, "query", "e")]
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"])
    frame["ts"] += T0
    return frame.sample(frac=1.0, random_state=2)


def test_random_walk_ranks_a_two_hop_neighbor_above_a_weak_direct_one_by_hand():
    tables, stats = graphs(walk_log(), neighbor_rank="random_walk", walk_length=2)
    q2q = tables["q2q"]
    # visits from a: step 1 b 3/4, e 1/4; step 2 = 3/4 (b -> a 1/2, c 1/2) + 1/4 (e -> a 1): a 5/8 (itself, left
    # out), c 3/8. Scores b 3/4, c 3/8, e 1/4, sum 11/8: weights 6/11, 3/11, 2/11.
    # c is not an edge of a: count 0, last_ts min(a's latest out-edge 500, c's latest in-edge 1200) = 500.
    assert as_dict(q2q, "a") == {"b": (round(6 / 11, 6), 3, 300), "c": (round(3 / 11, 6), 0, 500), "e": (round(2 / 11, 6), 1, 500)}
    assert [n for n, *_ in neighbors_of(q2q, "a")] == ["b", "c", "e"]  # the 2-hop c outranks the direct e
    # from c: step 1 b 1; step 2 a 1/2, c 1/2 (itself). c -> a: min(c's latest out-edge 1200, a's latest in-edge 500).
    assert as_dict(q2q, "c") == {"b": (round(2 / 3, 6), 3, 1200), "a": (round(1 / 3, 6), 0, 500)}
    # from b: step 1 a 1/2, c 1/2; step 2 b 7/8 (itself), e 1/8. a and c tie on visits and count: the more recent first.
    assert as_dict(q2q, "b") == {"c": (round(4 / 9, 6), 3, 1200), "a": (round(4 / 9, 6), 3, 300), "e": (round(1 / 9, 6), 0, 500)}
    assert [n for n, *_ in neighbors_of(q2q, "b")] == ["c", "a", "e"]
    tables, _ = graphs(walk_log(), neighbor_rank="random_walk", walk_length=2, neighbors=1)
    assert as_dict(tables["q2q"], "b") == {"c": (round(4 / 9, 6), 3, 1200)}  # the tie at the cut: recency, not id
    assert stats["q2q"]["edges_before_top_k"] == 10 and stats["q2q"]["multi_hop_neighbors"] == 4
    assert stats["q2q"]["neighbor_rank"] == "random_walk" and stats["q2q"]["per_snapshot"][-1]["multi_hop_neighbors"] == 4
    assert "ranked by 2-step random-walk visits (top 50 kept per step), 4 of the kept neighbors multi-hop" in relation_summary("q2q", stats["q2q"])
    # the top-K cut comes after the weights: the 2-hop c takes the second place, the direct e is cut
    tables, _ = graphs(walk_log(), neighbor_rank="random_walk", walk_length=2, neighbors=2, walk_keep=2)
    assert as_dict(tables["q2q"], "a") == {"b": (round(6 / 11, 6), 3, 300), "c": (round(3 / 11, 6), 0, 500)}


def test_longer_walks_change_the_ranking_by_hand():
    # step 3 from a: step 2's a 5/8 -> b 15/32, e 5/32; c 3/8 -> b 3/8. Scores b 3/4 + 27/32 = 51/32, e 1/4 + 5/32 = 13/32,
    # c 3/8 = 12/32 (its visits do not grow: c is only reached from b): e now outranks c. Sum 76/32.
    tables, _ = graphs(walk_log(), neighbor_rank="random_walk", walk_length=3)
    assert as_dict(tables["q2q"], "a") == {"b": (round(51 / 76, 6), 3, 300), "e": (round(13 / 76, 6), 1, 500),
                                           "c": (round(12 / 76, 6), 0, 500)}
    assert [n for n, *_ in neighbors_of(tables["q2q"], "a")] == ["b", "e", "c"]
    # one step: the direct edges only, ranked as co-occurrence ranks them
    walk, _ = graphs(walk_log(), neighbor_rank="random_walk", walk_length=1)
    cooccurrence, _ = graphs(walk_log())
    for field in ("ids", "weight", "last_ts", "count"):
        assert np.array_equal(getattr(walk["q2q"], field), getattr(cooccurrence["q2q"], field))


def test_a_node_is_never_its_own_neighbor_and_every_last_ts_is_before_the_snapshot(tiny_logs, tiny_work):
    work = Work.open(tiny_work)
    events = pd.read_parquet(tiny_logs / "events.parquet")
    events = events[(events["ts"] >= work.split.train_start) & (events["ts"] < work.split.test_end)]
    vocabs = {name: pd.read_parquet(tiny_work / "vocab" / f"{name}.parquet") for name in ("queries", "items")}
    days = work.daily_tables("q2q").snapshot_ts
    for source in ("session", "both"):
        tables, stats = build_graphs(events, vocabs, days, GraphConfig(neighbor_rank="random_walk", q2q_source=source),
                                     progress=lambda *a: None)
        for relation, daily in tables.items():
            assert stats[relation]["multi_hop_neighbors"] > 0  # walks reach beyond direct edges
            for table in daily:
                present = table.ids > 0
                assert not (table.ids[1:] == np.arange(1, len(table.ids))[:, None]).any()  # never itself
                assert not present[0].any()  # padding has no neighbors
                assert (table.last_ts[present] < table.snapshot_ts).all()
                assert (table.last_ts[present] >= table.snapshot_ts - 30 * DAY).all()  # from the window's edges
                assert (table.weight[present] > 0).all() and (table.weight.sum(axis=1) <= 1 + 1e-5).all()
                assert (table.count[present] >= 0).all() and (table.count[~present] == 0).all()
                # rows are ranked: weights never increase along a row
                assert (np.diff(np.where(present, table.weight, -1.0), axis=1) <= 1e-7).all()


def test_a_two_hop_link_through_an_edge_of_day_d_appears_from_snapshot_d_plus_1():
    rows = [("A", 0, "query", "a"), ("A", 60, "query", "b"),  # day 0: a-b
            ("C", 100, "query", "c"),  # day 0: c is issued (known from day 1), alone
            ("B", DAY + 100, "query", "b"), ("B", DAY + 160, "query", "c")]  # day 1: b-c
    events = pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"]).assign(ts=lambda f: f["ts"] + T0)
    vocabs = build_vocabularies(events, pd.DataFrame({"user_id": [], "candidate": [], "ts": []}))
    tables, _ = build_graphs(events, vocabs, np.array([T0 + DAY, T0 + 2 * DAY]), GraphConfig(neighbor_rank="random_walk"),
                             progress=lambda *a: None)
    daily = tables["q2q"]
    assert as_dict(daily.at(T0 + DAY), "a") == {"b": (1.0, 1, 60)}  # the day-1 b-c edge is not in day 1's snapshot
    assert as_dict(daily.at(T0 + DAY), "c") == {}
    # day 2: a -> b 1; b -> a 1/2, c 1/2; c -> b 1. 3 steps from a: b 1 (step 1) + 1/2 + 1/2 (step 3, from a and c),
    # c 1/2 (step 2); a itself left out. Weights 2/2.5, 0.5/2.5; c's last_ts min(a's latest out-edge, c's latest in-edge).
    assert as_dict(daily.at(T0 + 2 * DAY), "a") == {"b": (0.8, 1, 60), "c": (0.2, 0, 60)}
    for table in daily:
        assert (table.last_ts[table.ids > 0] < table.snapshot_ts).all()


def dense_walk_scores(edges, n, length):
    """Reference: dense sum over t = 1..length of P^t, diagonal left out."""
    counts = np.zeros((n, n))
    np.add.at(counts, (edges["src"], edges["dst"]), edges["count"])
    step = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    power, total = np.eye(n), np.zeros((n, n))
    for _ in range(length):
        power = power @ step
        total += power
    np.fill_diagonal(total, 0)
    return total


def test_walk_scores_match_dense_powers_and_row_chunks_change_nothing(monkeypatch):
    import dropdown_rank.graph as graph

    rng = np.random.default_rng(5)
    n = 40
    src, dst = rng.integers(0, n, 300), rng.integers(0, n, 300)
    edges = pd.DataFrame({"src": src, "dst": dst, "count": rng.integers(1, 5, 300)})
    edges = edges[edges["src"] != edges["dst"]].groupby(["src", "dst"], as_index=False)["count"].sum()
    args = (edges["src"].to_numpy(), edges["dst"].to_numpy(), edges["count"].to_numpy(), n)
    for length in (1, 2, 4):
        config = GraphConfig(neighbor_rank="random_walk", walk_length=length, walk_keep=n)  # no cut: exact
        row, col, score = graph.walk_scores(*args, config)
        got = np.zeros((n, n))
        got[row, col] = score
        assert (row != col).all() and np.allclose(got, dense_walk_scores(edges, n, length), rtol=1e-12, atol=0)
        assert (np.diff(row * n + col) > 0).all()
    config = GraphConfig(neighbor_rank="random_walk", walk_length=3, walk_keep=12)
    whole = graph.walk_scores(*args, config)
    monkeypatch.setattr(graph, "WALK_PRODUCT_BUDGET", 30)  # a few rows per chunk
    chunked = graph.walk_scores(*args, config)
    assert all(np.array_equal(a, b) for a, b in zip(whole, chunked))


def test_each_walk_step_keeps_the_largest_entries_per_node():
    from scipy import sparse

    from dropdown_rank.graph import _keep_top

    matrix = sparse.csr_matrix(np.array([[0.1, 0.4, 0.0, 0.4, 0.2],   # keep 2: the two 0.4
                                         [0.3, 0.0, 0.3, 0.3, 0.0],   # a tie: the lower columns
                                         [0.0, 0.5, 0.0, 0.0, 0.0],   # shorter than keep: all of it
                                         [0.0, 0.0, 0.0, 0.0, 0.0]]))
    assert _keep_top(matrix, 2).toarray().tolist() == [[0, 0.4, 0, 0.4, 0], [0.3, 0, 0.3, 0, 0], [0, 0.5, 0, 0, 0], [0] * 5]
    rng = np.random.default_rng(0)
    for _ in range(50):
        dense = np.round(rng.random((20, 30)) * (rng.random((20, 30)) < 0.5), 2)
        keep = int(rng.integers(1, 10))
        expected = np.zeros_like(dense)
        for i in range(len(dense)):
            for value, j in sorted((-dense[i, j], j) for j in np.flatnonzero(dense[i]))[:keep]:
                expected[i, j] = -value
        assert np.array_equal(_keep_top(sparse.csr_matrix(dense), keep).toarray(), expected)


def test_walk_keep_cuts_each_step_by_hand():
    # walk_keep 1: a walk leaves each node along its most likely edge only (a -> b; b -> a or c, a tie: the lower
    # column, a's: the vocabulary ranks a, 4 occurrences, before c, 3), and each step keeps one node. From a: step 1
    # b 3/4 (e is never visited); step 2 a 3/8, which is a itself and left out.
    queries = build_vocabularies(walk_log(), pd.DataFrame({"user_id": [], "candidate": [], "ts": []}))["queries"]
    assert queries["token"].tolist() == ["b", "a", "c", "e"]
    tables, _ = graphs(walk_log(), neighbor_rank="random_walk", walk_length=2, walk_keep=1, neighbors=1)
    assert as_dict(tables["q2q"], "a") == {"b": (1.0, 3, 300)}
    # e: step 1 a 1; step 2 from a: b 3/4 (not e 1/4). Scores a 1, b 3/4: a first, weight 4/7.
    assert as_dict(tables["q2q"], "e") == {"a": (round(4 / 7, 6), 1, 500)}
    # without the cut, step 2 from a also reaches c: b's 1/2 of 3/4
    tables, _ = graphs(walk_log(), neighbor_rank="random_walk", walk_length=2, walk_keep=2, neighbors=1)
    assert as_dict(tables["q2q"], "a") == {"b": (round(6 / 11, 6), 3, 300)}


def test_cooccurrence_rank_is_the_default_and_unchanged():
    default, default_stats = graphs(walk_log())
    explicit, explicit_stats = graphs(walk_log(), neighbor_rank="cooccurrence", walk_length=7, walk_keep=3)
    assert default_stats == explicit_stats and "neighbor_rank" not in default_stats["q2q"]
    assert "multi_hop_neighbors" not in default_stats["q2q"]["per_snapshot"][-1]
    for field in ("ids", "weight", "last_ts", "count"):
        assert np.array_equal(getattr(default["q2q"], field), getattr(explicit["q2q"], field))
    assert as_dict(default["q2q"], "a") == {"b": (0.75, 3, 300), "e": (0.25, 1, 500)}  # direct edges only


def test_neighbor_rank_and_walk_settings_are_validated():
    with pytest.raises(ValueError, match="neighbor rank must be one of 'cooccurrence', 'random_walk'.*not 'pagerank'"):
        GraphConfig(neighbor_rank="pagerank")
    with pytest.raises(ValueError, match="walk_length must be at least 1"):
        GraphConfig(neighbor_rank="random_walk", walk_length=0)
    with pytest.raises(ValueError, match="walk_keep must be at least 1"):
        GraphConfig(walk_keep=0)
    with pytest.raises(ValueError, match="walk_keep 5 < neighbors 10"):
        GraphConfig(neighbor_rank="random_walk", walk_keep=5)
    GraphConfig(neighbors=100)  # co-occurrence ranking does not read walk_keep


def test_the_history_of_changes_gives_every_day_exactly_as_that_day_built_alone(tiny_logs, tiny_work):
    """Stored as changes, snapshot d reads back as the table a build of day d alone makes, on every day of the
    tiny world; and it stores fewer rows than the days hold (tests/test_build_beam.py: the Beam build writes the
    same history)."""
    work = Work.open(tiny_work)
    events = pd.read_parquet(tiny_logs / "events.parquet")
    events = events[(events["ts"] >= work.split.train_start) & (events["ts"] < work.split.test_end)]
    vocabs = {name: pd.DataFrame({"token": work.vocabulary(name), "known_since": work.known_since(name)})
              for name in ("queries", "items")}
    config = GraphConfig()
    for relation, (pairs, _, _) in relation_pairs(events, vocabs, config):
        history = work.daily_tables(relation)
        vocab_name = RELATIONS[relation][1]
        known_since = vocabs[vocab_name]["known_since"].to_numpy(np.int64)
        assert len(history) == len(work.split.snapshot_days()) > 5
        for day, day_start in enumerate(history.snapshot_ts):
            # The day's table made directly from its window's edges, as a build of that day alone makes it.
            edges = snapshot_edges(pairs, int(day_start), known_since, config.window_days)
            expected, _ = neighbor_table(edges, len(vocabs[vocab_name]), config, relation, history.nodes, int(day_start))
            got = history[day]
            assert got.snapshot_ts == expected.snapshot_ts == day_start
            for field in ("ids", "weight", "last_ts", "count"):
                x, y = getattr(expected, field), getattr(got, field)
                assert x.dtype == y.dtype and np.array_equal(x, y), (relation, day, field)
        rows_held = sum(int((table.ids > 0).any(axis=1).sum()) for table in history)
        assert history.versions < rows_held, (relation, history.versions, rows_held)  # stored whole, they would be equal


def test_a_row_that_empties_gets_an_empty_version():
    rows = [("u", T0, "query", "a"), ("u", T0 + 60, "query", "b"), ("u", T0 + 5 * DAY, "query", "c"), ("u", T0 + 5 * DAY + 60, "query", "d")]
    events = pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"])
    vocabs = build_vocabularies(events, pd.DataFrame({"user_id": [], "candidate": [], "ts": []}))
    days = T0 + DAY * np.arange(1, 8)
    history, _ = build_graphs(events, vocabs, days, GraphConfig(window_days=2), progress=lambda *a: None)
    q2q = history["q2q"]
    assert [len(as_dict(q2q[d], "a")) for d in range(7)] == [1, 1, 0, 0, 0, 0, 0]  # a-b leaves the 2-day window on day 3
    assert [len(as_dict(q2q[d], "c")) for d in range(7)] == [0, 0, 0, 0, 0, 1, 1]
    a = 1 + vocabs["queries"]["token"].tolist().index("a")
    assert q2q.day[q2q.node == a].tolist() == [0, 2]  # the row, then its empty version; no row per unchanged day
    assert not q2q.ids[(q2q.node == a) & (q2q.day == 2)].any()


def test_the_history_file_refuses_an_old_format_or_another_vocabulary_and_an_empty_history_reads_empty(tmp_path):
    nodes = np.array(["", "a", "b"], dtype=object)
    empty = np.zeros((3, 2), np.int32)
    history = DailyTables.from_snapshots([NeighborTable("q2q", nodes, empty, empty.astype(np.float32), empty.astype(np.int64), empty, ts)
                                          for ts in (T0, T0 + DAY)])
    assert history.versions == 0 and not history[1].ids.any() and not history[-1].ids.any()
    with pytest.raises(IndexError):
        history[2]
    history.save(tmp_path / "q2q.npz")
    assert DailyTables.load(tmp_path / "q2q.npz", ["a", "b"]).versions == 0
    with pytest.raises(ValueError, match=r"3 rows, but the vocabulary has 3 tokens"):
        DailyTables.load(tmp_path / "q2q.npz", ["a", "b", "c"])
    np.savez(tmp_path / "old.npz", relation=np.array("q2q"), ids=np.zeros((2, 3, 2), np.int32), snapshot_ts=np.array([T0, T0 + DAY]))
    with pytest.raises(ValueError, match="an older dropdown_rank stored every day whole"):
        DailyTables.load(tmp_path / "old.npz", ["a", "b"])

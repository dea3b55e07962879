"""The co-occurrence graph on a hand-worked log, against a naive reference, and the leakage rule."""
import numpy as np
import pandas as pd

from dropdown_rank.build import Work
from dropdown_rank.graph import GraphConfig, build_graphs, session_ids
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


def graphs(events, **config):
    vocabs = build_vocabularies(events, pd.DataFrame({"user_id": [], "candidate": []}))
    tables, stats = build_graphs(events, vocabs, T0 + 3000, GraphConfig(**config), progress=lambda *a: None)
    return tables, stats


def as_dict(table, node):
    return {n: (round(w, 6), c, t - T0) for n, w, c, t in table.neighbors_of(node)}


def test_session_mode_counts_sessions_and_normalizes_by_hand():
    tables, _ = graphs(hand_log())
    q2q = tables["q2q"]
    # a-b co-occur in A's two sessions; a-c in A's first session and B's; b-c in A's first only.
    assert as_dict(q2q, "a") == {"b": (0.5, 2, 2640), "c": (0.5, 2, 180)}
    assert as_dict(q2q, "b") == {"a": (round(2 / 3, 6), 2, 2640), "c": (round(1 / 3, 6), 1, 180)}
    assert as_dict(q2q, "c") == {"a": (round(2 / 3, 6), 2, 180), "b": (round(1 / 3, 6), 1, 180)}
    # equal weights: the more recent pair ranks first
    assert [n for n, *_ in q2q.neighbors_of("a")] == ["b", "c"]
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


def test_session_ids_split_on_gap_and_user():
    users = np.array([0, 0, 0, 1])
    ts = np.array([0, 100, 5000, 5001])
    assert session_ids(users, ts, 1800).tolist() == [0, 0, 1, 2]


def naive_edges(events, gap_seconds, max_distance, kind):
    """Reference: loop over each user's sessions; count sessions per unordered pair."""
    counts = {}
    for _, user_events in events.sort_values(["user_id", "ts"], kind="stable").groupby("user_id"):
        rows = list(user_events.itertuples(index=False))
        sessions, current = [], [rows[0]]
        for prev, row in zip(rows, rows[1:]):
            if row.ts - prev.ts > gap_seconds:
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


def test_vectorized_counts_match_naive_reference_and_use_training_events_only(tiny_logs, tiny_work):
    work = Work.open(tiny_work)
    events = pd.read_parquet(tiny_logs / "events.parquet")
    train = events[(events["ts"] >= work.split.train_start) & (events["ts"] < work.split.valid_start)]
    expected = naive_edges(train, 30 * 60, 10, "query")
    vocab = np.array([""] + work.vocabulary("queries"), dtype=object)
    counts = {}
    for relation in ("q2q",):
        table = work.neighbor_table(relation)
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
    assert work.neighbor_table("q2q").snapshot_ts == work.split.valid_start


def test_no_edge_from_valid_or_test_events(tmp_path):
    from dropdown_rank.build import BuildConfig, build
    from dropdown_rank.split import SplitConfig

    day = 86400
    rows, impressions = [], []
    for d in range(6):  # one request and one session per day
        rows += [("u", T0 + d * day, "query", f"q{d}"), ("u", T0 + d * day + 60, "query", f"q{d}b")]
        impressions.append((f"r{d}", "u", T0 + d * day + 30, "q", f"q{d}", 0, 1))
    # a pair that only ever co-occurs on the last (test) day
    rows += [("v", T0 + 5 * day + 100, "query", "q0"), ("v", T0 + 5 * day + 160, "query", "q1")]
    logs = tmp_path / "logs"
    logs.mkdir()
    pd.DataFrame(rows, columns=["user_id", "ts", "kind", "id"]).to_csv(logs / "events.csv", index=False)
    pd.DataFrame(impressions, columns=["request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked"]).to_csv(logs / "impressions.csv", index=False)
    build(logs, tmp_path / "work", BuildConfig(split=SplitConfig(valid_days=1, test_days=1)), progress=lambda *a: None, progress_bar=False)
    q2q = Work.open(tmp_path / "work").neighbor_table("q2q")
    assert as_dict(q2q, "q0") == {"q0b": (1.0, 1, 60)}
    assert as_dict(q2q, "q1") == {"q1b": (1.0, 1, day + 60)}
    assert "q4" not in set(q2q.nodes) and "q5" not in set(q2q.nodes)  # valid/test ids are not even nodes

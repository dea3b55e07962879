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


DAY = 86400


def graphs(events, **config):
    """The snapshot of the day after the hand log (it holds every pair)."""
    vocabs = build_vocabularies(events, pd.DataFrame({"user_id": [], "candidate": [], "ts": []}))
    tables, stats = build_graphs(events, vocabs, np.array([T0 + DAY]), GraphConfig(**config), progress=lambda *a: None)
    return {relation: daily.latest() for relation, daily in tables.items()}, stats


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
        impressions.append((f"r{d}", "u", T0 + d * DAY + 30, "q", f"q{d}", 0, 1))
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

"""The reference online assembler serves exactly the build's sample rows (``assembler.py``, ``replay.py``)."""
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dropdown_rank import cli
from dropdown_rank import replay as replay_module
from dropdown_rank.assembler import FeatureAssembler
from dropdown_rank.counters import CandidateDays, daily_counts
from dropdown_rank.logs.schema import DAY, SAMPLE_ORDER
from dropdown_rank.replay import COMPARED, compare, replay_chunks, replay_rows, served_requests, timeline
from dropdown_rank.samples import Histories, SampleConfig, sample_columns

DAY0 = 1767225600  # 2026-01-01 00:00 UTC
# Windows a 9-day log crosses many times, and histories the users overflow
SHORT = SampleConfig(max_len=3, lookback_days=0.5, personal_days=1.5, popularity_days=2)


def adversarial_logs(seed: int):
    """A small log built to break an assembler: few distinct seconds (ties between a user's behaviors, and behaviors
    in a request's own second), bursts longer than max_len in one second, days without data, a user and a candidate
    the events never saw. Events are not in time order, as logs need not be."""
    rng = np.random.default_rng(seed)
    days = np.array([0, 1, 2, 4, 5, 8])  # gaps: the windows roll over empty days
    seconds = DAY0 + rng.choice(days, 60) * DAY + rng.integers(0, DAY, 60)
    n = 1200
    kind = rng.choice(["query", "item"], n)
    events = pd.DataFrame({"user_id": rng.choice([f"u{i}" for i in range(5)], n), "ts": rng.choice(seconds, n), "kind": kind,
                           "id": np.where(kind == "query", rng.choice([f"q{i}" for i in range(6)], n), rng.choice(["i1", "i2", "i3"], n))})
    burst = pd.DataFrame({"user_id": "u0", "ts": seconds[0], "kind": "query", "id": [f"q{i % 6}" for i in range(7)]})
    events = pd.concat([events, burst], ignore_index=True).drop_duplicates(ignore_index=True)  # as validation drops them
    requests = 250
    request_user = rng.choice([f"u{i}" for i in range(5)] + ["newcomer"], requests)
    request_ts = rng.choice(seconds, requests) + rng.choice([0, 0, 1], requests)
    rows = []
    for r in range(requests):
        for position, candidate in enumerate(rng.choice([f"q{i}" for i in range(7)], rng.integers(1, 5), replace=False)):
            rows.append((f"r{r}", request_user[r], request_ts[r], candidate, f"p{rng.integers(0, 3)}", position, rng.random() < 0.3))
    # requests exactly a window after a query of their user, and a second either side: the windows' edges
    for e, (user, ts, text) in enumerate(events.loc[events["kind"] == "query", ["user_id", "ts", "id"]].head(8).itertuples(index=False)):
        for window in (SHORT.personal_days, SHORT.lookback_days):
            for shift in (-1, 0, 1):
                rows.append((f"edge{e}-{window}{shift}", user, ts + int(window * DAY) + shift, text, "", 0, False))
    for day in days[1:]:  # at 00:00:00, when the popularity window has just rolled over
        rows.append((f"midnight{day}", "u0", DAY0 + int(day) * DAY, "q0", "", 0, False))
    impressions = pd.DataFrame(rows, columns=["request_id", "user_id", "ts", "candidate", "prefix", "position", "clicked"])
    return events, impressions.sort_values(SAMPLE_ORDER, kind="stable").reset_index(drop=True)


def built_rows(events, impressions, config):
    """What the build writes for every impression (``samples.sample_columns``), with the compared fields."""
    columns = sample_columns(Histories(events, impressions), impressions, pd.Series(dtype=np.int64),
                             CandidateDays(daily_counts(events, impressions)), config)
    return pa.table({name: columns[name] for name in (*COMPARED, "position")})


def served_rows(events, impressions, config):
    return replay_rows(FeatureAssembler(config), timeline(events, impressions), impressions, np.ones(len(impressions), bool))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_assembler_serves_the_builds_rows_on_a_log_made_to_break_it(seed):
    events, impressions = adversarial_logs(seed)
    built = built_rows(events, impressions, SHORT)
    assert compare(built, served_rows(events, impressions, SHORT)) == {}
    # the log reaches every rule the comparison is meant to hold
    rows = built.to_pandas()
    same_second = impressions.merge(events, on=["user_id", "ts"])
    assert len(same_second) > 0, "no behavior in a request's own second"
    assert (rows["query_history"].map(len) == SHORT.max_len).any() and (rows["query_history"].map(len) == 0).any()
    assert (rows["user_candidate_count"] > 0).any() and (rows["candidate_impressions"] > 0).any()
    all_time = impressions.merge(events[events["kind"] == "query"].rename(columns={"ts": "event_ts", "id": "candidate"}),
                                 on=["user_id", "candidate"])
    all_time = all_time[all_time["event_ts"] < all_time["ts"]].groupby(["request_id", "position"]).size()
    windowed = rows.set_index(["request_id", "position"])["user_candidate_count"].reindex(all_time.index)
    assert (windowed < all_time).any(), "no personal count was cut by its window"
    before_today = impressions.merge(impressions[["candidate", "ts"]].rename(columns={"ts": "shown_ts"}), on="candidate")
    before_today = before_today[before_today["shown_ts"] // DAY < before_today["ts"] // DAY].groupby(["request_id", "position"]).size()
    shown = rows.set_index(["request_id", "position"])["candidate_impressions"].reindex(before_today.index)
    assert (shown < before_today).any(), "no popularity count was cut by its window"
    earlier = impressions.merge(events[["user_id", "ts"]].rename(columns={"ts": "event_ts"}), on="user_id")
    earlier = earlier[earlier["event_ts"] < earlier["ts"]].groupby(["request_id", "position"]).size()
    assert (rows.set_index(["request_id", "position"])["activity"].reindex(earlier.index) < earlier).any(), "no activity cut"


def test_a_served_feature_that_differs_is_named_with_its_row():
    events, impressions = adversarial_logs(0)
    built = built_rows(events, impressions, SHORT)
    # an assembler with another personal window
    other = compare(built, served_rows(events, impressions, SampleConfig(**{**SHORT.__dict__, "personal_days": 1.0})))
    assert set(other) == {"user_candidate_count", "user_candidate_age"} and other["user_candidate_count"]["rows"] > 0
    # one history entry changed in one row
    served = served_rows(events, impressions, SHORT)
    row = next(r for r, history in enumerate(served.column("item_history").to_pylist()) if history)
    histories = served.column("item_history").to_pylist()
    histories[row] = ["changed"] + histories[row][1:]
    found = compare(built, served.set_column(served.schema.get_field_index("item_history"), "item_history",
                                             pa.array(histories, pa.list_(pa.string()))))
    assert list(found) == ["item_history"] and found["item_history"]["rows"] == 1
    assert f"row {row} " in found["item_history"]["first"][0] and "'changed'" in found["item_history"]["first"][0]
    assert "rows" in compare(built, served.slice(1))


def test_served_rows_come_in_chunks_that_add_up_to_the_whole():
    events, impressions = adversarial_logs(0)
    wanted = np.ones(len(impressions), bool)
    chunks = list(replay_chunks(FeatureAssembler(SHORT), timeline(events, impressions), impressions, wanted, 50))
    assert len(chunks) > 3 and all(chunk.num_rows >= 50 for chunk in chunks[:-1])
    whole = replay_rows(FeatureAssembler(SHORT), timeline(events, impressions), impressions, wanted)
    assert pa.concat_tables(chunks).equals(whole)
    empty = list(replay_chunks(FeatureAssembler(SHORT), timeline(events, impressions), impressions, ~wanted, 50))
    assert len(empty) == 1 and empty[0].num_rows == 0


def test_a_restored_checkpoint_continues_exactly(tmp_path):
    events, impressions = adversarial_logs(1)
    steps, wanted = list(timeline(events, impressions)), np.ones(len(impressions), bool)
    whole = replay_rows(FeatureAssembler(SHORT), steps, impressions, wanted)
    first = FeatureAssembler(SHORT)
    half = len(steps) // 2
    head = replay_rows(first, steps[:half], impressions, wanted)
    first.save(tmp_path / "state.json.gz")
    restored = FeatureAssembler.restore(tmp_path / "state.json.gz", SHORT)
    assert restored.state() == first.state()
    tail = replay_rows(restored, steps[half:], impressions, wanted)
    assert head.num_rows and tail.num_rows
    assert compare(whole, pa.concat_tables([head, tail])) == {}
    with pytest.raises(ValueError, match="windows and lengths must match"):
        FeatureAssembler.restore(tmp_path / "state.json.gz", SampleConfig())


def test_state_is_bounded_by_the_windows_and_lengths():
    """What a day or behavior that left every window leaves is dropped: per user at most max_len behaviors of a kind
    beyond the newest second, and, once the day rolls over, exactly the times and days still inside each window."""
    events, impressions = adversarial_logs(2)
    events = events[events["ts"] < DAY0 + 6 * DAY]  # to day 5, after days 2 and 4: every window reaches a day with data
    last_day = int(events["ts"].max()) // DAY * DAY
    impressions = impressions[impressions["ts"] < last_day + DAY].reset_index(drop=True)  # the clock stays on the last day
    assembler = FeatureAssembler(SHORT)
    for _ in served_requests(assembler, timeline(events, impressions), impressions, np.ones(len(impressions), bool)):
        pass
    for day in (last_day + DAY, last_day + 10 * DAY):  # the next day: part of each window is left; after every window: nothing
        assembler.add_event("u1", day, "item", "i1")
        events = pd.concat([events, pd.DataFrame({"user_id": ["u1"], "ts": [day], "kind": ["item"], "id": ["i1"]})])
        users = assembler.users.values()
        for user in users:
            for history in (user.queries, user.items):
                assert len(history) - sum(ts == history[-1][0] for ts, _ in history) <= SHORT.max_len
        queries = events.loc[events["kind"] == "query", "ts"]
        kept = {"personal": sorted(ts for user in users for times in user.query_ts.values() for ts in times),
                "activity": sorted(ts for user in users for ts in user.behavior_ts),
                "popularity": [past for past, _ in assembler.past_days]}
        expected = {"personal": sorted(queries[queries >= day - SHORT.personal_days * DAY].tolist()),
                    "activity": sorted(events.loc[events["ts"] >= day - SHORT.lookback_days * DAY, "ts"].tolist()),
                    "popularity": sorted({t // DAY * DAY for t in [*queries, *impressions["ts"]]
                                          if day - SHORT.popularity_days * DAY <= t < day})}
        assert kept == expected
        assert all(expected.values()) if day == last_day + DAY else not expected["personal"] and not assembler.window


def test_inputs_a_build_would_refuse_are_refused_before_they_touch_the_state():
    assembler = FeatureAssembler(SHORT)
    assembler.add_event("u", DAY0 + 100, "query", "q")
    before = assembler.state()
    refused = [
        (lambda: assembler.add_impression("r", "q", DAY0 + 99, False), "comes after ts .*time order"),
        (lambda: assembler.request_features("u", DAY0 + 100, "", []), "non-empty list"),
        (lambda: assembler.request_features("u", DAY0 + 100, "", "q"), "non-empty list"),
        (lambda: assembler.request_features("u", DAY0 + 200, ["a"], ["q", "x"]), "1 prefixes for 2 candidates"),
        (lambda: assembler.add_event("u", DAY0 + 100, "Query", "q"), "kind must be one of"),
        (lambda: assembler.add_event(42, DAY0 + 100, "query", "q"), "user_id must be a string"),
        (lambda: assembler.add_impression("r", "q", DAY0 + 100, "0"), "clicked must be 0 or 1"),
        (lambda: assembler.request_features("u", (DAY0 + 100) * 1000, "", ["q"]), "outside 1990 to 2100"),
        (lambda: assembler.request_features("u", "soon", "", ["q"]), "ts must be epoch seconds"),
    ]
    for call, message in refused:
        with pytest.raises(ValueError, match=message):
            call()
    assert assembler.state() == before  # a refused call moved no clock and counted nothing


def test_same_second_rules_and_repeats():
    """The request's own second is not history; a record delivered twice counts once (validation drops exact
    duplicates); fractional seconds are truncated, as validation truncates them."""
    assembler = FeatureAssembler(SHORT)
    assembler.add_event("u", DAY0 + 100, "query", "q")
    assembler.add_event("u", DAY0 + 100.7, "query", "q")  # the same record again, with a fraction
    served = assembler.request_features("u", DAY0 + 100.9, "", ["q"])
    assert served["request_ts"].tolist() == [DAY0 + 100]
    assert served["query_history"].shape == (1, 0) and served["user_candidate_count"][0] == 0
    assert served["user_candidate_age"][0] == -1
    for _ in range(2):
        assembler.add_impression("r", "q", DAY0 + 100, True)
    with pytest.raises(ValueError, match="clicked and not clicked"):
        assembler.add_impression("r", "q", DAY0 + 100, False)
    later = assembler.request_features("u", DAY0 + 101, "q", ["q", "unseen"])
    assert later["query_history"].tolist() == [["q"], ["q"]] and later["user_candidate_age"].tolist() == [1, -1]
    assert later["user_candidate_count"].tolist() == [1, 0]
    next_day = assembler.request_features("u", DAY0 + DAY, "q", ["q"])
    assert [next_day[name][0] for name in ("candidate_query_count", "candidate_impressions", "candidate_clicks")] == [1, 1, 1]


def test_replay_reports_no_mismatch_on_a_built_world_and_names_one_it_finds(tiny_logs, tiny_work_short_windows, tmp_path, capsys,
                                                                            monkeypatch):
    report_path = tmp_path / "replay.json"
    assert cli.main(["replay", "--logs", str(tiny_logs), "--work", str(tiny_work_short_windows), "--split", "train",
                     "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    stats = json.loads((tiny_work_short_windows / "stats.json").read_text())
    assert report["rows_compared"] == stats["samples"]["train"] > 0 and report["mismatches"] == {}
    assert "0 mismatches" in capsys.readouterr().out

    work = tmp_path / "work"
    shutil.copytree(tiny_work_short_windows, work)
    shard = sorted((work / "samples" / "test").glob("part-*.parquet"))[0]
    table = pq.read_table(shard)
    counts = table.column("candidate_clicks").to_pylist()
    counts[205] += 1
    pq.write_table(table.set_column(table.schema.get_field_index("candidate_clicks"), "candidate_clicks",
                                    pa.array(counts, pa.int32())), shard)
    monkeypatch.setattr(replay_module, "CHUNK_ROWS", 100)  # served and compared 100 rows at a time: row numbers run on
    assert cli.main(["replay", "--logs", str(tiny_logs), "--work", str(work)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH candidate_clicks: 1 rows; row 205 " in out and "MISMATCH" not in out.replace("MISMATCH candidate_clicks", "")


def test_replay_refuses_logs_the_work_directory_was_not_built_from(tiny_logs, tiny_work, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(tiny_logs / "impressions.parquet", logs)
    pq.write_table(pq.read_table(tiny_logs / "events.parquet").slice(1), logs / "events.parquet")
    assert cli.main(["replay", "--logs", str(logs), "--work", str(tiny_work)]) == 2
    assert "replay the logs it was built from" in capsys.readouterr().err


def test_requests_scored_from_the_assembler_score_as_their_training_rows(tiny_logs, tiny_work, tiny_runs):
    """The serving path against the training path: the tiny world's test requests, replayed through the assembler and
    scored by a reloaded ranker, score as the build's rows do, for base_20 and gat_20. base_20's are the run's saved
    test predictions, made by the training input pipeline inside a tf.function; here scoring is eager. (A reloaded
    GNN serves its frozen snapshot, so its scores are compared with the build's rows through that same ranker.)"""
    import tensorflow as tf

    from dropdown_rank.dataset import make_dataset
    from dropdown_rank.logs.schema import load_logs
    from dropdown_rank.model import SIGNATURE
    from dropdown_rank.train import load_run, read_predictions
    from dropdown_rank.workdir import Work

    work = Work.open(tiny_work)
    logs = load_logs(tiny_logs)
    impressions = logs.impressions.sort_values(SAMPLE_ORDER, kind="stable").reset_index(drop=True)
    wanted = work.split.assign(impressions["ts"].to_numpy()) == "test"
    rows, requests = [], []
    for request_rows, features, _ in served_requests(FeatureAssembler.for_work(work.config), timeline(logs.events, impressions),
                                                     impressions, wanted):
        rows += request_rows
        requests.append(features)
    served = FeatureAssembler.stack(requests)
    assert served["query_history"].shape[1] == work.max_len and len(rows) == int(wanted.sum())
    built = next(iter(make_dataset(tiny_work / "samples", "test", work.max_len, len(rows))))[0]
    keys = impressions.iloc[rows][["request_id", "position"]].reset_index(drop=True)
    saved = read_predictions(tiny_runs["base_20"], "test")
    pd.testing.assert_frame_equal(saved[["request_id", "position"]].reset_index(drop=True), keys, check_dtype=False)
    for name, run in tiny_runs.items():
        ranker = load_run(run)
        from_assembler = ranker.score({name: tf.constant(served[name], spec.dtype) for name, spec in SIGNATURE.items()}).numpy()
        from_build = ranker.score({name: built[name] for name in SIGNATURE}).numpy()
        np.testing.assert_allclose(from_assembler, from_build, atol=1e-6, err_msg=name)
        if name == "base_20":
            np.testing.assert_allclose(from_assembler, saved["prediction"].to_numpy(), atol=1e-6)


def test_a_serving_systems_own_features_are_checked_row_by_row(tiny_work, tmp_path, capsys):
    """``replay --served``: a serving team's feature log against the build's rows, in any order, with the rows the
    log lacks or adds counted apart."""
    built = pa.concat_tables([pq.read_table(f) for f in sorted((tiny_work / "samples" / "test").glob("part-*.parquet"))])
    served = built.select([*COMPARED, "position"]).take(np.random.default_rng(0).permutation(built.num_rows))
    pq.write_table(served, tmp_path / "same.parquet")
    assert cli.main(["replay", "--served", str(tmp_path / "same.parquet"), "--work", str(tiny_work)]) == 0
    assert "0 mismatches" in capsys.readouterr().out

    frame = served.slice(3).to_pandas()  # three rows not served
    frame.loc[10, "candidate_impressions"] += 2
    extra = frame.iloc[[0]].assign(request_id="not-a-request")
    pq.write_table(pa.Table.from_pandas(pd.concat([frame, extra]), preserve_index=False), tmp_path / "off.parquet")
    assert cli.main(["replay", "--served", str(tmp_path / "off.parquet"), "--work", str(tiny_work), "--report",
                     str(tmp_path / "report.json")]) == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["rows_compared"], report["rows_missing"], report["rows_extra"]) == (built.num_rows - 3, 3, 1)
    assert list(report["mismatches"]) == ["candidate_impressions"] and report["mismatches"]["candidate_impressions"]["rows"] == 1
    assert f"request {frame.loc[10, 'request_id']!r}, position {frame.loc[10, 'position']}" in report["mismatches"]["candidate_impressions"]["first"][0]

    pq.write_table(served.slice(1), tmp_path / "missing.parquet")  # one row not served, nothing else wrong
    assert cli.main(["replay", "--served", str(tmp_path / "missing.parquet"), "--work", str(tiny_work)]) == 1
    assert "1 rows of the split not served" in capsys.readouterr().out

    pq.write_table(served.drop_columns(["activity"]), tmp_path / "short.parquet")
    assert cli.main(["replay", "--served", str(tmp_path / "short.parquet"), "--work", str(tiny_work)]) == 2
    assert "no column activity" in capsys.readouterr().err
    flat = served.set_column(served.schema.get_field_index("query_history"), "query_history",
                             pa.array(["a"] * served.num_rows, pa.string()))
    pq.write_table(flat, tmp_path / "flat.parquet")
    assert cli.main(["replay", "--served", str(tmp_path / "flat.parquet"), "--work", str(tiny_work)]) == 2
    assert "column 'query_history': string does not convert to the samples' list<item: string>" in capsys.readouterr().err

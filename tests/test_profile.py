"""``dropdown-rank profile``: every figure checked against a log small enough to count by hand."""
import json

import numpy as np
import pandas as pd
import pytest

from dropdown_rank import cli
from dropdown_rank.evaluate.profile import ProfileConfig, profile_log
from dropdown_rank.logs.schema import DAY

DAY0 = 1767225600  # 2026-01-01 00:00 UTC


def write_hand_log(out):
    """Three users over two days; the expected figures are counted in the comments."""
    out.mkdir()
    events = pd.DataFrame([
        ("u1", DAY0 + 100, "query", "a"),
        ("u1", DAY0 + 200, "item", "i1"),
        ("u1", DAY0 + 300, "query", "a"),  # same as u1's previous query
        ("u2", DAY0 + 400, "query", "b"),
        ("u1", DAY0 + DAY + 100, "query", "c"),  # day 1: first time by anyone; a new session for u1
        ("u2", DAY0 + DAY + 200, "query", "a"),  # not first time (day 0); new to u2
        ("u2", DAY0 + DAY + 300, "query", "a"),  # same as u2's previous
        ("u3", DAY0 + DAY + 400, "query", "d"),  # first time by anyone
    ], columns=["user_id", "ts", "kind", "id"])
    impressions = pd.DataFrame([
        ("r1", "u1", DAY0 + DAY + 50, "a", "a", 0, 1),  # u1 issued "a" before; 3 behaviors before
        ("r1", "u1", DAY0 + DAY + 50, "c", "a", 1, 0),
        ("r2", "u2", DAY0 + DAY + 250, "b", "b", 0, 1),  # u2 issued "b" before; 2 behaviors before
        ("r3", "u3", DAY0 + DAY + 350, "d", "d", 0, 1),  # u3 issues "d" only after the request; no behavior before
        ("r3", "u3", DAY0 + DAY + 350, "a", "d", 1, 0),
    ], columns=["request_id", "user_id", "ts", "candidate", "prefix", "position", "clicked"])
    events.to_csv(out / "events.csv", index=False)
    impressions.to_csv(out / "impressions.csv", index=False)
    return out


def test_every_figure_of_a_hand_counted_log(tmp_path):
    profile, activity = profile_log(write_hand_log(tmp_path / "logs"), config=ProfileConfig(warmup_days=1))
    assert (profile["days"], profile["users"], profile["events"], profile["impressions"]) == (2, 3, 8, 5)
    assert (profile["queries"], profile["distinct_queries"]) == (7, 4)
    assert profile["first_time_query_share"] == 0.5  # after day 0: c and d of c, a, a, d
    assert profile["first_time_query_share_per_day"] == {"2026-01-01": round(2 / 3, 4), "2026-01-02": 0.5}
    assert profile["new_to_user_share"] == round(5 / 7, 4)
    assert profile["same_as_previous_share"] == round(2 / 7, 4)
    assert profile["queries_per_session"] == 1.4  # 7 queries, sessions: u1 2, u2 2, u3 1
    assert profile["events_per_user_median"] == 3.0  # 4, 3, 1
    assert profile["clicked_candidate_issued_before_share"] == round(2 / 3, 4)
    assert profile["activity_at_click"] == {"0-4": 1.0, "5-19": 0.0, "20-49": 0.0, "50+": 0.0}
    assert activity.tolist() == [3, 3, 2, 0, 0]
    assert profile["candidates"] == {"distinct": 4, "impressions_median": 1.0, "impressions_p90": 1.7, "impressions_p99": 1.97,
                                     "impressions_max": 2, "top_1pct_share_of_impressions": 0.4, "shown_once_share": 0.75}


def test_the_command_writes_its_files_and_refuses_a_foreign_directory(tmp_path, capsys):
    logs = write_hand_log(tmp_path / "logs")
    out = tmp_path / "profile"
    assert cli.main(["profile", "--logs", str(logs), "--out", str(out), "--warmup-days", "1"]) == 0
    assert {p.name for p in out.iterdir()} == {"profile.json", "profile.md", "first_time_queries_per_day.png", "activity_at_request.png"}
    assert json.loads((out / "profile.json").read_text())["first_time_query_share"] == 0.5
    printed = capsys.readouterr().out
    assert "| queries issued for the first time by anyone (after day 1) | 50.0% |" in printed
    assert cli.main(["profile", "--logs", str(logs), "--out", str(out)]) == 0  # its own output: replaced
    (out / "notes.txt").write_text("mine")
    assert cli.main(["profile", "--logs", str(logs), "--out", str(out)]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").exists()


def test_bad_input_gets_the_builds_errors(tmp_path, capsys):
    logs = write_hand_log(tmp_path / "logs")
    frame = pd.read_csv(logs / "impressions.csv")
    frame["ts"] = frame["ts"].astype(object)
    frame.loc[2, "ts"] = "yesterday"
    frame.to_csv(logs / "impressions.csv", index=False)
    assert cli.main(["profile", "--logs", str(logs), "--out", str(tmp_path / "out")]) == 2
    assert "impressions.csv, column 'ts': unparseable timestamp" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_test_candidates_outside_the_training_vocabulary(tiny_logs, tiny_work):
    from dropdown_rank.vocab import read_vocabulary
    from dropdown_rank.workdir import read_samples

    profile, _ = profile_log(tiny_logs, tiny_work)
    vocabulary = set(read_vocabulary(tiny_work / "vocab", "queries"))
    test = read_samples(tiny_work / "samples", "test", columns=["candidate"])
    outside = [candidate not in vocabulary for candidate in test["candidate"]]
    figures = profile["vocabulary"]
    assert figures["test_impressions"] == len(test) > 0
    assert figures["test_candidates_outside_vocabulary"] == round(float(np.mean(outside)), 4) > 0
    with pytest.raises(FileNotFoundError, match="not a complete work directory"):
        profile_log(tiny_logs, tiny_logs)

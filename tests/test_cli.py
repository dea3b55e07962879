"""The command line on tiny inputs: stages run, and bad input exits with a message, not a traceback."""
import json

import pandas as pd

from dropdown_rank.cli import main


def test_synth_and_build_from_the_command_line(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "logs"), "--scale", "tiny", "--seed", "1"]) == 0
    assert main(["build", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "work"), "--neighbors", "4",
                 "--seq-len", "30", "--valid-days", "2", "--test-days", "2"]) == 0
    build = json.loads((tmp_path / "work" / "build.json").read_text())
    assert build["config"]["graph"]["neighbors"] == 4 and build["config"]["samples"]["max_len"] == 30
    out = capsys.readouterr().out
    assert "graph q2q" in out and "samples train" in out


def test_bad_log_exits_2_naming_file_column_and_row(tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    pd.DataFrame({"user_id": ["u"], "ts": ["soon"], "kind": ["query"], "id": ["q"]}).to_csv(tmp_path / "logs" / "events.csv", index=False)
    pd.DataFrame({"request_id": ["r"], "user_id": ["u"], "ts": [1767225600], "prefix": [""], "candidate": ["q"],
                  "position": [0], "clicked": [0]}).to_csv(tmp_path / "logs" / "impressions.csv", index=False)
    assert main(["build", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err
    assert "events.csv, column 'ts': unparseable timestamp" in err and "row 1 ('soon')" in err


def test_demo_runs_end_to_end_on_the_tiny_world(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--scale", "tiny", "--valid-days", "2", "--test-days", "2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "base_20:" in out and "hgcn_20:" in out and "report.md" in out
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "runs" / "hgcn_20" / "metrics.json").exists()

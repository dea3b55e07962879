"""The command line on tiny inputs: stages run, and bad input exits with a message, not a traceback."""
import json
import re
import shutil

import pandas as pd
import pytest

from dropdown_rank.cli import main, make_parser
from dropdown_rank.workdir import Work, read_samples, shard_files


def test_synth_and_build_from_the_command_line(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "logs"), "--scale", "tiny", "--seed", "1"]) == 0
    assert main(["build", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "work"), "--neighbors", "4",
                 "--seq-len", "30", "--valid-days", "2", "--test-days", "2"]) == 0
    build = json.loads((tmp_path / "work" / "build.json").read_text())
    assert build["config"]["graph"]["neighbors"] == 4 and build["config"]["samples"]["max_len"] == 30
    work = Work.open(tmp_path / "work")  # the options reached the data, not only the record of them
    assert work.daily_tables("q2q").ids.shape[1] == 4 and (work.daily_tables("q2q").ids > 0).sum(axis=1).max() == 4
    lengths = read_samples(work.samples_dir, "train", columns=["query_history"])["query_history"].map(len)
    assert lengths.max() == 30
    assert sorted(p.name for p in work.samples_dir.iterdir()) == ["test", "train", "valid"]
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
    assert "report.md" in out
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "runs" / "hgcn_20_rel" / "metrics.json").exists()
    assert (tmp_path / "export" / "hgcn_20_rel" / "model_card.json").exists()
    profile = json.loads((tmp_path / "profile" / "profile.json").read_text())  # the world's profile, printed too
    assert f"| queries / distinct | {profile['queries']:,} / {profile['distinct_queries']:,} |" in out and "vocabulary" in profile
    # Each model's line gives its exact test AUC and its simulated A/B lift, both as the report has them.
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    for name, directory in (("base_20", "base_20"), ("hgcn_20+rel", "hgcn_20_rel")):
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{name}: AUC"))
        auc = json.loads((tmp_path / "runs" / directory / "metrics.json").read_text())["test_auc"]
        lift = next(p for p in report["pairs"] if (p["a"], p["b"], p["slice"]) == (name, "legacy order", "all"))["expected_clicks_lift"]
        assert f"AUC {auc:.4f}" in line and f"{100 * lift['value']:+.1f}% [{100 * lift['low']:+.1f}%, {100 * lift['high']:+.1f}%] vs legacy order" in line
    assert "(relevance oracle: the best order)" in out and "Why the two can disagree" in out


# -- user mistakes: one line "dropdown-rank <command>: error: ...", exit code 2, no traceback ---------------------

def error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    return lines[-1]


@pytest.mark.parametrize("argv,message", [
    (["train", "--data", "W", "--out", "R", "--batch-size", "0"], "dropdown-rank train: error: argument --batch-size: must be a positive integer, not 0"),
    (["train", "--data", "W", "--out", "R", "--epochs", "0"], "dropdown-rank train: error: argument --epochs: must be a positive integer, not 0"),
    (["train", "--data", "W", "--out", "R", "--seq-len", "0"], "dropdown-rank train: error: argument --seq-len: must be a positive integer, not 0"),
    (["train", "--data", "W", "--out", "R", "--seq-len", "-5"], "dropdown-rank train: error: argument --seq-len: must be a positive integer, not -5"),
    (["build", "--logs", "L", "--out", "W", "--neighbors", "0"], "dropdown-rank build: error: argument --neighbors: must be a positive integer, not 0"),
    (["build", "--logs", "L", "--out", "W", "--seq-len", "0"], "dropdown-rank build: error: argument --seq-len: must be a positive integer, not 0"),
    (["build", "--logs", "L", "--out", "W", "--valid-days", "0"], "dropdown-rank build: error: argument --valid-days: must be a positive integer, not 0"),
    (["build", "--logs", "L", "--out", "W", "--test-days", "-1"], "dropdown-rank build: error: argument --test-days: must be a positive integer, not -1"),
    (["build", "--logs", "L", "--out", "W", "--train-days", "0"], "dropdown-rank build: error: argument --train-days: must be a positive integer, not 0"),
    (["build", "--logs", "L", "--out", "W", "--min-count", "0"], "dropdown-rank build: error: argument --min-count: must be a positive integer, not 0"),
    (["evaluate", "--data", "W", "--runs", "R", "--out", "O", "--bootstrap", "0"],
     "dropdown-rank evaluate: error: argument --bootstrap: must be a positive integer, not 0"),
    (["synth", "--out", "O", "--birth-share", "1.5"],
     "dropdown-rank synth: error: argument --birth-share: must be a share from 0 to 1, not 1.5"),
    (["synth", "--out", "O", "--birth-share", "nan"],
     "dropdown-rank synth: error: argument --birth-share: must be a share from 0 to 1, not nan"),
    (["synth", "--out", "O", "--death-share", "-0.1"],
     "dropdown-rank synth: error: argument --death-share: must be a number >= 0, not -0.1"),
])
def test_out_of_range_arguments_are_refused_while_parsing(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert error_line(capsys) == message


def test_out_pointing_at_a_file(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    for argv in (["build", "--logs", str(tmp_path), "--out", str(tmp_path / "a_file")],
                 ["export", "--run", str(tmp_path), "--out", str(tmp_path / "a_file")]):
        assert main(argv) == 2
        assert error_line(capsys) == f"dropdown-rank {argv[0]}: error: --out {tmp_path / 'a_file'} is a file; give a directory"


@pytest.mark.parametrize("option,edges", [("--activity-edges", ["50", "20", "5"]), ("--pv-edges", ["100", "10"]),
                                          ("--pv-edges", ["10", "10"]), ("--activity-edges", ["-1", "5"])])
def test_unsorted_or_repeated_slice_edges_are_refused(tiny_work, tmp_path, capsys, option, edges):
    assert main(["evaluate", "--data", str(tiny_work), "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "report"),
                 option, *edges]) == 2
    assert error_line(capsys) == (f"dropdown-rank evaluate: error: {option} must be non-negative and strictly increasing, "
                                  f"not {' '.join(edges)}")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("split,label", [("validation", 0), ("test", 1)])
def test_a_split_without_both_labels_is_refused_by_the_build(tiny_logs, tmp_path, capsys, split, label):
    """Validation days with no click (or test days with only clicks) would end training in a traceback after a whole
    epoch (no validation AUC, no best checkpoint): the build refuses them and names the days."""
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(tiny_logs / "events.parquet", logs / "events.parquet")
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    days = impressions["ts"] // 86400
    chosen = days.isin([days.max() - 1, days.max()] if split == "test" else [days.max() - 3, days.max() - 2])
    impressions.loc[chosen, "clicked"] = label
    impressions.to_parquet(logs / "impressions.parquet", index=False)
    assert main(["build", "--logs", str(logs), "--out", str(tmp_path / "work"), "--valid-days", "2", "--test-days", "2"]) == 2
    line = error_line(capsys)
    missing = "no click" if label == 0 else "no impression without a click"
    assert re.match(rf"dropdown-rank build: error: {re.escape(str(logs / 'impressions.parquet'))}: the {split} days "
                    rf"\(\d{{4}}-\d\d-\d\d to \d{{4}}-\d\d-\d\d\) hold [\d,]+ impressions and {missing}: ", line), line
    assert not (tmp_path / "work").exists()


def test_a_stray_impression_decades_away_is_refused_before_the_build_spends_memory(tiny_logs, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(tiny_logs / "events.parquet", logs / "events.parquet")
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    stray = impressions.iloc[:1].assign(request_id="stray", ts=int(pd.Timestamp("2096-06-01", tz="UTC").timestamp()))
    pd.concat([impressions, stray]).to_parquet(logs / "impressions.parquet", index=False)
    assert main(["build", "--logs", str(logs), "--out", str(tmp_path / "work"), "--valid-days", "2", "--test-days", "2"]) == 2
    line = error_line(capsys)
    assert re.match(rf"dropdown-rank build: error: {re.escape(str(logs / 'impressions.parquet'))}: the impressions span "
                    r"25,\d\d\d days \(2026-\d\d-\d\d to 2096-06-01\) but only \d+ of them hold any, .*1 day\(s\) with impressions "
                    r"lie more than a year from the median day 2026-\d\d-\d\d \(first: 2096-06-01\)", line), line
    assert not (tmp_path / "work").exists()


def test_requests_without_history_are_reported_and_a_share_that_suggests_unjoined_ids_warns(tiny_logs, tiny_work, tmp_path, capsys):
    splits = json.loads((tiny_work / "stats.json").read_text())["splits"]
    samples = read_samples(tiny_work / "samples", "train", columns=["label", "query_history", "item_history"])
    empty = (samples["query_history"].map(len) == 0) & (samples["item_history"].map(len) == 0)
    assert splits["train"] == {"rows": len(samples), "clicks": int(samples["label"].sum()), "no_history_share": round(empty.mean(), 4)}
    assert 0 < splits["train"]["no_history_share"] < 0.9
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(tiny_logs / "events.parquet", logs / "events.parquet")
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    impressions.assign(user_id="hashed-" + impressions["user_id"]).to_parquet(logs / "impressions.parquet", index=False)
    assert main(["build", "--logs", str(logs), "--out", str(tmp_path / "work"), "--valid-days", "2", "--test-days", "2"]) == 0
    assert "samples: requests whose user has no earlier query or clicked item: train 100.0%, valid 100.0%, test 100.0%; " \
           "WARNING: 100% of training requests have no history" in capsys.readouterr().out
    assert json.loads((tmp_path / "work" / "stats.json").read_text())["splits"]["train"]["no_history_share"] == 1.0


def test_seq_len_longer_than_the_build_stored(tiny_work, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_work), "--out", str(tmp_path / "run"), "--seq-len", "60"]) == 2
    line = error_line(capsys)
    assert line.startswith("dropdown-rank train: error: seq_len 60 > the 50 stored per sample")


def test_too_few_days_names_the_impressions_file_and_the_days(tiny_logs, tmp_path, capsys):
    assert main(["build", "--logs", str(tiny_logs), "--out", str(tmp_path / "work"), "--valid-days", "30", "--test-days", "30"]) == 2
    line = error_line(capsys)
    assert re.fullmatch(rf"dropdown-rank build: error: {re.escape(str(tiny_logs / 'impressions.parquet'))}: the impressions cover "
                        r"(\d+) day\(s\): too few for 30 valid and 30 test day\(s\).* \(at least (\d+) days are needed\)", line), line
    covered, needed = map(int, re.findall(r"cover (\d+) day.*at least (\d+) days", line)[0])
    assert covered < needed and needed >= 61
    assert not (tmp_path / "work" / "build.json").exists()


def test_train_days_that_leave_no_training_rows(tiny_logs, tmp_path, capsys):
    args = make_parser().parse_args(["build", "--logs", "L", "--out", "W"])
    assert main(["build", "--logs", str(tiny_logs), "--out", str(tmp_path / "w"), "--train-days", str(args.warmup_days)]) == 2
    assert error_line(capsys).startswith(f"dropdown-rank build: error: --train-days {args.warmup_days} leaves no training rows")


def write_logs(directory, events, impressions):
    directory.mkdir()
    events.to_csv(directory / "events.csv", index=False)
    impressions.to_csv(directory / "impressions.csv", index=False)
    return directory


EVENTS = pd.DataFrame({"user_id": ["u"], "ts": [1767225600], "kind": ["query"], "id": ["q"]})
IMPRESSIONS = pd.DataFrame({"request_id": ["r"], "user_id": ["u"], "ts": [1767225600], "prefix": [""], "candidate": ["q"],
                            "position": [0], "clicked": [0]})


def test_impressions_with_no_rows(tmp_path, capsys):
    logs = write_logs(tmp_path / "logs", EVENTS, IMPRESSIONS.head(0))
    assert main(["build", "--logs", str(logs), "--out", str(tmp_path / "work")]) == 2
    assert error_line(capsys).startswith(f"dropdown-rank build: error: {logs / 'impressions.csv'}: no rows")


def test_every_row_skipped_says_nothing_is_left_and_why(tmp_path, capsys):
    logs = write_logs(tmp_path / "logs", EVENTS, IMPRESSIONS.assign(clicked=[7]))
    assert main(["build", "--logs", str(logs), "--out", str(tmp_path / "work"), "--bad-rows", "skip"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"dropdown-rank build: error: {logs / 'impressions.csv'}: every row was skipped, nothing is left")
    assert "1 clicked: value outside {0, 1}" in line


def test_export_from_an_unfinished_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "out")]) == 2
    assert error_line(capsys).startswith(f"dropdown-rank export: error: {run} is not a finished run: config.json")
    (run / "config.json").write_text("{}")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "out")]) == 2
    assert error_line(capsys).startswith(f"dropdown-rank export: error: {run} is not a finished run: weights")
    assert main(["export", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert error_line(capsys) == f"dropdown-rank export: error: {tmp_path / 'missing'}: no such run directory"
    assert not (tmp_path / "out").exists()


def test_a_value_error_outside_dropdown_rank_keeps_its_traceback(monkeypatch):
    import numpy as np

    from dropdown_rank import cli

    def broken(args):
        np.zeros(2).reshape(3)  # a bug, not a user mistake

    monkeypatch.setattr(cli, "cmd_synth", broken)
    with pytest.raises(ValueError, match="cannot reshape"):
        main(["synth", "--out", "x"])


# -- progress bars ----------------------------------------------------------------------------------------------

def test_training_dataset_knows_its_length_so_the_progress_bar_has_a_total(tiny_work, tmp_path, capsys, monkeypatch):
    import sys

    import tensorflow as tf

    from dropdown_rank.dataset import make_dataset
    from dropdown_rank.train import fit_verbosity

    for batch_size, window_rows, shuffle in ((512, 131072, True), (100, 1000, True), (333, 700, False)):
        dataset = make_dataset(tiny_work / "samples", "train", 5, batch_size=batch_size, shuffle=shuffle, window_rows=window_rows)
        assert int(tf.data.experimental.cardinality(dataset)) == sum(1 for _ in dataset)
    # A log file gets one line per epoch; a terminal gets the live bar (not under parameter servers, as in Keras).
    assert fit_verbosity() == 2 and fit_verbosity(0) == 0
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert fit_verbosity() == 1 and fit_verbosity("auto", "parameter-server") == 2
    assert main(["train", "--data", str(tiny_work), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "512"]) == 0
    out = capsys.readouterr().out
    steps = int(tf.data.experimental.cardinality(make_dataset(tiny_work / "samples", "train", 5, batch_size=512)))
    assert "Unknown" not in out
    assert f"1/{steps} [" in out and f"{steps}/{steps} [" in out


def test_a_split_without_samples_is_refused_by_the_build_and_named_in_an_older_work_directory(tmp_path, capsys):
    day, t0 = 86400, 1767225600
    events = [("u", t0 + d * day, kind, f"{kind}{d}") for d in range(5) for kind in ("query", "item")]
    impressions = [(f"r{d}", "u", t0 + d * day + 30, "q", f"q{d % 2}", 0, d % 2) for d in (0, 1, 2, 4)]  # day 3: none
    logs = tmp_path / "logs"
    logs.mkdir()
    pd.DataFrame(events, columns=["user_id", "ts", "kind", "id"]).to_csv(logs / "events.csv", index=False)
    pd.DataFrame(impressions, columns=["request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked"]).to_csv(
        logs / "impressions.csv", index=False)
    assert main(["build", "--logs", str(logs), "--out", str(tmp_path / "work"), "--valid-days", "1", "--test-days", "1",
                 "--warmup-days", "0"]) == 2
    assert error_line(capsys) == (f"dropdown-rank build: error: {logs / 'impressions.csv'}: the validation days (2026-01-04 to "
                                  "2026-01-04) hold no impressions; choose --valid-days/--test-days that cover days with impressions")
    assert not (tmp_path / "work").exists()
    # a work directory built before the build refused it: training names the empty split, not a missing build
    (tmp_path / "samples" / "valid").mkdir(parents=True)
    with pytest.raises(ValueError, match="no valid samples: the build's valid period holds no impressions"):
        shard_files(tmp_path / "samples", "valid")


def test_a_log_without_item_clicks_is_refused_at_build(tmp_path, capsys):
    t0 = 1767225600
    logs = tmp_path / "logs"
    logs.mkdir()
    pd.DataFrame([("u", t0 + d * 86400, "query", "q") for d in range(4)], columns=["user_id", "ts", "kind", "id"]).to_csv(
        logs / "events.csv", index=False)
    pd.DataFrame([(f"r{d}", "u", t0 + d * 86400 + 9, "q", "q", 0, 1) for d in range(4)],
                 columns=["request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked"]).to_csv(logs / "impressions.csv", index=False)
    assert main(["build", "--logs", str(logs), "--out", str(tmp_path / "work"), "--valid-days", "1", "--test-days", "1",
                 "--warmup-days", "0"]) == 2
    assert "has no items: the rankers embed users, queries and items" in error_line(capsys)
    assert not (tmp_path / "work").exists()


def test_synth_keeps_the_scales_life_cycle_unless_told_otherwise(tmp_path, monkeypatch):
    from dropdown_rank.cli import SCALE_CHOICES
    from dropdown_rank.logs import synth

    assert SCALE_CHOICES == tuple(synth.SCALES)
    calls = []
    monkeypatch.setattr(synth, "write_world", lambda out, **kwargs: calls.append(kwargs))
    assert main(["synth", "--out", str(tmp_path)]) == 0
    assert main(["synth", "--out", str(tmp_path), "--scale", "static", "--birth-share", "0.1"]) == 0
    assert calls == [{"scale": "default", "seed": 0}, {"scale": "static", "seed": 0, "birth_share": 0.1}]
    assert synth.SCALES["default"].lifecycle and not synth.SCALES["static"].lifecycle


def test_the_position_towers_learning_rate_is_a_pal_option(tmp_path, capsys):
    from dropdown_rank.cli import _model_config

    args = make_parser().parse_args(["train", "--data", "w", "--out", "r", "--position-bias", "--position-lr-multiplier", "5"])
    assert _model_config(args).position_lr_multiplier == 5.0 and _model_config(args).name == "base_20+pal5x"
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--position-lr-multiplier", "5"]) == 2
    assert "give it with --position-bias" in capsys.readouterr().err


def test_feature_choices_are_the_model_feature_groups_and_none_means_no_features():
    from dropdown_rank.cli import FEATURE_CHOICES, _model_config
    from dropdown_rank.layers.request_features import FEATURE_GROUPS

    assert FEATURE_CHOICES == FEATURE_GROUPS + ("none",)
    args = make_parser().parse_args(["train", "--data", "w", "--out", "r", "--features", "none"])
    assert _model_config(args).features == () and _model_config(args).name == "base_20-nofeat"
    args = make_parser().parse_args(["train", "--data", "w", "--out", "r", "--features", "ctr", "personal"])
    assert _model_config(args).name == "base_20-noexact_match-nopopularity-noprefix"
    assert _model_config(make_parser().parse_args(["train", "--data", "w", "--out", "r"])).name == "base_20"


def test_optimizer_option_reaches_the_train_config():
    from dropdown_rank.cli import _train_config
    from dropdown_rank.train import OPTIMIZERS

    parse = lambda *extra: make_parser().parse_args(["train", "--data", "w", "--out", "r", *extra])
    assert _train_config(parse()).optimizer == "lazy_adam"
    assert _train_config(parse("--optimizer", "adam")).optimizer == "adam"
    action = next(a for a in make_parser()._subparsers._group_actions[0].choices["train"]._actions if a.dest == "optimizer")
    assert tuple(action.choices) == OPTIMIZERS


def test_q2q_source_options_reach_the_build_and_beam_refuses_item_paths(tiny_logs, tmp_path, capsys):
    from dropdown_rank.cli import _build_config

    graph = _build_config(make_parser().parse_args(["build", "--logs", "l", "--out", "w"])).graph
    assert graph.q2q_source == "session" and graph.max_item_queries == 50
    assert main(["build", "--logs", str(tiny_logs), "--out", str(tmp_path / "work"), "--valid-days", "2", "--test-days", "2",
                 "--q2q-source", "both", "--max-item-queries", "7"]) == 0
    build = json.loads((tmp_path / "work" / "build.json").read_text())
    assert build["config"]["graph"]["q2q_source"] == "both" and build["config"]["graph"]["max_item_queries"] == 7
    stats = json.loads((tmp_path / "work" / "stats.json").read_text())["graph"]
    assert stats["q2q"]["q2q_source"] == "both" and stats["q2q"]["hub_items_skipped"] > 0 and "q2q_source" not in stats["i2i"]
    assert "hub items (over 7 queries) skipped" in capsys.readouterr().out
    for source in ("item", "both"):
        assert main(["build", "--logs", str(tiny_logs), "--out", str(tmp_path / "beam"), "--engine", "beam",
                     "--q2q-source", source]) == 2
        assert error_line(capsys) == (f"dropdown-rank build: error: --q2q-source {source}: --q2q-source item/both is built by "
                                      "the in-memory engine only; use --engine memory, or --q2q-source session with --engine beam")
    assert not (tmp_path / "beam").exists()
    assert main(["build", "--logs", str(tiny_logs), "--out", str(tmp_path / "w1"), "--q2q-source", "item",
                 "--max-item-queries", "1"]) == 2
    assert "max_item_queries must be at least 2" in error_line(capsys)
    with pytest.raises(SystemExit):
        main(["build", "--logs", "l", "--out", "w", "--q2q-source", "items"])
    assert "invalid choice: 'items'" in error_line(capsys)


def test_neighbor_rank_options_reach_the_build_and_beam_refuses_random_walks(tiny_logs, tmp_path, capsys):
    from dropdown_rank.cli import _build_config

    graph = _build_config(make_parser().parse_args(["build", "--logs", "l", "--out", "w"])).graph
    assert (graph.neighbor_rank, graph.walk_length, graph.walk_keep) == ("cooccurrence", 3, 50)
    assert main(["build", "--logs", str(tiny_logs), "--out", str(tmp_path / "work"), "--valid-days", "2", "--test-days", "2",
                 "--neighbor-rank", "random_walk", "--walk-length", "2", "--walk-keep", "20"]) == 0
    build = json.loads((tmp_path / "work" / "build.json").read_text())
    assert {k: build["config"]["graph"][k] for k in ("neighbor_rank", "walk_length", "walk_keep")} == \
        {"neighbor_rank": "random_walk", "walk_length": 2, "walk_keep": 20}
    stats = json.loads((tmp_path / "work" / "stats.json").read_text())["graph"]
    assert stats["q2q"]["neighbor_rank"] == "random_walk" and stats["i2i"]["walk_length"] == 2
    assert stats["q2q"]["multi_hop_neighbors"] > 0
    assert "ranked by 2-step random-walk visits (top 20 kept per step)" in capsys.readouterr().out
    assert main(["build", "--logs", str(tiny_logs), "--out", str(tmp_path / "beam"), "--engine", "beam",
                 "--neighbor-rank", "random_walk"]) == 2
    assert error_line(capsys) == ("dropdown-rank build: error: --neighbor-rank random_walk: random-walk neighbors are built by "
                                  "the in-memory engine only; use --engine memory, or --neighbor-rank cooccurrence with --engine beam")
    assert not (tmp_path / "beam").exists()
    assert main(["build", "--logs", str(tiny_logs), "--out", str(tmp_path / "w1"), "--neighbor-rank", "random_walk",
                 "--walk-keep", "5"]) == 2
    assert "walk_keep 5 < neighbors 10" in error_line(capsys)
    for argv, message in ((["--walk-length", "0"], "argument --walk-length: must be a positive integer, not 0"),
                          (["--neighbor-rank", "pagerank"], "argument --neighbor-rank: invalid choice: 'pagerank'")):
        with pytest.raises(SystemExit):
            main(["build", "--logs", "l", "--out", "w", *argv])
        assert message in error_line(capsys)

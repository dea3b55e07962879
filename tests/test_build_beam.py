"""The Beam build (``--engine beam``, on the FnApiRunner in this process) writes the in-memory build's work
directory: the same vocabularies, every daily snapshot's arrays, the same samples in the same shards, the same
validation counts; and bad input stops it with the in-memory validation's error."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from dropdown_rank.beam import build_beam
from dropdown_rank.build import BuildConfig, build
from dropdown_rank.workdir import Work
from dropdown_rank.graph import GraphConfig
from dropdown_rank.logs.schema import SchemaError
from dropdown_rank.features import record_path
from dropdown_rank.samples import SampleConfig
from dropdown_rank.workdir import shard_files
from dropdown_rank.split import SplitConfig

CONFIG = BuildConfig(split=SplitConfig(valid_days=2, test_days=2))
BEAM = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]
T0 = 1767225600  # 2026-01-01


def quiet(*_args, **_kwargs):
    pass


def run_beam(logs, out, config=CONFIG, *options):
    return build_beam(logs, out, config, pipeline_args=BEAM + list(options), progress=quiet)


def assert_same_work(memory_dir, beam_dir):
    memory, beam = Work.open(memory_dir), Work.open(beam_dir)
    assert beam.split == memory.split and beam.config == memory.config
    meta = [json.loads((d / "build.json").read_text()) for d in (memory_dir, beam_dir)]
    assert sorted(meta[0]) == sorted(meta[1]) and len(meta[1]["fingerprint"]) == 64
    for name in ("users", "queries", "items"):
        pd.testing.assert_frame_equal(pd.read_parquet(memory_dir / "vocab" / f"{name}.parquet"),
                                      pd.read_parquet(beam_dir / "vocab" / f"{name}.parquet"))
    for relation in ("q2q", "i2i"):
        a, b = memory.daily_tables(relation), beam.daily_tables(relation)
        assert np.array_equal(a.snapshot_ts, b.snapshot_ts) and len(a) > 1
        for field in ("node", "day", "ids", "weight", "last_ts", "count"):  # every row version, so every day
            x, y = getattr(a, field), getattr(b, field)
            assert x.dtype == y.dtype and np.array_equal(x, y), (relation, field)
        for day in range(len(a)):
            assert np.array_equal(a[day].ids, b[day].ids) and np.array_equal(a[day].last_ts, b[day].last_ts), (relation, day)
    for split in ("train", "valid", "test"):
        files = [shard_files(d / "samples", split) for d in (memory_dir, beam_dir)]
        assert [f.name for f in files[0]] == [f.name for f in files[1]]
        tables = [pa.concat_tables([pq.read_table(f) for f in fs]) for fs in files]
        assert tables[0].schema == tables[1].schema
        rows = [t.to_pandas().sort_values(["request_id", "candidate"], ignore_index=True) for t in tables]
        for frame in rows:
            for column in ("query_history", "query_history_ts", "item_history", "item_history_ts"):
                frame[column] = frame[column].map(tuple)
        pd.testing.assert_frame_equal(rows[0], rows[1])  # the same rows ...
        assert all(pq.read_table(x).equals(pq.read_table(y)) for x, y in zip(*files))  # ... in the same shards and order
        records = [[list(tf.data.TFRecordDataset(str(record_path(f)), compression_type="GZIP").as_numpy_iterator()) for f in fs]
                   for fs in files]
        assert records[0] == records[1] and sum(map(len, records[0])) == len(rows[0])  # and the same training records
    stats = [json.loads((d / "stats.json").read_text()) for d in (memory_dir, beam_dir)]
    for key in ("validation", "samples", "splits", "windows", "vocab", "graph", "events", "impressions_outside_periods", "impressions_graph_warmup"):
        assert stats[0][key] == stats[1][key], key
    assert stats[1]["engine"] == "beam" and not (beam_dir / ".beam").exists()


def test_beam_build_equals_the_in_memory_build(tiny_logs, tiny_work, tmp_path):
    run_beam(tiny_logs, tmp_path / "beam", CONFIG, "--user_buckets=3")
    assert_same_work(tiny_work, tmp_path / "beam")


def test_several_files_csv_chunks_skipped_rows_and_other_settings(tiny_logs, tmp_path):
    """A directory of Parquet files and a CSV read in chunks, bad rows skipped and counted, min count 2, window
    co-occurrence and small shards: still the in-memory build, file for file."""
    events = pd.read_parquet(tiny_logs / "events.parquet")
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    events.loc[[5, 4000, 9000], "ts"] = -1  # negative times, in different chunks
    events.loc[[7, 12000], "kind"] = "click"
    events = pd.concat([events, events.iloc[[100, 15000]]], ignore_index=True)  # exact duplicates, across files
    impressions = impressions.astype({"ts": str})
    impressions.loc[3, "ts"] = "yesterday"
    conflict = impressions.iloc[[10]].assign(clicked=1 - impressions["clicked"].iloc[10])  # the same candidate, another label
    impressions = pd.concat([impressions, conflict, impressions.iloc[[20]]], ignore_index=True)
    logs = tmp_path / "logs"
    (logs / "events").mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(events)), 3)):
        pq.write_table(pa.Table.from_pandas(events.iloc[part], preserve_index=False), logs / "events" / f"part-{i}.parquet",
                       row_group_size=2500)
    impressions.to_csv(logs / "impressions.csv", index=False)
    config = BuildConfig(split=SplitConfig(valid_days=2, test_days=2), graph=GraphConfig(mode="window", neighbors=5),
                         samples=SampleConfig(shard_rows=1500), min_count=2, bad_rows="skip")
    build(logs, tmp_path / "memory", config, progress=quiet, progress_bar=False)
    run_beam(logs, tmp_path / "beam", config, "--user_buckets=4", "--chunk_rows=3000")
    assert_same_work(tmp_path / "memory", tmp_path / "beam")
    validation = json.loads((tmp_path / "beam" / "stats.json").read_text())["validation"]
    assert validation[0]["skipped"] == {"ts: negative timestamp: a time before 1970 (want epoch seconds from 1990 to 2100)": 3,
                                        "kind: kind must be one of query, item": 2, "exact duplicate row": 5}
    assert validation[1]["skipped"]["exact duplicate row"] == 1
    assert len(shard_files(tmp_path / "beam" / "samples", "train")) > 1


def small_logs(tmp_path, events=None, impressions=None, fmt="csv"):
    """A few rows; ``events`` and ``impressions`` replace the defaults."""
    if events is None:
        events = pd.DataFrame({"user_id": [f"u{i % 7}" for i in range(60)], "ts": [str(T0 + 60 * i) for i in range(60)],
                               "kind": ["query", "item"] * 30, "id": [f"x{i % 11}" for i in range(60)]})
    if impressions is None:
        impressions = pd.DataFrame({"request_id": [f"r{i // 3}" for i in range(30)], "user_id": [f"u{(i // 3) % 7}" for i in range(30)],
                                    "ts": [T0 + 30 * (i // 3) for i in range(30)], "prefix": "x",
                                    "candidate": [f"x{i % 3}" for i in range(30)], "position": [i % 3 for i in range(30)],
                                    "clicked": [int(i % 5 == 0) for i in range(30)]})
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    for name, frame in (("events", events), ("impressions", impressions)):
        frame.to_csv(logs / f"{name}.csv", index=False) if fmt == "csv" else frame.to_parquet(logs / f"{name}.parquet", index=False)
    return logs


def same_error(logs, tmp_path, *options):
    with pytest.raises(SchemaError) as memory:
        build(logs, tmp_path / "memory", CONFIG, progress=quiet, progress_bar=False)
    with pytest.raises(SchemaError) as beam:
        run_beam(logs, tmp_path / "beam", CONFIG, *options)
    assert str(beam.value) == str(memory.value)
    return str(beam.value)


@pytest.mark.parametrize("table,fmt", [("events", "csv"), ("impressions", "csv"), ("events", "parquet")])
def test_a_zero_byte_file_is_the_same_clear_error_in_both_engines(tmp_path, table, fmt):
    logs = small_logs(tmp_path, fmt=fmt)
    (logs / f"{table}.{fmt}").write_bytes(b"")
    message = same_error(logs, tmp_path)
    assert message.startswith(f"{logs / f'{table}.{fmt}'}: the file is empty (0 bytes, not even a header row)"), message


def test_row_errors_over_several_chunks_name_the_file_column_and_first_rows(tmp_path):
    events = small_logs(tmp_path).joinpath("events.csv")
    frame = pd.read_csv(events, dtype=str)
    frame.loc[3, "kind"] = "click"  # a later check than ts: the ts error is the one reported
    frame.loc[[9, 22, 31, 40, 47, 52, 58], "ts"] = ["soon", "x", "y", "z", "w", "v", "u"]  # chunks of 10 rows
    frame.to_csv(events, index=False)
    message = same_error(events.parent, tmp_path, "--chunk_rows=10", "--user_buckets=2")
    assert message.endswith("column 'ts': unparseable timestamp (want epoch seconds or ISO-8601): 7 bad row(s); first: "
                            "row 10 ('soon'), row 23 ('x'), row 32 ('y'), row 41 ('z'), row 48 ('w') (+2 more)")


def test_errors_across_rows_conflicts_before_request_checks(tmp_path):
    logs = small_logs(tmp_path, fmt="parquet")
    impressions = pd.read_parquet(logs / "impressions.parquet")
    impressions.loc[4, "user_id"] = "u6"  # request r1 gets two users ...
    conflict = impressions.iloc[[25, 7]].assign(clicked=1)  # ... and two candidates are shown twice, differently
    pd.concat([impressions, conflict], ignore_index=True).to_parquet(logs / "impressions.parquet", index=False)
    message = same_error(logs, tmp_path, "--user_buckets=3")
    assert "column 'candidate': the same (request_id, candidate) appears in rows that differ elsewhere: 2 bad row(s)" in message


def test_missing_column_and_the_command_line(tmp_path, capsys):
    from dropdown_rank.cli import main

    logs = small_logs(tmp_path)
    pd.read_csv(logs / "impressions.csv").drop(columns="position").to_csv(logs / "impressions.csv", index=False)
    message = same_error(logs, tmp_path)
    assert "impressions.csv, column 'position': missing column" in message
    assert main(["build", "--logs", str(logs), "--out", str(tmp_path / "cli"), "--engine", "beam", "--", *BEAM]) == 2
    assert capsys.readouterr().err.strip() == f"dropdown-rank build: error: {message}"


def test_a_table_of_several_files_names_the_file_or_the_directory(tmp_path):
    logs = small_logs(tmp_path)
    impressions = pd.read_csv(logs / "impressions.csv")
    (logs / "impressions.csv").unlink()
    (logs / "impressions").mkdir()
    impressions.iloc[:15].to_csv(logs / "impressions" / "a.csv", index=False)
    conflict = impressions.iloc[[2]].assign(clicked=1 - impressions["clicked"].iloc[2])
    second = pd.concat([impressions.iloc[15:], conflict]).astype({"position": str})
    second.to_parquet(logs / "impressions" / "b.parquet", index=False)
    message = same_error(logs, tmp_path / "across", "--user_buckets=2")  # rows numbered across the files
    assert message.endswith("impressions, column 'candidate': the same (request_id, candidate) appears in rows that differ "
                            "elsewhere: 2 bad row(s); first: row 3 ('x2'), row 31 ('x2')")
    second.iloc[3, second.columns.get_loc("position")] = "x"
    second.to_parquet(logs / "impressions" / "b.parquet", index=False)
    message = same_error(logs, tmp_path / "row", "--user_buckets=2")  # a row error: the file and its own row
    assert message.endswith("impressions/b.parquet, column 'position': wrong type: expected an integer: 1 bad row(s); "
                            "first: row 4 ('x')")


def test_parquet_row_groups_read_as_the_whole_file(tmp_path):
    """A row group without nulls is converted like the whole file, whose integer/boolean columns with nulls pandas
    reads as float/object: validation sees the same values either way (an id 5 reads 5.0, as in the whole file)."""
    from dropdown_rank.logs.schema import file_chunks, read_chunks, read_table

    frame = pd.DataFrame({"user_id": pa.array([1, 2, None, 4, 5, 6], pa.int64()), "flag": pa.array([True, False, True, None, True, True]),
                          "id": ["a", "b", "c", "d", "e", "f"]})
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({c: frame[c] for c in frame}), path, row_group_size=2)
    pieces = file_chunks(path, chunk_rows=2)
    assert len(pieces) == 3
    chunks = [chunk for piece in pieces for _, chunk in read_chunks(piece, 2)]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), read_table(path))


def test_the_build_steps_before_writing_shards_run_without_tensorflow():
    """TensorFlow (about 550 MB per process) loads only in the step that writes the training records."""
    code = ("import sys, dropdown_rank, dropdown_rank.build, dropdown_rank.beam.pipeline, dropdown_rank.beam.validate\n"
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]

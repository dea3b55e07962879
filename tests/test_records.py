"""The sample schema and the TFRecord codec: every field round-trips, histories are cut and padded, files shard."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from dropdown_rank.dataset import FEATURES, SampleStream
from dropdown_rank.features import ARROW_SCHEMA, BY_NAME, MODEL_INPUTS, TRAINING_FIELDS
from dropdown_rank.model import SIGNATURE
from dropdown_rank.features import record_path
from dropdown_rank.records import decode, encode
from dropdown_rank.samples import write_shard
from dropdown_rank.workdir import read_samples, record_files, shard_files


def sample_rows() -> pa.Table:
    """Three rows with the awkward cases: no history, multi-byte and control characters, a history longer than L."""
    columns = {
        "request_id": ["r1", "r1", "r2"],
        "user_id": ["u1", "u1", "ü2"],
        "request_ts": [1_767_225_600, 1_767_225_600, 1_767_300_000],
        "candidate": ["red shoes", "日本 靴", "tab\there"],
        "prefix": ["re", "", "ta"],
        "position": [0, 1, 0],
        "label": [1, 0, 0],
        "query_history": [[], ["a", "line\nbreak", ""], [f"q{i}" for i in range(7)]],
        "query_history_ts": [[], [5, 4, 3], list(range(70, 0, -10))],
        "item_history": [["sku1"], [], ["i"] * 7],
        "item_history_ts": [[9], [], [1] * 7],
        "activity": [3, 3, 40],
        "candidate_pv": [10, 0, 2],
        "user_candidate_count": [0, 2, 2**31 - 1],
        "user_candidate_age": [-1, 86_400, 5],
        "candidate_query_count": [1, 0, 7],
        "candidate_impressions": [4, 0, 9],
        "candidate_clicks": [1, 0, 9],
    }
    return pa.table(columns, schema=ARROW_SCHEMA)


SERVING_CONTRACT = {  # README, Serving: what an exported model takes; changing it breaks every client
    "user_id": ("string", 1), "request_ts": ("int64", 1), "candidate": ("string", 1), "prefix": ("string", 1),
    "query_history": ("string", 2), "query_history_ts": ("int64", 2), "item_history": ("string", 2), "item_history_ts": ("int64", 2),
    "user_candidate_count": ("int64", 1), "user_candidate_age": ("int64", 1), "candidate_query_count": ("int64", 1),
    "candidate_impressions": ("int64", 1), "candidate_clicks": ("int64", 1),
}


def test_the_schema_keeps_the_serving_contract_and_training_reads_no_evaluation_field():
    assert {name: (spec.dtype.name, spec.shape.rank) for name, spec in SIGNATURE.items()} == SERVING_CONTRACT
    assert sorted(FEATURES) == sorted([*SERVING_CONTRACT, "position"])
    assert sorted(TRAINING_FIELDS) == sorted([*SERVING_CONTRACT, "position", "label"])
    assert ARROW_SCHEMA.names == ["request_id", "user_id", "request_ts", "candidate", "prefix", "position", "label", "query_history",
                                  "query_history_ts", "item_history", "item_history_ts", "activity", "candidate_pv",
                                  "user_candidate_count", "user_candidate_age", "candidate_query_count", "candidate_impressions",
                                  "candidate_clicks"]


@pytest.mark.parametrize("seq_len", [2, 5])
def test_every_training_field_round_trips_and_histories_are_cut_and_padded(seq_len):
    table = sample_rows()
    features, label = decode(encode(table), seq_len)
    assert set(features) == set(FEATURES)
    np.testing.assert_array_equal(label.numpy(), [1.0, 0.0, 0.0])
    assert label.dtype == tf.float32 and features["position"].dtype == tf.int32
    for name in FEATURES:
        field, got = BY_NAME[name], features[name].numpy()
        assert features[name].dtype == tf.as_dtype(field.dtype), name
        stored = table.column(name).to_pylist()
        if field.history:
            assert got.shape == (3, seq_len)
            for row, values in enumerate(stored):
                kept = values[:seq_len]
                expected = kept + [field.padding] * (seq_len - len(kept))
                assert [v.decode() if isinstance(v, bytes) else int(v) for v in got[row]] == expected, (name, row)
        else:
            assert [v.decode() if isinstance(v, bytes) else v for v in got.tolist()] == stored, name


def test_a_sliced_table_encodes_only_its_rows():
    table = sample_rows().slice(1, 2)
    features, _ = decode(encode(table), 3)
    assert [c.decode() for c in features["candidate"].numpy()] == ["日本 靴", "tab\there"]
    assert [q.decode() for q in features["query_history"].numpy()[0]] == ["a", "line\nbreak", ""]
    assert features["user_id"].numpy().tolist() == ["u1".encode(), "ü2".encode()]


def test_other_arrow_types_are_cast_and_nulls_refused():
    table = sample_rows()
    wide = table.set_column(table.schema.get_field_index("candidate"), "candidate", table.column("candidate").cast(pa.large_string()))
    wide = wide.set_column(wide.schema.get_field_index("user_id"), "user_id", table.column("user_id").dictionary_encode())
    features, _ = decode(encode(wide), 3)
    assert [c.decode() for c in features["candidate"].numpy()] == ["red shoes", "日本 靴", "tab\there"]
    assert [u.decode() for u in features["user_id"].numpy()] == ["u1", "u1", "ü2"]
    for name, column, nulls in (("prefix", pa.array(["a", None, "c"]), 1),
                                ("query_history", pa.array([["a"], [None], []], pa.list_(pa.string())), 1),
                                ("item_history", pa.array([["a"], None, []], pa.list_(pa.string())), 1),
                                ("query_history", pa.array([None, [None], []], pa.list_(pa.string())), 2)):
        broken = table.set_column(table.schema.get_field_index(name), name, column)
        with pytest.raises(ValueError, match=f"sample column '{name}' holds {nulls} null value"):
            encode(broken)


def test_a_shard_encoded_in_slices_writes_the_same_records(tmp_path, monkeypatch):
    import dropdown_rank.records as records

    rows = pa.concat_tables([sample_rows()] * 5)  # 15 rows
    records.write_records(rows, tmp_path / "whole.tfrecord.gz")
    monkeypatch.setattr(records, "ENCODE_ROWS", 4)  # slices of 4, 4, 4, 3 rows
    records.write_records(rows, tmp_path / "sliced.tfrecord.gz")
    read = lambda name: list(tf.data.TFRecordDataset(str(tmp_path / name), compression_type="GZIP").as_numpy_iterator())
    assert len(read("sliced.tfrecord.gz")) == 15 and read("sliced.tfrecord.gz") == read("whole.tfrecord.gz")
    assert read("whole.tfrecord.gz")[3] == encode(sample_rows())[0].numpy()


def test_records_are_standard_tf_examples():
    example = tf.train.Example.FromString(encode(sample_rows())[1].numpy())
    feature = example.features.feature
    assert set(feature) == set(TRAINING_FIELDS)
    assert list(feature["query_history"].bytes_list.value) == [b"a", b"line\nbreak", b""]
    assert list(feature["user_candidate_age"].int64_list.value) == [86_400]
    assert list(feature["label"].float_list.value) == [0.0]


def split_into_shards(tiny_work, out, rows_per_shard=700):
    """The tiny world's training shard as several files in ``out`` (the tiny build has one file per split)."""
    frame = pq.read_table(shard_files(tiny_work / "samples", "train")[0])
    for shard, lo in enumerate(range(0, frame.num_rows, rows_per_shard)):
        write_shard(frame.slice(lo, rows_per_shard), out, "train", shard)
    return frame.num_rows


def row_keys(stream):
    keys = [np.char.add(np.char.add(f["user_id"].numpy().astype(str), f["request_ts"].numpy().astype(str)),
                        f["candidate"].numpy().astype(str)) for f, _ in stream.dataset()]
    return np.concatenate(keys)


def test_worker_shards_split_the_files_and_cover_every_row_once(tiny_work, tmp_path):
    rows = split_into_shards(tiny_work, tmp_path)
    assert len(record_files(tmp_path, "train")) >= 4
    every = row_keys(SampleStream(tmp_path, "train", 5, batch_size=256))
    shards = [SampleStream(tmp_path, "train", 5, batch_size=256, shuffle=True, seed=3, num_shards=2, shard_index=i) for i in (0, 1)]
    keys = [row_keys(s) for s in shards]
    assert [len(k) for k in keys] == [s.rows for s in shards] and sum(s.rows for s in shards) == rows == len(every)
    assert not set(keys[0]) & set(keys[1])
    np.testing.assert_array_equal(np.sort(np.concatenate(keys)), np.sort(every))
    # the unshuffled stream reads the shards in order: read_samples order
    frame = read_samples(tmp_path, "train", columns=["user_id", "request_ts", "candidate"])
    np.testing.assert_array_equal(every, (frame["user_id"] + frame["request_ts"].astype(str) + frame["candidate"]).to_numpy().astype(str))


def test_each_epoch_reshuffles_and_an_epoch_is_reproducible(tiny_work, tmp_path):
    split_into_shards(tiny_work, tmp_path)
    stream = SampleStream(tmp_path, "train", 5, batch_size=256, shuffle=True, seed=3, window_rows=1000)
    first, second = row_keys(stream), row_keys(stream)
    assert not np.array_equal(first, second)
    stream.set_epoch(1)  # a resumed run sets the epoch from Keras
    np.testing.assert_array_equal(row_keys(stream), second)
    np.testing.assert_array_equal(np.sort(first), np.sort(second))


def test_a_stream_of_epochs_gives_each_epoch_its_own_pass_of_fixed_steps(tiny_work, tmp_path):
    """What a distribution strategy reads (``passes``): epoch e is e's pass, so a resumed run reads what an uninterrupted one did."""
    split_into_shards(tiny_work, tmp_path)
    shard = SampleStream(tmp_path, "train", 5, batch_size=128, shuffle=True, seed=3, window_rows=1000, num_shards=2, shard_index=1)
    steps = shard.batches + 3  # this worker's shard is short of the epoch's steps: its pass repeats
    keys = lambda dataset: [np.char.add(f["user_id"].numpy().astype(str), f["request_ts"].numpy().astype(str)) for f, _ in dataset]
    whole, resumed = keys(shard.passes(0, 3, steps)), keys(shard.passes(2, 3, steps))
    assert len(whole) == 3 * steps and len(resumed) == steps
    for got, wanted in zip(resumed, whole[2 * steps:]):
        np.testing.assert_array_equal(got, wanted)
    shard.set_epoch(2)
    epoch = np.concatenate(keys(shard.dataset()))
    np.testing.assert_array_equal(np.concatenate(resumed)[:len(epoch)], epoch)  # the epoch's own pass, then its start again
    np.testing.assert_array_equal(np.concatenate(resumed)[len(epoch):], epoch[:len(np.concatenate(resumed)) - len(epoch)])
    assert not np.array_equal(np.concatenate(whole[:steps])[:len(epoch)], epoch)  # epoch 0 is shuffled otherwise
    cut = keys(shard.passes(2, 3, 2))  # a long shard's pass is cut to the epoch's steps
    assert len(cut) == 2
    np.testing.assert_array_equal(np.concatenate(cut), epoch[:len(np.concatenate(cut))])


def test_any_path_and_shard_arguments_that_cannot_work_are_refused(tiny_work, tmp_path):
    samples = tmp_path / "données é" / "samples"
    rows = split_into_shards(tiny_work, samples)
    assert len(row_keys(SampleStream(samples, "train", 5, batch_size=256, shuffle=True))) == rows
    files = len(record_files(samples, "train"))
    with pytest.raises(ValueError, match=f"train has {files} file\\(s\\) for {files + 1} workers"):
        SampleStream(samples, "train", 5, num_shards=files + 1, shard_index=0)
    with pytest.raises(ValueError, match=r"shard_index 2 is not in \[0, 2\)"):
        SampleStream(samples, "train", 5, num_shards=2, shard_index=2)


def test_a_work_directory_built_before_records_gets_a_clear_error(tiny_work, tmp_path):
    split_into_shards(tiny_work, tmp_path)
    record_path(shard_files(tmp_path, "train")[1]).unlink()
    with pytest.raises(FileNotFoundError, match=r"part-00001.tfrecord.gz: no training records .*rebuild it"):
        SampleStream(tmp_path, "train", 5)

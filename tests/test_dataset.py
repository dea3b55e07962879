"""The tf.data pipeline: dense padded features, L as a prefix of the stored 50, seeded shuffling."""
import numpy as np

from dropdown_rank.dataset import FEATURES, make_dataset
from dropdown_rank.workdir import read_samples


def test_unshuffled_batches_follow_read_samples_order_and_pad(tiny_work):
    frame = read_samples(tiny_work / "samples", "valid")
    batches = list(make_dataset(tiny_work / "samples", "valid", seq_len=20, batch_size=256))
    features = {k: np.concatenate([b[0][k].numpy() for b in batches]) for k in FEATURES}
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert features["query_history"].shape == (len(frame), 20)
    np.testing.assert_array_equal(labels, frame["label"].to_numpy(np.float32))
    for row in (0, len(frame) // 2, len(frame) - 1):
        stored = list(frame["query_history"].iloc[row])[:20]
        got = [s.decode() for s in features["query_history"][row]]
        assert got == stored + [""] * (20 - len(stored))
        ts = features["query_history_ts"][row]
        assert (ts[len(stored):] == 0).all() and list(ts[: len(stored)]) == list(frame["query_history_ts"].iloc[row])[:20]


def test_shuffle_is_seeded_and_covers_every_row_once(tiny_work):
    def rows(seed):  # (request, candidate) identifies a row: a request's candidates share its time and user
        ds = make_dataset(tiny_work / "samples", "train", seq_len=5, batch_size=100, shuffle=True, seed=seed, window_rows=1000)
        return np.concatenate([np.char.add(np.char.add(f["user_id"].numpy().astype(str), f["request_ts"].numpy().astype(str)),
                                           f["candidate"].numpy().astype(str)) for f, _ in ds])

    a, b, c = rows(1), rows(1), rows(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    frame = read_samples(tiny_work / "samples", "train", columns=["user_id", "request_ts", "candidate"])
    stored = (frame["user_id"] + frame["request_ts"].astype(str) + frame["candidate"]).to_numpy().astype(str)
    assert len(set(stored)) == len(stored)  # the key is unique, so equal sorted keys mean every row exactly once
    np.testing.assert_array_equal(np.sort(a), np.sort(stored))
    assert not np.array_equal(a, stored)

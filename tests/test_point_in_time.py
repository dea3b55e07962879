"""Point in time: what a training row sees (graph edges, their ages, vocabulary) predates its request."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import neighbors_of
from dropdown_rank.build import BuildConfig, build
from dropdown_rank.workdir import Work
from dropdown_rank.tables import RELATIONS
from dropdown_rank.model import ModelConfig, make_ranker
from dropdown_rank.workdir import read_samples
from dropdown_rank.split import SplitConfig
from dropdown_rank.vocab import VOCABULARIES

T0 = 1767225600  # 2026-01-01 00:00 UTC
DAY = 86400


def ranker_of(work: Work, **config):
    return make_ranker(ModelConfig(**{"kind": "hgcn", **config}), {n: work.vocabulary(n) for n in VOCABULARIES},
                       {r: work.daily_tables(r) for r in RELATIONS}, {n: work.known_since(n) for n in VOCABULARIES})


def test_every_training_row_sees_only_edges_before_its_request(tiny_work):
    """Read as the model reads them: each row's snapshot, then each node's row version in it."""
    work = Work.open(tiny_work)
    rows = read_samples(work.samples_dir, "train")
    request_ts = rows["request_ts"].to_numpy()
    ranker = ranker_of(work)
    snapshot = ranker.snapshot_index(tf.constant(request_ts)).numpy()
    seen_edges = 0
    for relation, (kind, vocab_name) in RELATIONS.items():
        daily = work.daily_tables(relation)
        context = ranker.contexts[kind]
        # the model reads the snapshot of the row's own day
        np.testing.assert_array_equal(daily.snapshot_ts[snapshot], request_ts // DAY * DAY)
        np.testing.assert_array_equal(context.snapshot_days.numpy()[snapshot], request_ts // DAY * DAY)
        if kind == "query":
            nodes = np.concatenate([rows["candidate"].to_numpy(dtype=object), np.concatenate(rows["query_history"].to_list())])
            owner = np.concatenate([np.arange(len(rows)), np.repeat(np.arange(len(rows)), rows["query_history"].map(len))])
        else:
            nodes = np.concatenate(rows["item_history"].to_list())
            owner = np.repeat(np.arange(len(rows)), rows["item_history"].map(len))
        model_id = pd.Index(work.vocabulary(vocab_name)).get_indexer(nodes) + 1 + ranker.config.num_oov
        known = model_id > ranker.config.num_oov
        version = context.version_rows(tf.constant(snapshot[owner[known]] * context.num_nodes + model_id[known], tf.int64)).numpy()
        # no row version from a later day than the row's own (an edge that left the window would not show in last_ts)
        assert (context.version_day.numpy()[version] <= snapshot[owner[known]]).all()
        ids = tf.gather(context.neighbor_ids, version).numpy()
        last_ts = tf.gather(context.edge_last_ts, version).numpy()
        visible = ids > 0
        seen_edges += int(visible.sum())
        edge_owner_ts = np.broadcast_to(request_ts[owner[known]][:, None], ids.shape)
        assert (last_ts[visible] < edge_owner_ts[visible]).all()
        assert (last_ts[visible] < (edge_owner_ts[visible] // DAY * DAY)).all()  # formed before the row's day began
    assert seen_edges > 10000  # the rule was checked on real edges, not on empty tables


@pytest.fixture(scope="module")
def click_log(tmp_path_factory):
    """A user types "shoe", clicks the suggestion "shoes" at day 1, then issues "shoes" in the same session."""
    root = tmp_path_factory.mktemp("click_log")
    events, impressions = [], []
    for d in range(5):  # background traffic so every day has requests
        events += [("bg", T0 + d * DAY, "query", "bg"), ("bg", T0 + d * DAY + 1, "item", "sku")]
        impressions += [(f"bg{d}", "bg", T0 + d * DAY + 5, "b", "bg", 0, 1), (f"bg{d}", "bg", T0 + d * DAY + 5, "b", "bgx", 1, 0)]
    events += [("u", T0 + DAY + 100, "query", "shoe"), ("u", T0 + DAY + 200, "query", "shoes")]
    impressions += [("r1", "u", T0 + DAY + 150, "sh", "shoes", 0, 1), ("r1", "u", T0 + DAY + 150, "sh", "shirt", 1, 0),
                    ("r2", "u", T0 + 2 * DAY + 150, "sh", "shoes", 0, 1), ("r2", "u", T0 + 2 * DAY + 150, "sh", "shirt", 1, 0)]
    events.append(("u", T0 + 2 * DAY + 200, "query", "shoes"))
    logs = root / "logs"
    logs.mkdir()
    pd.DataFrame(events, columns=["user_id", "ts", "kind", "id"]).to_csv(logs / "events.csv", index=False)
    pd.DataFrame(impressions, columns=["request_id", "user_id", "ts", "prefix", "candidate", "position", "clicked"]).to_csv(
        logs / "impressions.csv", index=False)
    build(logs, root / "work", BuildConfig(split=SplitConfig(valid_days=1, test_days=1, warmup_days=1)),
          progress=lambda *a: None, progress_bar=False)
    return Work.open(root / "work")


def test_a_row_never_sees_the_edge_its_own_click_creates(click_log):
    q2q = click_log.daily_tables("q2q")
    row_day = q2q.at(T0 + DAY)  # the snapshot r1 reads
    assert "shoes" not in [n for n, *_ in neighbors_of(row_day, "shoe")]
    next_day = q2q.at(T0 + 2 * DAY)  # r2, a day later, may use the session that followed r1's click
    assert [(n, c) for n, _, c, _ in neighbors_of(next_day, "shoe")] == [("shoes", 1)]


def row_features(rows: pd.DataFrame, length: int = 3) -> dict:
    """The rows' ids, times and histories (padded to ``length``) as model inputs."""
    features = {name: tf.constant(np.stack(rows[name].map(lambda v: np.pad(np.asarray(v, dtype=object if "ts" not in name else np.int64),
                                                                               (0, length - len(v)), constant_values="" if "ts" not in name else 0))))
                for name in ("query_history", "query_history_ts", "item_history", "item_history_ts")}
    features.update({name: tf.constant(rows[name].to_numpy(dtype=object if name != "request_ts" else np.int64))
                     for name in ("user_id", "candidate", "request_ts")})
    return features


def test_candidate_relations_never_see_the_edge_a_rows_own_click_creates(click_log):
    """r1's click on "shoes" makes the session edge shoe-shoes on day 1: r1 (day 1) must not see it, r2 (day 2) does."""
    rows = read_samples(click_log.samples_dir, "train")
    rows = rows[(rows["user_id"] == "u") & (rows["candidate"] == "shoes")].reset_index(drop=True)
    ranker = ranker_of(click_log, seq_len=3, lagged_vocab=False, relations=True)  # every id known: only the graph decides
    features = row_features(rows)
    related = ranker.candidate_relations(features, ranker.node_ids(features)["query"]).numpy()[:, 0]
    day = ((rows["request_ts"] - T0) // DAY).to_numpy()
    assert sorted(day) == [1, 2] and "shoe" in rows.loc[day == 1, "query_history"].iloc[0]
    assert related[day == 1].tolist() == [0.0] and related[day == 2].tolist() == [1.0]


def test_ids_first_seen_on_the_row_day_read_as_oov_until_the_next_day(click_log):
    rows = read_samples(click_log.samples_dir, "train")
    features = row_features(rows)
    day = (rows["request_ts"] - T0) // DAY
    lagged = ranker_of(click_log, seq_len=3).node_ids(features)
    candidate, user = lagged["query"][:, 0].numpy(), lagged["user"].numpy()
    is_u = (rows["user_id"] == "u").to_numpy()
    # day 1: "shoes", "shirt" and user u appear for the first time -> OOV (id 1); day 2: known
    assert (candidate[is_u & (day == 1)] == 1).all() and (user[is_u & (day == 1)] == 1).all()
    assert (candidate[is_u & (day == 2)] > 1).all() and (user[is_u & (day == 2)] > 1).all()
    assert (lagged["query"][:, 1:].numpy()[is_u & (day == 1)][:, 0] == 1).all()  # "shoe", issued that day, too
    everything_known = ranker_of(click_log, seq_len=3, lagged_vocab=False).node_ids(features)
    assert (everything_known["query"][:, 0].numpy() > 1).all()


def test_with_min_count_2_a_row_knows_an_id_only_from_the_day_after_its_second_occurrence(tiny_logs, tiny_work_short_windows):
    """The model's ids of 400 training rows' candidates and query histories, against a recount of each query's
    training-period occurrences (issued, or shown as a candidate) before the row's day."""
    work = Work.open(tiny_work_short_windows)
    rows = read_samples(work.samples_dir, "train").sample(400, random_state=1)
    ranker = ranker_of(work)
    features = {"candidate": tf.constant(rows["candidate"].to_numpy(dtype=object).astype(str)),
                "query_history": tf.ragged.constant(rows["query_history"].map(list).to_list(), dtype=tf.string).to_tensor(""),
                "item_history": tf.zeros([len(rows), 0], tf.string), "user_id": tf.constant(rows["user_id"].astype(str).to_numpy()),
                "request_ts": tf.constant(rows["request_ts"].to_numpy())}
    ids = ranker.node_ids(features)["query"].numpy()  # [rows, 1 + L]: the candidate, then the history
    events = pd.read_parquet(tiny_logs / "events.parquet")
    impressions = pd.read_parquet(tiny_logs / "impressions.parquet")
    in_training = lambda frame: frame[(frame["ts"] >= work.split.train_start) & (frame["ts"] < work.split.valid_start)]
    events, impressions = in_training(events), in_training(impressions)
    occurrences = pd.concat([events.loc[events["kind"] == "query", ["id", "ts"]].rename(columns={"id": "query"}),
                             impressions[["candidate", "ts"]].rename(columns={"candidate": "query"})])
    by_query = occurrences.groupby("query")["ts"].apply(np.sort)
    checked = {"known": 0, "oov": 0}
    for i, row in enumerate(rows.itertuples()):
        day = row.request_ts // DAY * DAY
        for j, query in enumerate([row.candidate] + list(row.query_history)[: ids.shape[1] - 1]):
            before = np.searchsorted(by_query[query], day) if query in by_query.index else 0
            assert (ids[i, j] > ranker.config.num_oov) == (before >= 2), (query, row.request_ts, before)
            checked["known" if before >= 2 else "oov"] += 1
    assert checked["known"] > 1000 and checked["oov"] > 100, checked

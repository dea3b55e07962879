import dropdown_rank  # noqa: F401  (environment before tensorflow)

import numpy as np
import pytest
import tensorflow as tf

from dropdown_rank.model import CTRModel, ModelConfig, example_features, make_ranker
from dropdown_rank.optimizers import LazyAdam
from dropdown_rank.train import TrainConfig, make_optimizer

ROWS, DIM, LR, B1, B2, EPS = 6, 3, 0.01, 0.9, 0.999, 1e-7


def sparse_steps(optimizer, steps, start):
    table = tf.Variable(start)
    for indices, values in steps:
        optimizer.apply_gradients([(tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(indices)), table)])
    return table.numpy()


def lazy_reference(start, steps):
    """Lazy Adam by hand in numpy: duplicates summed, only touched rows move, global-step bias correction."""
    w, m, v = start.astype(np.float64), np.zeros_like(start, np.float64), np.zeros_like(start, np.float64)
    for t, (indices, values) in enumerate(steps, start=1):
        grad = np.zeros_like(w)
        np.add.at(grad, indices, values)
        rows = np.unique(indices)
        m[rows] = B1 * m[rows] + (1 - B1) * grad[rows]
        v[rows] = B2 * v[rows] + (1 - B2) * grad[rows] ** 2
        lr = LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t)
        w[rows] -= lr * m[rows] / (np.sqrt(v[rows]) + EPS)
    return w


def random_steps(rng, count, rows_per_step):
    return [(rng.integers(0, ROWS - 1, rows_per_step), rng.normal(size=(rows_per_step, DIM))) for _ in range(count)]


def test_lazy_adam_matches_a_numpy_reference_with_duplicates_and_untouched_rows():
    rng = np.random.default_rng(0)
    start = rng.normal(size=(ROWS, DIM)).astype("float32")
    steps = random_steps(rng, 8, 4)  # 4 draws of rows 0..4: duplicates, rows left out at most steps, row 5 never drawn
    got = sparse_steps(LazyAdam(LR), steps, start)
    np.testing.assert_allclose(got, lazy_reference(start, steps), rtol=1e-5, atol=1e-6)
    assert 5 not in np.concatenate([i for i, _ in steps])
    np.testing.assert_array_equal(got[5], start[5])


def test_lazy_adam_equals_adam_when_every_row_is_touched():
    rng = np.random.default_rng(1)
    start = rng.normal(size=(ROWS, DIM)).astype("float32")
    steps = [(np.arange(ROWS), rng.normal(size=(ROWS, DIM))) for _ in range(5)]
    dense = tf.Variable(start)
    adam = tf.keras.optimizers.legacy.Adam(LR)
    for _, values in steps:
        adam.apply_gradients([(tf.constant(values, tf.float32), dense)])
    np.testing.assert_allclose(sparse_steps(LazyAdam(LR), steps, start), dense.numpy(), rtol=1e-5, atol=1e-6)


def test_lazy_adam_resumes_from_a_checkpoint(tmp_path):
    rng = np.random.default_rng(2)
    start = rng.normal(size=(ROWS, DIM)).astype("float32")
    steps = random_steps(rng, 6, 3)
    straight = sparse_steps(LazyAdam(LR), steps, start)
    table, optimizer = tf.Variable(start), LazyAdam(LR)
    for indices, values in steps[:3]:
        optimizer.apply_gradients([(tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(indices)), table)])
    path = tf.train.Checkpoint(table=table, optimizer=optimizer).save(str(tmp_path / "ckpt"))
    # Restored before the slots exist, as BackupAndRestore does: the moments are restored when the first step creates them.
    table2, optimizer2 = tf.Variable(np.zeros_like(start)), LazyAdam(LR)
    tf.train.Checkpoint(table=table2, optimizer=optimizer2).restore(path)
    for indices, values in steps[3:]:
        optimizer2.apply_gradients([(tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(indices)), table2)])
    np.testing.assert_allclose(table2.numpy(), straight, rtol=1e-6, atol=1e-7)


def test_lazy_adam_refuses_amsgrad_and_round_trips_its_config():
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)
    clone = LazyAdam.from_config(LazyAdam(0.05).get_config())
    assert isinstance(clone, LazyAdam) and np.isclose(clone.get_config()["learning_rate"], 0.05)


def test_make_optimizer_follows_the_train_config():
    assert isinstance(make_optimizer(TrainConfig()), LazyAdam)
    adam = make_optimizer(TrainConfig(optimizer="adam", learning_rate=0.02))
    assert type(adam) is tf.keras.optimizers.legacy.Adam and np.isclose(adam.get_config()["learning_rate"], 0.02)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="sgd")


def one_candidate_batch(candidate: str):
    features = example_features(batch=4)
    features["candidate"] = tf.constant([candidate] * 4)
    return features, tf.constant([1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("optimizer,moves", [("lazy_adam", False), ("adam", True)])
def test_ctr_model_step_moves_an_embedding_row_only_when_its_id_is_in_the_batch(optimizer, moves):
    """Step 1 sees candidate "a", step 2 only "b": under LazyAdam a's row stays put in step 2 (and
    CTRModel passed its gradient sparse); Adam's decaying moments move it anyway."""
    tf.keras.utils.set_random_seed(0)
    ranker = make_ranker(ModelConfig(kind="base", features=()), {"users": ["u"], "queries": ["a", "b"], "items": ["i"]})
    model = CTRModel(ranker)
    model.compile(optimizer=make_optimizer(TrainConfig(optimizer=optimizer)))
    step = tf.function(model.train_step)
    row_a = int(ranker.query_lookup(tf.constant("a")))
    step(one_candidate_batch("a"))
    after_first = ranker.query_embedding.embeddings.numpy()[row_a].copy()
    step(one_candidate_batch("b"))
    changed = not np.array_equal(ranker.query_embedding.embeddings.numpy()[row_a], after_first)
    assert changed == moves


@pytest.mark.parametrize("kind", ["base", "hgcn", "gat"])
def test_every_embedding_table_gets_a_sparse_gradient(kind):
    """A dense gradient on a user/query/item table would make LazyAdam update every row (its dense path)."""
    from dropdown_rank.tables import NeighborTable

    vocabularies = {"users": ["u"], "queries": ["a", "b", "c"], "items": ["i", "j"]}
    tables = None
    if kind != "base":
        def table(relation, nodes):
            ids = np.array([[0, 0]] + [[(n % len(nodes)) + 1, 0] for n in range(1, len(nodes) + 1)], np.int32)
            return NeighborTable(relation=relation, nodes=np.array(["", *nodes], object), ids=ids,
                                 weight=np.where(ids > 0, 1.0, 0.0).astype(np.float32), last_ts=np.zeros(ids.shape, np.int64),
                                 count=np.ones(ids.shape, np.int64), snapshot_ts=86400)
        tables = {"q2q": table("q2q", vocabularies["queries"]), "i2i": table("i2i", vocabularies["items"])}
    ranker = make_ranker(ModelConfig(kind=kind), vocabularies, tables)
    model = CTRModel(ranker)
    features, labels = one_candidate_batch("a")
    features["query_history"] = tf.constant([["b", "c", ""]] * 4)
    features["item_history"] = tf.constant([["i", "", ""]] * 4)
    with tf.GradientTape() as tape:
        loss = model.compute_loss((features, labels), training=True)
    embeddings = [ranker.user_embedding.embeddings, ranker.query_embedding.embeddings, ranker.item_embedding.embeddings]
    for variable, gradient in zip(embeddings, tape.gradient(loss, embeddings)):
        assert isinstance(gradient, tf.IndexedSlices), f"{variable.name}: dense gradient"


def test_runs_started_before_an_option_existed_read_as_its_default(tmp_path):
    import dataclasses

    from dropdown_rank._io import write_json
    from dropdown_rank.train import claim_run_dir

    from dropdown_rank.model import ModelConfig

    from dropdown_rank.layers.time_gap import BUCKET_RULE, BUCKET_RULE_BEFORE

    identity = {"model": ModelConfig(kind="hgcn").to_dict(), "train": dataclasses.asdict(TrainConfig(optimizer="adam")),
                "work_fingerprint": "f", "buckets": BUCKET_RULE_BEFORE}
    # Saved before the optimizer option, the model's session option and the exact buckets: they read as what the run did.
    old = {"model": {k: v for k, v in identity["model"].items() if k != "session"},
           "train": {k: v for k, v in identity["train"].items() if k != "optimizer"}, "work_fingerprint": "f"}
    write_json(tmp_path / "run.json", old)
    claim_run_dir(tmp_path, identity)  # resumes: same run
    with pytest.raises(ValueError, match="differs: buckets"):  # today's code buckets otherwise: no resuming
        claim_run_dir(tmp_path, {**identity, "buckets": BUCKET_RULE})
    with pytest.raises(ValueError, match="differs: train.optimizer"):
        claim_run_dir(tmp_path, {**identity, "train": dataclasses.asdict(TrainConfig())})
    with pytest.raises(ValueError, match="differs: model.session"):
        claim_run_dir(tmp_path, {**identity, "model": ModelConfig(kind="hgcn", session=True).to_dict()})


def test_a_pal_run_from_before_the_towers_learning_rate_reads_as_multiplier_1(tmp_path):
    import dataclasses

    from dropdown_rank._io import write_json
    from dropdown_rank.layers.time_gap import BUCKET_RULE
    from dropdown_rank.model import ModelConfig
    from dropdown_rank.train import claim_run_dir, saved_identity

    def identity(config):
        return {"model": config.to_dict(), "train": dataclasses.asdict(TrainConfig()), "work_fingerprint": "f", "buckets": BUCKET_RULE}

    for name, config in (("pal", ModelConfig(kind="base", position_bias=True)), ("plain", ModelConfig(kind="base"))):
        old = identity(config)
        old["model"] = {k: v for k, v in old["model"].items() if k != "position_lr_multiplier"}
        write_json(tmp_path / name / "run.json", old)
    # The old tower is the new one with a multiplier of 1: a PAL run from before is not today's default PAL run, and
    # reports name it apart, so it is never pooled with today's as a seed of one model.
    assert saved_identity(tmp_path / "pal")["model"]["position_lr_multiplier"] == 1.0
    assert ModelConfig.from_dict(old["model"] | {"position_bias": True}).name == "base_20+pal1x"
    with pytest.raises(ValueError, match="differs: model.position_lr_multiplier"):
        claim_run_dir(tmp_path / "pal", identity(ModelConfig(kind="base", position_bias=True)))
    # Its checkpoints hold the old tower's variable, which today's tower cannot restore: not resumed, even asked for.
    with pytest.raises(ValueError, match="cannot resume it"):
        claim_run_dir(tmp_path / "pal", identity(ModelConfig(kind="base", position_bias=True, position_lr_multiplier=1.0)))
    claim_run_dir(tmp_path / "plain", identity(ModelConfig(kind="base")))  # the option never mattered without the tower

"""Training on a cluster: the strategy TF_CONFIG selects, multi-worker and parameter-server runs on loopback ports."""
import json
import os

import numpy as np
import pytest

from dropdown_rank.build import BuildConfig, build
from dropdown_rank.cluster import loopback_cluster, resolve
from dropdown_rank.samples import SampleConfig
from dropdown_rank.split import SplitConfig

import children
from conftest import made_once, quiet


def tf_config(cluster: dict, task_type: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize("strategy, cluster, task, kind, chief", [
    ("auto", None, None, "single", True),
    ("auto", {"worker": ["a:1", "b:1"]}, ("worker", 0), "multi-worker", True),
    ("auto", {"worker": ["a:1", "b:1"]}, ("worker", 1), "multi-worker", False),
    ("auto", {"chief": ["c:1"], "worker": ["a:1"]}, ("worker", 0), "multi-worker", False),
    ("auto", {"chief": ["c:1"], "worker": ["a:1"]}, ("chief", 0), "multi-worker", True),
    ("parameter-server", {"chief": ["c:1"], "worker": ["a:1"], "ps": ["p:1", "q:1"]}, ("chief", 0), "parameter-server", True),
    ("parameter-server", {"chief": ["c:1"], "worker": ["a:1"], "ps": ["p:1", "q:1"]}, ("ps", 1), "parameter-server", False),
])
def test_the_strategy_comes_from_tf_config(monkeypatch, strategy, cluster, task, kind, chief):
    if cluster is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config(cluster, *task))
    found = resolve(strategy)
    assert (found.kind, found.is_chief) == (kind, chief)
    assert found.serves_only == (kind == "parameter-server" and task[0] != "chief")


@pytest.mark.parametrize("strategy, cluster, message", [
    ("parameter-server", None, "needs TF_CONFIG"),
    ("auto", {"worker": ["a:1"], "ps": ["p:1"]}, "pass --strategy parameter-server"),
    ("parameter-server", {"worker": ["a:1"], "ps": ["p:1"]}, "needs chief"),
    ("auto", {"worker": ["a:1"], "evaluator": ["e:1"]}, "takes chief and worker tasks, not"),
    ("spark", None, "strategy must be one of"),
])
def test_a_cluster_that_cannot_run_is_refused(monkeypatch, strategy, cluster, message):
    if cluster is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config(cluster, "worker", 0))
    with pytest.raises(ValueError, match=message):
        resolve(strategy)


@pytest.fixture(scope="module")
def sharded_work(tiny_logs, tmp_path_factory):
    """The tiny world with its training split in 5 files, so that 2 workers each read their own."""
    config = BuildConfig(split=SplitConfig(valid_days=2, test_days=2), samples=SampleConfig(shard_rows=1000))
    root = made_once(tmp_path_factory, "sharded_work", lambda out: build(tiny_logs, out / "work", config, progress=quiet, progress_bar=False))
    return root / "work"


# Each child is forked from a process that has imported dropdown_rank and tensorflow but run no op (tests/children.py).
MIRRORED = r"""
import json, sys
import dropdown_rank
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from dropdown_rank.workdir import Work
from dropdown_rank.dataset import make_dataset
from dropdown_rank.model import CTRModel, ModelConfig, make_ranker

work = Work.open(sys.argv[1])
vocabularies = {name: work.vocabulary(name) for name in ("users", "queries", "items")}
tables = {relation: work.daily_tables(relation) for relation in ("q2q", "i2i")}
batch = tf.data.Dataset.from_tensors(next(iter(make_dataset(work.samples_dir, "train", 20, 256, shuffle=True))))
initial = None

def one_step(strategy):
    global initial
    with strategy.scope():
        model = CTRModel(make_ranker(ModelConfig(kind="hgcn"), vocabularies, tables))
        # plain SGD at a large rate: the update is the gradient itself, so a loss scaled wrongly would show (Adam would hide it)
        model.compile(optimizer=tf.keras.optimizers.legacy.SGD(10.0))
    initial = initial or model.get_weights()
    model.set_weights(initial)
    history = model.fit(batch, epochs=1, verbose=0)
    return model.get_weights(), history.history["loss"][0], history.history["auc_approx"][0]

one = one_step(tf.distribute.get_strategy())
two = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print("RESULT", json.dumps({"loss": [one[1], two[1]], "auc": [one[2], two[2]],
                            "moved": max(float(np.abs(a - b).max()) for a, b in zip(one[0], initial)),
                            "difference": max(float(np.abs(a - b).max()) for a, b in zip(one[0], two[0]))}))
"""


def test_two_replicas_take_the_step_one_process_takes_on_the_same_global_batch(tiny_work):
    """The loss each replica returns is its share of the global batch's mean: the gradients add up to one process's."""
    done = children.run(["-c", MIRRORED, str(tiny_work)], env={key: value for key, value in os.environ.items() if key != "TF_CONFIG"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["moved"] > 1e-2  # the step changed the weights
    assert result["difference"] < 1e-5 * result["moved"], result
    assert result["loss"][1] == pytest.approx(result["loss"][0], rel=1e-5)
    assert result["auc"][1] == pytest.approx(result["auc"][0], abs=1e-6)


WORKER = r"""
import json, sys
import dropdown_rank
import numpy as np
import tensorflow as tf
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import TrainConfig, train

class Interrupt(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt("interrupted after the first epoch")

class SaveFinalWeights(tf.keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        np.savez(sys.argv[3], *self.model.get_weights())

work, run, weights, interrupt = sys.argv[1:5]
callbacks = [Interrupt()] if interrupt == "1" else [SaveFinalWeights()]
metrics = train(work, run, ModelConfig(kind="hgcn"), TrainConfig(epochs=2, batch_size=256, seed=3), verbose=0, callbacks=callbacks)
print("METRICS", json.dumps(metrics))
"""


def run_workers(work, run, weights_dir, interrupt: bool) -> list:
    cluster = loopback_cluster({"worker": 2})
    processes = [children.Child(["-c", WORKER, str(work), str(run), str(weights_dir / f"worker{index}.npz"), "1" if interrupt else "0"],
                                env={**os.environ, "TF_CONFIG": tf_config(cluster, "worker", index)})
                 for index in range(2)]
    return [(process.returncode, out, err) for process in processes for out, err in [process.communicate(timeout=600)]]


def metrics_printed(stdout: str) -> dict:
    return json.loads(stdout.split("METRICS ", 1)[1])


@pytest.mark.slow
def test_two_workers_train_in_step_resume_together_and_only_the_chief_writes(sharded_work, tmp_path):
    run = tmp_path / "run"
    interrupted = run_workers(sharded_work, run, tmp_path, interrupt=True)
    for code, _, err in interrupted:
        assert code != 0 and "interrupted after the first epoch" in err, err[-3000:]
    assert [entry["epoch"] for entry in json.loads((run / "epochs.json").read_text())] == [1]

    finished = run_workers(sharded_work, run, tmp_path, interrupt=False)
    for code, _, err in finished:
        assert code == 0, err[-3000:]
    chief, worker = (metrics_printed(out) for _, out, _ in finished)
    assert worker == {"role": "worker 1", "epochs_run": 2}
    assert chief["cluster"] == {"kind": "multi-worker", "workers": 2}
    assert chief["epochs_run"] == 2 and len(chief["val_auc_per_epoch"]) == 2
    assert json.loads((run / "metrics.json").read_text()) == chief
    assert [entry["epoch"] for entry in json.loads((run / "epochs.json").read_text())] == [1, 2]
    assert json.loads((run / "run.json").read_text())["cluster"] == {"kind": "multi-worker", "workers": 2}
    # weights stay in step: both workers end the run with the same values, bit for bit
    first, second = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "worker1.npz")
    assert len(first.files) == len(second.files) > 10
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
    # the worker's checkpoints and logs went to temporary directories that are gone
    leftovers = [str(path.relative_to(run)) for path in run.rglob("*") if "worker" in path.name]
    assert leftovers == []
    assert sorted(path.name for path in run.iterdir()) == sorted(
        ["backup", "checkpoints", "config.json", "epochs.json", "graph", "metrics.json", "predictions", "run.json",
         "tensorboard", "vocab", "weights"])


PARAMETER_SERVERS = r"""
import json, os, sys
import dropdown_rank
import numpy as np
import tensorflow as tf
from dropdown_rank.dataset import make_dataset
from dropdown_rank.model import ModelConfig
from dropdown_rank.train import TrainConfig, load_run, predict, predictor, read_predictions, train

work, run, state, interrupt = sys.argv[1:5]
cluster = json.loads(sys.argv[5])
spec = tf.train.ClusterSpec(cluster)
# the worker and both ps tasks run in this process, as servers; this process is the chief
servers = [tf.distribute.Server(spec, job_name=job, task_index=index, protocol="grpc", start=True)
           for job in ("worker", "ps") for index in range(len(cluster[job]))]
os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})

def training_state(model):
    optimizer = model.optimizer
    values = {f"weight{i}": v.numpy() for i, v in enumerate(model.trainable_variables)}
    values.update({f"{slot}{i}": optimizer.get_slot(v, slot).numpy() for i, v in enumerate(model.trainable_variables)
                   for slot in ("m", "v")})
    return {"iterations": optimizer.iterations.numpy(), **values}

class Record(tf.keras.callbacks.Callback):
    devices, losses = {}, []
    def on_train_begin(self, logs=None):
        ranker = self.model.ranker
        for name, variable in (("query_embedding", ranker.query_embedding.embeddings),
                               ("q2q_neighbor_ids", ranker.contexts["query"].neighbor_ids),
                               ("logit_kernel", ranker.logit.kernel)):
            self.devices[name] = [shard.device for shard in getattr(variable, "variables", [variable])]
    def on_epoch_begin(self, epoch, logs=None):
        if interrupt == "0":  # the resumed run: what the backup restored
            np.savez(state + ".resumed.npz", **training_state(self.model))
    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(float(logs["val_logloss"]))  # exact, on every validation row
        if interrupt == "1":
            np.savez(state + ".interrupted.npz", **training_state(self.model))
            print("RESULT", json.dumps({"devices": Record.devices, "losses": Record.losses}), flush=True)
            raise KeyboardInterrupt("interrupted after the first epoch")

metrics = train(work, run, ModelConfig(kind="hgcn"), TrainConfig(epochs=2, batch_size=256, seed=3), verbose=0,
                callbacks=[Record()], strategy="parameter-server", min_shard_bytes=1024)
reloaded = predict(predictor(load_run(run)), make_dataset(os.path.join(work, "samples"), "test", 20, 4096))
print("RESULT", json.dumps({"losses": Record.losses, "metrics": metrics,
                            "reload_error": float(np.abs(reloaded - read_predictions(run)["prediction_frozen"]).max())}))
"""


def run_parameter_servers(work, run, state, interrupt: bool):
    cluster = loopback_cluster({"chief": 1, "worker": 1, "ps": 2})
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    done = children.run(["-c", PARAMETER_SERVERS, str(work), str(run), str(state), "1" if interrupt else "0", json.dumps(cluster)], env=env)
    assert ("interrupted after the first epoch" in done.stderr) if interrupt else done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1])


@pytest.mark.slow
def test_a_parameter_server_cluster_shards_the_tables_trains_and_resumes(sharded_work, tmp_path):
    run, state = tmp_path / "run", tmp_path / "state"
    interrupted = run_parameter_servers(sharded_work, run, state, interrupt=True)
    devices = interrupted["devices"]
    # tables of at least min_shard_bytes are split over both ps tasks; the logit's kernel (256 bytes) stays whole
    for table in ("query_embedding", "q2q_neighbor_ids"):
        assert sorted(device.split("/task:")[1][0] for device in devices[table]) == ["0", "1"], devices
        assert all("/job:ps/" in device for device in devices[table]), devices
    assert len(devices["logit_kernel"]) == 1 and "/job:ps/" in devices["logit_kernel"][0]

    finished = run_parameter_servers(sharded_work, run, state, interrupt=False)
    # the resumed run starts from exactly the weights and optimizer moments the interrupted one ended with,
    # sharded tables included (tf-keras#838: their moments were restored as zeros)
    before, after = np.load(f"{state}.interrupted.npz"), np.load(f"{state}.resumed.npz")
    assert sorted(before.files) == sorted(after.files) and len(before.files) > 20
    for name in before.files:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    assert finished["losses"][0] < interrupted["losses"][0]  # the validation logloss falls from epoch 1 to epoch 2
    assert finished["metrics"]["cluster"] == {"kind": "parameter-server", "workers": 1}
    assert finished["metrics"]["epochs_run"] == 2 and (run / "metrics.json").exists()
    # the run reloads in one process, without the cluster, and scores exactly as the chief did
    assert finished["reload_error"] == 0.0

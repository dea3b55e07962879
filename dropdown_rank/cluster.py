"""Which ``tf.distribute`` strategy training runs under, read from the environment (``TF_CONFIG``).

* No ``TF_CONFIG`` (or one without a cluster): one process, TensorFlow's default strategy.
* ``TF_CONFIG`` whose cluster has ``worker`` (and optionally ``chief``) tasks:
  ``MultiWorkerMirroredStrategy``. Every task runs the same ``train`` call, one replica each, with
  synchronous all-reduce; the chief (the ``chief`` task, else worker 0) writes the run's artifacts.
* ``strategy="parameter-server"`` and a cluster with ``chief``, ``worker`` and ``ps`` tasks:
  ``ParameterServerStrategy``. The chief coordinates and writes artifacts; ``worker`` and ``ps``
  tasks only serve (:meth:`Cluster.serve`). Variables of at least ``min_shard_bytes`` are split by
  rows over the ps tasks (``MinSizePartitioner``): at production scale those are the embedding and
  neighbor tables, which the model reads with ``tf.nn.embedding_lookup``, the one read of a sharded
  variable that does not concatenate its shards. Smaller variables (the MLP) stay whole.

``TF_CONFIG`` must be set before the process starts: the strategy is made at the start of
``train`` and TensorFlow reads the cluster once.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket

import tensorflow as tf

STRATEGIES = ("auto", "parameter-server")
MIN_SHARD_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where this process sits in a training cluster. ``kind``: ``single``, ``multi-worker`` or ``parameter-server``."""

    kind: str
    task_type: str | None = None
    task_id: int = 0
    workers: int = 1
    resolver: tf.distribute.cluster_resolver.ClusterResolver | None = None
    min_shard_bytes: int = MIN_SHARD_BYTES

    @property
    def is_chief(self) -> bool:
        """The task that writes the run directory: the single process, the ``chief`` task, or worker 0 without one."""
        if self.kind == "single" or self.task_type == "chief":
            return True
        return self.kind == "multi-worker" and self.task_type == "worker" and self.task_id == 0 and \
            "chief" not in self.resolver.cluster_spec().jobs

    @property
    def serves_only(self) -> bool:
        """A parameter-server cluster's ``worker`` or ``ps`` task: it runs a server, the chief sends it work."""
        return self.kind == "parameter-server" and self.task_type in ("worker", "ps")

    def strategy(self) -> tf.distribute.Strategy:
        if self.kind == "single":
            return tf.distribute.get_strategy()
        if self.kind == "multi-worker":
            return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=self.resolver)
        shards = self.resolver.cluster_spec().num_tasks("ps")
        partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(min_shard_bytes=self.min_shard_bytes,
                                                                                 max_shards=shards)
        return tf.distribute.ParameterServerStrategy(self.resolver, variable_partitioner=partitioner)

    def serve(self) -> None:
        """Run this task's server until the process is killed: the chief does not end a parameter-server job's worker
        and ps tasks when it finishes, whoever started them (a job controller) does."""
        spec = self.resolver.cluster_spec()
        server = tf.distribute.Server(spec, job_name=self.task_type, task_index=self.task_id,
                                      protocol=self.resolver.rpc_layer or "grpc", start=True)
        print(f"{self.task_type} {self.task_id}: serving {spec.task_address(self.task_type, self.task_id)} for the chief")
        server.join()

    def identity(self) -> dict:
        """What a run is bound to besides its configuration: the number of workers changes the batches each step sees."""
        return {} if self.kind == "single" else {"cluster": {"kind": self.kind, "workers": self.workers}}


def resolve(strategy: str = "auto", min_shard_bytes: int = MIN_SHARD_BYTES) -> Cluster:
    """This process's place in the cluster ``TF_CONFIG`` describes; refuses a configuration that cannot run."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    jobs = config.get("cluster") or {}
    if not jobs:
        if strategy == "parameter-server":
            raise ValueError("--strategy parameter-server needs TF_CONFIG with chief, worker and ps tasks "
                             "(README, Training on a cluster)")
        return Cluster("single")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    if task_type is None or task_type not in jobs:
        raise ValueError(f"TF_CONFIG: task {config.get('task')!r} is not one of the cluster's jobs {sorted(jobs)}")
    workers = len(jobs.get("worker", []))
    if strategy == "parameter-server":
        missing = [job for job in ("chief", "worker", "ps") if not jobs.get(job)]
        if missing:
            raise ValueError(f"TF_CONFIG: --strategy parameter-server needs {', '.join(missing)} task(s); "
                             f"the cluster has {sorted(jobs)}")
        return Cluster("parameter-server", task_type, task_id, workers, resolver, min_shard_bytes)
    if "ps" in jobs:
        raise ValueError("TF_CONFIG has ps tasks: pass --strategy parameter-server, or drop them for multi-worker training")
    unknown = sorted(set(jobs) - {"chief", "worker"})
    if unknown:
        raise ValueError(f"TF_CONFIG: multi-worker training takes chief and worker tasks, not {unknown}")
    return Cluster("multi-worker", task_type, task_id, workers + len(jobs.get("chief", [])), resolver, min_shard_bytes)


def loopback_cluster(tasks: dict) -> dict:
    """A ``TF_CONFIG`` cluster of ``{job: number of tasks}`` on free localhost ports, to try a cluster on one machine."""
    sockets = {job: [socket.socket() for _ in range(count)] for job, count in tasks.items()}
    for s in (s for group in sockets.values() for s in group):
        s.bind(("localhost", 0))
    cluster = {job: [f"localhost:{s.getsockname()[1]}" for s in group] for job, group in sockets.items()}
    for s in (s for group in sockets.values() for s in group):
        s.close()
    return cluster

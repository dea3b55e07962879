"""Shared fixtures: one tiny synthetic world, its build and two trained runs, made once per test session.

The suite runs in several pytest-xdist workers (setup.cfg); :func:`made_once` lets the first worker that
needs one of these make it, and the others wait for it and read it."""
import fcntl
import json
import os
import shutil
from pathlib import Path

import dropdown_rank  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports tensorflow)
import numpy as np
import pytest

from dropdown_rank._env import onednn_enabled

from dropdown_rank.build import BuildConfig, build
from dropdown_rank.logs.synth import write_world
from dropdown_rank.samples import SampleConfig
from dropdown_rank.split import SplitConfig


ONEDNN_OFF = not onednn_enabled()
# base_run's TrainConfig (test_faults.py's command says the same). Settings, not the config: importing dropdown_rank.train
# here would load TensorFlow in the xdist controller, which runs no test.
QUICK = {"epochs": 3, "batch_size": 512, "patience": 5, "seed": 11}


def quiet(*_args, **_kwargs):
    pass


def neighbors_of(table, node: str) -> list[tuple[str, float, int, int]]:
    """``(neighbor, weight, count, last_ts)`` of ``node``'s row in a ``NeighborTable``, in rank order."""
    row = int(np.flatnonzero(table.nodes == node)[0])
    keep = table.ids[row] > 0
    return list(zip(table.nodes[table.ids[row][keep]], table.weight[row][keep].tolist(),
                    table.count[row][keep].tolist(), table.last_ts[row][keep].tolist()))


@pytest.hookimpl(optionalhook=True)  # a run without xdist (-p no:xdist) does not know the hook
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than the cores (at most 4). The slowest tests wait on child processes (kills,
    clusters, fresh imports) while those compute, so a worker per core leaves a core idle part of the time."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):  # the user's choice, as xdist itself honours it
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(4, cores + 1)


def pytest_collection_modifyitems(config, items):
    if ONEDNN_OFF:
        return
    moved = pytest.mark.skip(reason="spektral's GATConv refuses to build under oneDNN: "
                                    "test_env.py::test_spektral_gatconv_tests_pass_with_onednn_off runs this with oneDNN off")
    for item in items:
        if "onednn_off" in item.keywords:
            item.add_marker(moved)


def made_once(tmp_path_factory, name: str, make) -> Path:
    """``DIR/name``, made by ``make(path)`` once per test session, whichever worker asks first (the others wait).

    ``DIR`` is the session's temporary directory, shared by every xdist worker. A directory is only
    used once ``make`` returned: a worker that failed half-way leaves no ``.done`` marker, and the next
    one starts over."""
    root = tmp_path_factory.getbasetemp()
    # An xdist worker's base is popen-gwN inside the session's. (A child pytest inherits PYTEST_XDIST_WORKER
    # from its worker's environment, so the variable alone does not say this process is one.)
    if os.environ.get("PYTEST_XDIST_WORKER") and root.name.startswith("popen-gw"):
        root = root.parent
    out = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / f"{name}.done").exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            make(out)
            (root / f"{name}.done").touch()
    return out


@pytest.fixture(scope="session")
def tiny_logs(tmp_path_factory):
    return made_once(tmp_path_factory, "tiny_logs", lambda out: write_world(out, scale="tiny", seed=7, progress=quiet))


@pytest.fixture(scope="session")
def tiny_work(tiny_logs, tmp_path_factory):
    return made_once(tmp_path_factory, "tiny_work", lambda out: build(
        tiny_logs, out, BuildConfig(split=SplitConfig(valid_days=2, test_days=2)), progress=quiet, progress_bar=False))


@pytest.fixture(scope="session")
def tiny_work_short_windows(tiny_logs, tmp_path_factory):
    """The tiny world built with windows its 12 days reach (personal 2 days, popularity 3) and ids known from their
    second occurrence (``--min-count 2``): the bounds the default 365/30 days and min count 1 never hit. Its splits
    are cut into shards of 1,500 rows, so a day's rows can span two files."""
    config = BuildConfig(split=SplitConfig(valid_days=2, test_days=2), min_count=2,
                         samples=SampleConfig(personal_days=2.0, popularity_days=3, shard_rows=1500))
    return made_once(tmp_path_factory, "tiny_work_short_windows",
                     lambda out: build(tiny_logs, out, config, progress=quiet, progress_bar=False))


@pytest.fixture(scope="session")
def base_run(tiny_work, tmp_path_factory):
    """base_20 trained with ``QUICK``, uninterrupted: the reference the interrupted and killed runs must reproduce."""
    from dropdown_rank.model import ModelConfig
    from dropdown_rank.train import TrainConfig, train

    root = made_once(tmp_path_factory, "base_run", lambda out: train(tiny_work, out / "base", ModelConfig(kind="base"),
                                                                     TrainConfig(**QUICK), verbose=0))
    return root / "base", json.loads((root / "base" / "metrics.json").read_text())


@pytest.fixture(scope="session")
def tiny_runs(tiny_work, tmp_path_factory):
    """base_20 and gat_20 trained briefly on the tiny world, shared by evaluation and export tests."""
    from dropdown_rank.model import ModelConfig
    from dropdown_rank.train import TrainConfig, train

    configs = (ModelConfig(kind="base"), ModelConfig(kind="gat"))

    def make(root):
        for config in configs:
            train(tiny_work, root / config.name, config, TrainConfig(epochs=2, batch_size=512, seed=3), verbose=0)

    root = made_once(tmp_path_factory, "tiny_runs", make)
    return {config.name: root / config.name for config in configs}

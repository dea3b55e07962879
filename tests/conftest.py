"""Shared fixtures: one tiny synthetic world and its build, made once per test session."""
import dropdown_rank  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports tensorflow)
import pytest

from dropdown_rank._env import onednn_enabled

from dropdown_rank.build import BuildConfig, build
from dropdown_rank.logs.synth import write_world
from dropdown_rank.split import SplitConfig


ONEDNN_OFF = not onednn_enabled()


def quiet(*_args, **_kwargs):
    pass


def pytest_collection_modifyitems(config, items):
    if ONEDNN_OFF:
        return
    moved = pytest.mark.skip(reason="spektral's GATConv refuses to build under oneDNN: "
                                    "test_env.py::test_spektral_gatconv_tests_pass_with_onednn_off runs this with oneDNN off")
    for item in items:
        if "onednn_off" in item.keywords:
            item.add_marker(moved)


@pytest.fixture(scope="session")
def tiny_logs(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_logs")
    write_world(out, scale="tiny", seed=7, progress=quiet)
    return out


@pytest.fixture(scope="session")
def tiny_work(tiny_logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_work")
    build(tiny_logs, out, BuildConfig(split=SplitConfig(valid_days=2, test_days=2)), progress=quiet, progress_bar=False)
    return out


@pytest.fixture(scope="session")
def tiny_runs(tiny_work, tmp_path_factory):
    """base_20 and attention_20 trained briefly on the tiny world, shared by evaluation and export tests."""
    from dropdown_rank.model import ModelConfig
    from dropdown_rank.train import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny_runs")
    runs = {}
    for config in (ModelConfig(kind="base"), ModelConfig(kind="attention")):
        runs[config.name] = root / config.name
        train(tiny_work, runs[config.name], config, TrainConfig(epochs=2, batch_size=512, seed=3), verbose=0)
    return runs

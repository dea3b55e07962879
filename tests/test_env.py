"""The process settings dropdown_rank makes before tensorflow loads (each environment in a fresh process)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ONEDNN_OFF, made_once


def run(code, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean, timeout=300)


# Runs a few ops and a tf.data pipeline: enough for TensorFlow to probe for CUDA and log at C++ level.
TF_WORK = ("import dropdown_rank, os, tensorflow as tf; tf.constant(1) + 1; "
           "tf.data.Dataset.from_generator(lambda: iter([1, 2]), output_signature=tf.TensorSpec([], tf.int64)).reduce("
           "tf.constant(0, tf.int64), lambda a, b: a + b); print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
# C++ log lines look like "E0000 00:00:1795413745.395016    3914 cuda_platform.cc:52] failed call to cuInit ...".
CPP_LOG_LINE = re.compile(r"^[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]", re.MULTILINE)
# One fresh process with nothing set serves the tests of the defaults (each start loads TensorFlow, about 8 s of CPU).
# Its last step fails on purpose, so it comes last: under TensorFlow's default (oneDNN on) spektral's GATConv refuses.
DEFAULT_PROCESS = (TF_WORK + "\nprint(os.environ['TF_USE_LEGACY_KERAS'], os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset'), "
                   "tf.keras.__name__)\nfrom dropdown_rank.layers import SpektralGATStar, GATAggregator\n"
                   "GATAggregator(4)\nprint('fused ok')\nSpektralGATStar(4)\nprint('spektral ok')")


@pytest.fixture(scope="module")
def default_process(tmp_path_factory):
    """``(stdout lines, stderr, exit code)`` of :data:`DEFAULT_PROCESS` in a process whose environment sets none of
    the variables dropdown_rank sets; run once per session, whichever xdist worker asks first."""
    def make(out):
        result = run(DEFAULT_PROCESS)
        (out / "result.json").write_text(json.dumps([result.stdout.splitlines(), result.stderr, result.returncode]))

    return tuple(json.loads((made_once(tmp_path_factory, "default_process", make) / "result.json").read_text()))


def test_selects_keras_2_and_leaves_onednn_as_tensorflow_sets_it(default_process):
    lines, stderr, _ = default_process
    assert len(lines) >= 2, stderr[-3000:]
    assert lines[1].split() == ["1", "unset", "tf_keras.api._v2.keras"]


def test_user_value_is_kept_with_a_warning():
    result = run("import warnings; warnings.simplefilter('always'); import dropdown_rank, os; "
                 "print(os.environ['TF_USE_LEGACY_KERAS'])", TF_USE_LEGACY_KERAS="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    assert "TF_USE_LEGACY_KERAS='0' is set in your environment" in result.stderr
    assert "Keeping your value" in result.stderr


def test_tensorflow_imported_first_with_keras_3_raises_a_clear_error():
    result = run("import tensorflow\nimport dropdown_rank")
    assert result.returncode != 0
    assert "KerasVersionError" in result.stderr
    assert "Import dropdown_rank before tensorflow" in result.stderr


def test_tensorflow_imported_first_with_legacy_keras_is_fine():
    result = run("import tensorflow, dropdown_rank; print('ok')", TF_USE_LEGACY_KERAS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_spektral_gatconv_refuses_to_build_under_onednn_and_says_how_to_opt_out(default_process):
    lines, stderr, code = default_process
    assert "fused ok" in lines and "spektral ok" not in lines
    assert code != 0 and "spektral's GATConv crashes under oneDNN" in stderr
    assert "start Python with TF_ENABLE_ONEDNN_OPTS=0" in stderr
    # that the opt-out builds and trains the layer: test_spektral_gatconv_tests_pass_with_onednn_off


@pytest.mark.slow
def test_spektral_gatconv_tests_pass_with_onednn_off():
    if ONEDNN_OFF:
        pytest.skip("oneDNN is off in this process: the onednn_off tests ran here")
    here = Path(__file__).parent  # only the files that hold onednn_off tests: collecting every file costs the child more
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", "onednn_off", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
                             str(here / "test_layers.py"), str(here / "test_model.py")],
                            capture_output=True, text=True, env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    # GAT vs GATConv (2 head counts), its config round trip, 4 GraphContext comparisons, and a whole `train` run of a
    # GATConv model that reloads. The child is also the fresh process that shows the opt-out works: with oneDNN on,
    # training a GATConv model segfaulted in most processes.
    assert re.search(r"\b8 passed\b", result.stdout), result.stdout[-3000:]
    marked = [p.name for p in here.glob("test_*.py") if p.name != Path(__file__).name and "mark.onednn_off" in p.read_text()]
    assert sorted(marked) == ["test_layers.py", "test_model.py"], f"add {marked} to the child's files above"


def test_onednn_setting_is_read_as_tensorflow_reads_it(monkeypatch):
    from dropdown_rank._env import onednn_enabled

    for value, enabled in (("0", False), ("false", False), ("FALSE", False), ("1", True), ("true", True)):
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", value)
        assert onednn_enabled() is enabled, value
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    assert onednn_enabled()


def test_tensorflow_cpp_logs_are_quiet_by_default(default_process):
    lines, stderr, _ = default_process
    assert lines[:1] == ["3"], stderr[-3000:]
    assert "cuInit" not in stderr and "CUDA error" not in stderr
    # TF 2.21 prints "Could not find cuda drivers" (INFO) before its log level takes effect; nothing
    # at WARNING or ERROR level gets through (the process's last step, the refusal, is a Python traceback).
    assert not [line for line in CPP_LOG_LINE.findall(stderr) if line[0] in "WE"], stderr


def test_a_log_level_the_user_set_is_kept_without_a_warning():
    result = run("import warnings; warnings.simplefilter('always'); " + TF_WORK, TF_CPP_MIN_LOG_LEVEL="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"]
    assert "TF_CPP_MIN_LOG_LEVEL" not in result.stderr

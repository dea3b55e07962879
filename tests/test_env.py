"""The process settings dropdown_rank makes before tensorflow loads (each case in a fresh process)."""
import os
import subprocess
import sys


def run(code, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS")}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean, timeout=300)


def test_sets_both_variables_and_tf_keras_is_keras_2():
    result = run("import dropdown_rank, os, tensorflow as tf; print(os.environ['TF_USE_LEGACY_KERAS'], "
                 "os.environ['TF_ENABLE_ONEDNN_OPTS'], tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "0", "tf_keras.api._v2.keras"]


def test_user_value_is_kept_with_a_warning():
    result = run("import warnings; warnings.simplefilter('always'); import dropdown_rank, os; "
                 "print(os.environ['TF_ENABLE_ONEDNN_OPTS'])", TF_ENABLE_ONEDNN_OPTS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert "TF_ENABLE_ONEDNN_OPTS='1' is set in your environment" in result.stderr
    assert "Keeping your value" in result.stderr


def test_tensorflow_imported_first_with_keras_3_raises_a_clear_error():
    result = run("import tensorflow\nimport dropdown_rank")
    assert result.returncode != 0
    assert "KerasVersionError" in result.stderr
    assert "Import dropdown_rank before tensorflow" in result.stderr


def test_tensorflow_imported_first_with_legacy_keras_is_fine():
    result = run("import tensorflow, dropdown_rank; print('ok')", TF_USE_LEGACY_KERAS="1", TF_ENABLE_ONEDNN_OPTS="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_spektral_gatconv_refuses_to_build_under_onednn():
    code = ("import dropdown_rank\nfrom dropdown_rank.layers import SpektralGATStar, GATAggregator\n"
            "GATAggregator(4)\nprint('fused ok')\nSpektralGATStar(4)")
    result = run(code, TF_ENABLE_ONEDNN_OPTS="1")
    assert "fused ok" in result.stdout
    assert result.returncode != 0 and "spektral's GATConv crashes under oneDNN" in result.stderr

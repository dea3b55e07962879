"""Process settings that must be in place before tensorflow is first imported.

Required (a different value the user set is kept, with a warning):

* ``TF_USE_LEGACY_KERAS=1``: spektral and tensorflow-recommenders need Keras 2 (tf-keras); TF >= 2.16
  otherwise makes ``tf.keras`` Keras 3, under which ``import tensorflow_recommenders`` fails and
  spektral's GATConv breaks in ``call``.
Left as TensorFlow sets it: oneDNN's CPU ops stay on (TensorFlow's default on recent x86 CPUs). With them off,
the default models trained 33-50% slower (``benchmarks/results/training.json``). Only spektral's
GATConv (``--graph-impl spektral`` with ``--model gat``) segfaulted under oneDNN on the pinned stack
(TensorFlow 2.21, tf-keras 2.21, spektral 1.3.1), so that layer refuses to build unless you start
Python with ``TF_ENABLE_ONEDNN_OPTS=0``; ``benchmarks/check_onednn.py`` repeats the crash check.

Defaults (a value the user set is kept silently):

* ``TF_CPP_MIN_LOG_LEVEL=3``: TensorFlow's C++ logging prints INFO, WARNING and ERROR lines that
  are not failures of this program (on a machine without a GPU, ``failed call to cuInit ... CUDA
  error`` at ERROR level). Level 3 keeps only FATAL. Errors that matter still reach you as Python
  exceptions. Set ``TF_CPP_MIN_LOG_LEVEL=0`` to see every C++ log line. TensorFlow 2.21 writes a
  few lines before its log level takes effect (``All log messages before absl::InitializeLog()
  ...`` and ``Could not find cuda drivers``); no environment variable silences those.

If tensorflow is already imported without legacy Keras, nothing can be fixed from here, so we raise
and say what to do.
"""
import os
import sys
import warnings

REQUIRED_ENV = {"TF_USE_LEGACY_KERAS": "1"}
DEFAULT_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}

_WHY = {
    "TF_USE_LEGACY_KERAS": "spektral and tensorflow-recommenders need Keras 2 (tf-keras)",
}
_LEGACY_TRUE = ("1", "true", "True")


def onednn_enabled() -> bool:
    """Whether TensorFlow runs oneDNN's ops, as it reads ``TF_ENABLE_ONEDNN_OPTS`` (0/false or 1/true
    in any case). Unset is read as on: TensorFlow's default on CPUs with AVX512_VNNI, AVX_VNNI or
    AMX, this machine's; on older x86 CPUs TensorFlow leaves it off and this still says on, which
    only makes spektral's GATConv refuse to build where it would not have crashed."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")


class KerasVersionError(ImportError):
    """tensorflow was imported with Keras 3 before dropdown_rank could select Keras 2."""


def configure_environment() -> None:
    for name, wanted in REQUIRED_ENV.items():
        current = os.environ.get(name)
        if current is None:
            os.environ[name] = wanted
        elif current != wanted and not (name == "TF_USE_LEGACY_KERAS" and current in _LEGACY_TRUE):
            warnings.warn(
                f"{name}={current!r} is set in your environment; dropdown_rank expects "
                f"{name}={wanted} because {_WHY[name]}. Keeping your value.",
                RuntimeWarning,
                stacklevel=3,
            )
    for name, default in DEFAULT_ENV.items():
        os.environ.setdefault(name, default)
    tf = sys.modules.get("tensorflow")
    if tf is not None and not getattr(tf, "_tf_uses_legacy_keras", False):
        raise KerasVersionError(
            "tensorflow was imported before dropdown_rank without TF_USE_LEGACY_KERAS=1, so "
            "tf.keras is Keras 3, which spektral and tensorflow-recommenders cannot use. "
            "Import dropdown_rank before tensorflow, or run with TF_USE_LEGACY_KERAS=1 set in the environment."
        )

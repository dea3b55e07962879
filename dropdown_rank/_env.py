"""Process settings that must be in place before tensorflow is first imported.

* ``TF_USE_LEGACY_KERAS=1``: spektral and tensorflow-recommenders need Keras 2 (tf-keras); TF >= 2.16
  otherwise makes ``tf.keras`` Keras 3, under which ``import tensorflow_recommenders`` fails and
  spektral's GATConv breaks in ``call``.
* ``TF_ENABLE_ONEDNN_OPTS=0``: with oneDNN's custom CPU ops on, training a model with spektral's
  GATConv segfaulted in most runs on this stack (see STACK.md); with them off it did not.

A value the user set explicitly is respected, with a warning. If tensorflow is already imported
without legacy Keras, nothing can be fixed from here, so we raise and say what to do.
"""
import os
import sys
import warnings

REQUIRED_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_ENABLE_ONEDNN_OPTS": "0"}

_WHY = {
    "TF_USE_LEGACY_KERAS": "spektral and tensorflow-recommenders need Keras 2 (tf-keras)",
    "TF_ENABLE_ONEDNN_OPTS": "oneDNN's CPU ops crash training with attention (GATConv) layers",
}
_LEGACY_TRUE = ("1", "true", "True")


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
    tf = sys.modules.get("tensorflow")
    if tf is not None and not getattr(tf, "_tf_uses_legacy_keras", False):
        raise KerasVersionError(
            "tensorflow was imported before dropdown_rank without TF_USE_LEGACY_KERAS=1, so "
            "tf.keras is Keras 3, which spektral and tensorflow-recommenders cannot use. "
            "Import dropdown_rank before tensorflow, or run with TF_USE_LEGACY_KERAS=1 "
            "TF_ENABLE_ONEDNN_OPTS=0 set in the environment."
        )

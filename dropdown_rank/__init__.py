"""dropdown_rank: rank query dropdown suggestions by predicted click-through rate.

Data flows one way, one module (or subpackage) per stage; no module imports a later stage:

    logs (schema, synth, bestbuy, aol) -> split -> vocab -> graph -> counters -> samples -> build (beam)
        -> dataset (tf.data) -> layers -> model -> train -> evaluate / export -> cli

Importing this package first fixes the process settings that tensorflow reads at import time
(see ``dropdown_rank/_env.py``): Keras 2 (``TF_USE_LEGACY_KERAS=1``, which spektral and
tensorflow-recommenders need), oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``: spektral's GATConv crashes
under it), and quiet C++ logs by default (``TF_CPP_MIN_LOG_LEVEL=3``, unless you set it).
"""
from dropdown_rank._env import configure_environment

configure_environment()

__version__ = "0.1.0"

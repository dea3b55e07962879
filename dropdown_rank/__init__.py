"""dropdown_rank: rank query dropdown suggestions by predicted click-through rate.

Data flows one way, one module (or subpackage) per stage; no module imports a later stage:

    logs (schema, synth, bestbuy, aol) -> split -> vocab -> tables (stored neighbor tables) -> graph
        (builds them) -> counters -> features (the sample schema) -> records (TFRecord codec) -> samples
        -> assembler (the same features served online) -> workdir (a built work directory, read back)
        -> build (beam) -> replay (assembler against build) -> dataset (tf.data) -> layers -> model
        -> optimizers -> cluster (tf.distribute) -> train -> daily -> evaluate / export -> cli

Importing this package first fixes the process settings that tensorflow reads at import time
(see ``dropdown_rank/_env.py``): Keras 2 (``TF_USE_LEGACY_KERAS=1``, which spektral and
tensorflow-recommenders need) and quiet C++ logs by default (``TF_CPP_MIN_LOG_LEVEL=3``, unless you
set it). oneDNN stays on, as TensorFlow sets it.
"""
from dropdown_rank._env import configure_environment

configure_environment()

__version__ = "0.1.0"

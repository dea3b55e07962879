"""dropdown_rank: rank query dropdown suggestions by predicted click-through rate.

Data flows one way, one module (or subpackage) per stage; no module imports a later stage:

    logs (schema, synth, bestbuy) -> split -> vocab -> graph -> samples -> build
        -> dataset (tf.data) -> layers -> model -> train -> evaluate / export -> cli

Importing this package first fixes two process settings that tensorflow reads at import time
(see ``dropdown_rank/_env.py``).
"""
from dropdown_rank._env import configure_environment

configure_environment()

__version__ = "0.1.0"

"""TensorFlow and Keras, imported once and quietly: every module that needs them imports them here.

TensorFlow's C++ start-up banner (oneDNN, CUDA probes) is printed before absl logging is
initialised, so no environment variable silences it; only the file descriptor can.
"""

from __future__ import annotations

import os


def _import_quietly():  # noqa: ANN202 - the two modules
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras, tf


keras, tf = _import_quietly()
tf.get_logger().setLevel("ERROR")  # each trial traces its own epoch graph; not a retrace bug

__all__ = ["keras", "tf"]

"""Where TensorFlow runs: GPU memory growth and a one-line device report.

hflib does no device placement of its own: TensorFlow puts every op on the
first GPU when it sees one and on the CPU otherwise. All curvature products
and CG stay in the model's dtype (float32 or float64); no mixed precision.
"""
from __future__ import annotations

import os
import platform

import tensorflow as tf


def enable_memory_growth():
    """Let TensorFlow grow GPU memory as needed instead of grabbing it all (no-op without a GPU).
    Returns the GPUs it applied to; GPUs already initialised are left as they are."""
    done = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
            done.append(gpu.name)
        except RuntimeError:  # the runtime is already initialised
            pass
    return done


def training_device():
    """The device TensorFlow places training on: '/GPU:0' when a GPU is visible, else '/CPU:0'."""
    return "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"


def describe():
    """A one-line report, e.g. 'GPU: NVIDIA H100 (1 visible) · TF 2.21.0' or 'CPU: 2 cores · TF 2.21.0'."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", gpus[0].name)
        where = f"GPU: {name} ({len(gpus)} visible)"
    else:
        where = f"CPU: {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    return f"{where} · TensorFlow {tf.__version__} · Python {platform.python_version()}"

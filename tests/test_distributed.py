"""HF under tf.distribute.MirroredStrategy equals the single-device update (issue: scale-out),
also with a separate curvature batch and weight decay; each replica linearises its share once.

The CPU is split into logical devices, which must happen before TensorFlow starts, so the
comparison runs in a fresh Python process.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.path.insert(0, {root!r})
    import numpy as np, tensorflow as tf
    replicas = {replicas}
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    import hflib
    from hflib import data, models
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{{i}}" for i in range(replicas)])
    assert strategy.num_replicas_in_sync == replicas
    x, y = data.make_teacher_data(n=250, seed=0)   # 250 does not split evenly over 3 or 4 replicas
    for pre, extra in (("martens", {{}}), ("report", {{}}), ("none", {{}}),
                       ("martens", dict(curvature_batch_size=100, weight_decay=1e-3))):
        single = models.mlp((20, 16, 10), activation="tanh", seed=0, dtype="float64")
        with strategy.scope():
            replicated = models.mlp((20, 16, 10), activation="tanh", seed=0, dtype="float64")
            hf_d = hflib.HessianFree(replicated, "softmax_cross_entropy", initial_damping=1.0, strategy=strategy,
                                     preconditioner=pre, **extra)
        hf_s = hflib.HessianFree(single, "softmax_cross_entropy", initial_damping=1.0, preconditioner=pre, **extra)
        for step in range(3):
            rs, rd = hf_s.step(x, y), hf_d.step(x, y)
            for key in ("loss", "objective", "rho", "damping", "cg_iters", "rate", "step_norm"):
                assert np.isclose(rs[key], rd[key], rtol=1e-9, atol=1e-12), (pre, step, key, rs[key], rd[key])
        assert hf_d.tracing_count() == 1
        for a, b in zip(single.trainable_variables, replicated.trainable_variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(hf_s.damping.numpy(), hf_d.damping.numpy(), rtol=1e-12)
    print("OK")
""")


@pytest.mark.parametrize("replicas", [3])
def test_mirrored_update_equals_single_device(replicas):
    script = SCRIPT.format(root=str(ROOT), replicas=replicas)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stdout[-3000:] + out.stderr[-5000:]


def test_strategy_argument_is_checked():
    import hflib
    from hflib import models
    with pytest.raises(TypeError, match="strategy"):
        hflib.HessianFree(models.mlp((2, 3, 2)), "softmax_cross_entropy", strategy="mirrored")

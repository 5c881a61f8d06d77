"""First-order baselines (layer 3): SGD, Adam, … (Keras optimizers) as updaters for `hflib.fit`,
under the same loop, timing rules and checkpoints as `HessianFree`."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import checks
from . import losses as _losses
from .curvature import loss_and_gradient
from .vectors import all_finite


class FirstOrder(tf.Module):
    """One Keras optimizer step per batch: `FirstOrder(model, "squared_error", "sgd", learning_rate=0.1)`.

    The model runs with `training=True`, so Dropout and BatchNormalization train as in Keras. A
    non-finite loss or gradient skips the step (parameters kept) and is flagged in the record.
    Extra keywords go to the Keras optimizer (e.g. `momentum=0.9, nesterov=True` for SGD).
    """

    def __init__(self, model, loss, optimizer="sgd", learning_rate=0.1, *, seed=0, **options):
        super().__init__(name="first_order")
        self.model, self.loss = model, _losses.get(loss)
        checks.trainable_variables(model)
        checks.outputs_logits(model, self.loss)
        self.seed = checks.integer(seed, "seed")
        if isinstance(optimizer, str):
            learning_rate = checks.positive(learning_rate, "learning_rate")
            try:
                optimizer = keras.optimizers.get({"class_name": optimizer,
                                                  "config": {"learning_rate": learning_rate, **options}})
            except (ValueError, TypeError) as e:
                raise ValueError(f"optimizer: cannot build Keras optimizer {optimizer!r} with {options}: {e}") from e
        elif not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"optimizer: expected a name ('sgd', 'adam', …) or a keras.optimizers.Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.optimizer.build(model.trainable_variables)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self._update = tf.function(self._update_graph, reduce_retracing=True)

    def step(self, x, y):
        """One optimizer step on the batch (x, y); returns its record."""
        x = checks.inputs(x, dtype=checks.model_dtype(self.model))
        y = checks.labels(self.loss, y, x, self.model)
        checks.same_length(x, y, "y")
        return {k: np.asarray(v)[()].item() for k, v in self._update(x, y).items()}

    def _update_graph(self, x, y):
        value, grads = loss_and_gradient(self.model, self.loss, x, y, training=True)
        finite = all_finite(grads) & tf.math.is_finite(value)
        if finite:
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        self.iterations.assign_add(1)
        return {"loss": value, "accepted": finite, "nonfinite": ~finite}

    def state_variables(self):
        """Everything a step changes: the model's variables, the optimizer's and the counter."""
        return list(self.model.variables) + list(self.optimizer.variables) + [self.iterations]

    def tracing_count(self):
        return self._update.experimental_get_tracing_count()

    def get_config(self):
        config = {k: float(f"{v:.7g}") if isinstance(v, float) else v       # float32 values as given
                  for k, v in self.optimizer.get_config().items()}
        return {"updater": "FirstOrder", "loss": self.loss.name, "seed": self.seed,
                "optimizer": type(self.optimizer).__name__,
                **{k: v for k, v in config.items() if k != "name" and isinstance(v, (int, float, str, bool, type(None)))}}

"""Optimizers of the papers: the Nadam the Dual paper trained with, SGD (the SCRN paper's),
averaged SGD (AWD-LSTM's NT-ASGD; its trigger is ``train.train``'s), and the choice between them
(``make_optimizer``; the SCRN plateau schedule is ``train.train``'s).

The Dual paper (Dec 2021, sec. 3.2) trained with "the Nadam optimizer" of the Keras of its time,
``tf.keras.optimizers.Nadam`` of TensorFlow 2.x's optimizer_v2, whose momentum schedule is

    mu_t = beta_1 * (1 - 0.5 * 0.96 ** (0.004 * t))          (Dozat 2016, "schedule_decay" 0.004)

so the momentum starts near beta_1 / 2 and approaches beta_1 only after tens of thousands of
steps. Keras 3's ``keras.optimizers.Nadam`` uses ``0.96 ** t`` (full momentum after ~100 steps).
``PaperNadam`` is Keras 3's Nadam with the paper's schedule; ``schedule_decay=1`` gives Keras 3's.
Everything else (bias corrections, ``epsilon`` 1e-7 outside the square root) is the same in both.
``torch.optim.NAdam(momentum_decay=4e-3)`` follows the same schedule.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

NADAMS = ("paper_nadam", "nadam")          # the Nadam kinds of configs.OPTIMIZERS


@keras.saving.register_keras_serializable(package="dualrnn")
class PaperNadam(keras.optimizers.Nadam):
    """Nadam with tf.keras 2's momentum schedule ``mu_t = beta_1 (1 - 0.5 * 0.96^(d t))``.

    ``d = schedule_decay`` (0.004 in tf.keras 2 and in the paper's runs; 1.0 is Keras 3's Nadam).
    With ``P_t = mu_1 ... mu_t``, ``m_t = beta_1 m + (1 - beta_1) g``, ``v_t = beta_2 v +
    (1 - beta_2) g^2``:

        theta -= lr * (mu_{t+1} m_t / (1 - P_{t+1}) + (1 - mu_t) g / (1 - P_t))
                    / (sqrt(v_t / (1 - beta_2^t)) + epsilon)
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 schedule_decay=0.004, name="paper_nadam", **kwargs):
        if not isinstance(schedule_decay, (int, float)) or not schedule_decay > 0:
            raise ValueError(f"schedule_decay={schedule_decay!r} must be a positive number "
                             f"(0.004: tf.keras 2's Nadam; 1.0: Keras 3's)")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, name=name, **kwargs)
        self.schedule_decay = float(schedule_decay)

    def _mu(self, step, dtype):
        """The momentum coefficient ``mu_step`` (step counts from 1)."""
        return ops.cast(self.beta_1, dtype) * (
            1.0 - 0.5 * ops.power(ops.cast(0.96, dtype), self.schedule_decay * step))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        dtype = self._u_product.dtype
        # P_t = P_{t-1} * mu_t, once per step before the per-variable updates
        self.assign(self._u_product,
                    self._u_product * self._mu(ops.cast(self.iterations + 1, dtype), dtype))
        # keras.optimizers.Nadam would update the product again with its own schedule: skip it
        keras.optimizers.Optimizer._backend_update_step(self, grads, trainable_variables,
                                                        learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        mu_t, mu_next = self._mu(step, dtype), self._mu(step + 1.0, dtype)
        product = ops.cast(self._u_product, dtype)                        # P_t
        beta_1 = ops.cast(self.beta_1, dtype)
        beta_2 = ops.cast(self.beta_2, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1.0 - beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1.0 - beta_2))
        m_hat = mu_next * m / (1.0 - product * mu_next) + (1.0 - mu_t) * gradient / (1.0 - product)
        v_hat = v / (1.0 - ops.power(beta_2, step))
        self.assign_sub(variable, m_hat * lr / (ops.sqrt(v_hat) + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config["schedule_decay"] = self.schedule_decay
        return config


def nadam(kind="paper_nadam", learning_rate=0.001, beta_1=0.9, clipnorm=None, **kwargs):
    """The Nadam of ``kind``: ``"paper_nadam"`` (``PaperNadam``, the Dual paper's tf.keras 2
    schedule; the default everywhere) or ``"nadam"`` (Keras 3's ``keras.optimizers.Nadam``).
    ``clipnorm`` is Keras's per-variable gradient-norm clipping (None or 0: none)."""
    if kind not in NADAMS:
        raise ValueError(f"optimizer={kind!r} is not one of {NADAMS}")
    cls = PaperNadam if kind == "paper_nadam" else keras.optimizers.Nadam
    return cls(learning_rate=learning_rate, beta_1=beta_1, clipnorm=clipnorm or None, **kwargs)


@keras.saving.register_keras_serializable(package="dualrnn")
class AveragedSGD(keras.optimizers.SGD):
    """SGD that keeps the running mean of its iterates once averaging is on (averaged SGD,
    Polyak & Juditsky 1992; the "AvSGD" of AWD-LSTM sec. 3, Algorithm 1).

    While averaging is off it is ``keras.optimizers.SGD``. From the step after ``start_averaging``
    (or from the first step with ``averaging=True``), after each SGD step ``k = k + 1`` and
    ``avg += (w - avg) / k`` for every weight ``w``: the first averaged step sets ``avg = w``, as
    ``torch.optim.ASGD(t0=0, lambd=0)`` does, which the AWD-LSTM authors switch to. The averages,
    ``k`` and the on/off flag are optimizer variables, so a checkpoint of the optimizer resumes
    the average exactly. ``average_of(w)`` is the average of the weight ``w``.
    ``weight_decay`` (Keras's: ``w -= lr * wd * w`` before the step) equals the L2 term
    ``torch.optim.SGD/ASGD(weight_decay=wd)`` adds to the gradient, for plain SGD.

    ``max_steps = n``: the learning rate of each step is multiplied by a per-step factor, set for
    the next (up to n) steps with ``set_step_factors`` (AWD-LSTM's variable BPTT, sec. 4.1: a
    window of length l trains at ``lr * l / bptt``); it scales the weight decay too, as the L2 term
    inside the authors' gradient is. Reading ``learning_rate`` gives the current step's rate.
    """

    def __init__(self, learning_rate=0.01, averaging=False, max_steps=None, name="averaged_sgd",
                 **kwargs):
        if kwargs.get("momentum"):
            raise ValueError(f"momentum={kwargs['momentum']!r} is not allowed: 0 (AvSGD averages "
                             f"plain SGD iterates)")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps={max_steps!r} must be None or a positive integer")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.initial_averaging = bool(averaging)
        self.max_steps = max_steps

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._averages = [self.add_variable_from_reference(v, "average") for v in variables]
        self.averaged_steps = self.add_variable(shape=(), initializer="zeros",
                                                name="averaged_steps")
        self.averaging = self.add_variable(
            shape=(), initializer="ones" if self.initial_averaging else "zeros",
            name="averaging")
        if self.max_steps:
            self.step_factors = self.add_variable(shape=(self.max_steps,), initializer="ones",
                                                  name="step_factors")
            self.factors_from = self.add_variable(shape=(), initializer="zeros",
                                                  name="factors_from", dtype="int32")

    def set_step_factors(self, factors):
        """The learning-rate factors of the next ``len(factors)`` steps (from Python, between
        ``fit`` calls)."""
        factors = np.asarray(factors, "float32")
        if not self.max_steps or not 1 <= len(factors) <= self.max_steps:
            raise ValueError(f"{len(factors)} step factors: at most max_steps={self.max_steps}")
        padded = np.ones((self.max_steps,), "float32")
        padded[:len(factors)] = factors
        self.step_factors.assign(padded)
        # a fresh value, not the iterations' own buffer (JAX donates each state buffer once)
        self.factors_from.assign(np.asarray(int(ops.convert_to_numpy(self.iterations)),
                                            "int32"))

    def _get_current_learning_rate(self):
        lr = super()._get_current_learning_rate()
        if not self.max_steps or not self.built:
            return lr
        i = ops.clip(ops.cast(self.iterations, "int32") - self.factors_from, 0,
                     self.max_steps - 1)
        return lr * ops.cast(ops.take(self.step_factors, i), lr.dtype)

    def start_averaging(self):
        """Average the iterates from the next step on (a fresh average)."""
        self.averaging.assign(1.0)
        self.averaged_steps.assign(0.0)

    @property
    def is_averaging(self) -> bool:
        return bool(float(ops.convert_to_numpy(self.averaging)) > 0)

    def average_of(self, variable):
        return self._averages[self._get_variable_index(variable)]

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self.assign_add(self.averaged_steps, self.averaging)      # k, once per step
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate)   # w -= lr * g
        dtype = variable.dtype
        weight = ops.cast(self.averaging, dtype) / ops.maximum(
            ops.cast(self.averaged_steps, dtype), 1.0)
        average = self.average_of(variable)
        self.assign_add(average, (variable - average) * weight)

    def get_config(self):
        config = super().get_config()
        config["averaging"] = self.initial_averaging
        config["max_steps"] = self.max_steps
        config.pop("momentum", None)
        config.pop("nesterov", None)
        return config


def make_optimizer(config, max_steps=None):
    """The training optimizer of a ``TrainConfig``: ``optimizer`` (``"sgd"``: plain SGD, no
    momentum; ``"nt_asgd"``: ``AveragedSGD``, averaging from the start when ``finetune``),
    ``learning_rate``, ``beta_1`` (Nadams), ``clipnorm`` or ``global_clipnorm``,
    ``weight_decay`` (Keras's decoupled form: for SGD the L2 term of AWD-LSTM's code, for Nadam
    AdamW-like). ``max_steps``: ``AveragedSGD``'s per-step factors (variable BPTT)."""
    extra = dict(global_clipnorm=config.global_clipnorm or None,
                 weight_decay=getattr(config, "weight_decay", 0.0) or None)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.learning_rate,
                                    clipnorm=config.clipnorm or None, **extra)
    if config.optimizer == "nt_asgd":
        return AveragedSGD(learning_rate=config.learning_rate, averaging=config.finetune,
                           max_steps=max_steps, clipnorm=config.clipnorm or None, **extra)
    return nadam(config.optimizer, learning_rate=config.learning_rate, beta_1=config.beta_1,
                 clipnorm=config.clipnorm, **extra)

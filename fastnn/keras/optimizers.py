"""Keras's optimizers, with Keras's argument names and defaults, as fastnn's (fastnn.optim):
each is built on the model's parameters when the model is compiled and built. `lr=` is taken
for learning_rate, as Keras 2 did.

    SGD(learning_rate=0.01, momentum=0.0, nesterov=False)   -> SGD, Momentum or Nesterov
    Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None)
                                                            -> Adam (AdamW with weight_decay:
                                                               Keras decays the weights
                                                               themselves, decoupled)
    AdamW(learning_rate=0.001, weight_decay=0.004, ...)     -> AdamW
    RMSprop(learning_rate=0.001, rho=0.9, epsilon=1e-7)     -> RMSProp
    Adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7) -> AdaGrad

fastnn's kernels add epsilon after the square root of the (bias-corrected) second moment, as
PyTorch does; Keras adds it before the bias correction (Adam) or inside the root (RMSprop,
Adagrad): the updates differ where that moment is within a few epsilons of zero.
"""
from fastnn import optim as core


class Optimizer:
    def __init__(self, learning_rate, kwargs):
        owner = type(self).__name__
        if "lr" in kwargs:
            if learning_rate is not None:
                raise TypeError(f"{owner}: give learning_rate or lr (its Keras 2 name), not both")
            learning_rate = kwargs.pop("lr")
        if kwargs:
            raise TypeError(f"{owner}: unsupported arguments {', '.join(sorted(kwargs))} "
                            "(fastnn's optimizers take no gradient clipping, EMA or schedules "
                            "here)")
        self._learning_rate = self.default_lr if learning_rate is None else learning_rate
        self.core = None  # the fastnn optimizer, once built on a model

    def build(self, model):
        """The fastnn optimizer on `model`'s parameters (checked here: bad values raise)."""
        self.core = self._make(model, self._learning_rate)
        return self.core

    @property
    def learning_rate(self):
        return self.core.lr if self.core is not None else self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = value
        if self.core is not None:
            self.core.lr = float(value)

    lr = learning_rate  # Keras 2's name

    def __repr__(self):
        return f"{type(self).__name__}(learning_rate={self.learning_rate!r})"


class SGD(Optimizer):
    default_lr = 0.01

    def __init__(self, learning_rate=None, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, kwargs)
        self.momentum, self.nesterov = momentum, nesterov

    def _make(self, model, lr):
        if self.nesterov:
            return core.Nesterov(model, lr=lr, momentum=self.momentum)
        if self.momentum:
            return core.Momentum(model, lr=lr, momentum=self.momentum)
        return core.SGD(model, lr=lr)


class Adam(Optimizer):
    default_lr = 0.001

    def __init__(self, learning_rate=None, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, **kwargs):
        super().__init__(learning_rate, kwargs)
        if amsgrad:
            raise ValueError(f"{type(self).__name__}: amsgrad=True is not supported")
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.weight_decay = weight_decay

    def _make(self, model, lr):
        args = dict(lr=lr, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)
        if self.weight_decay:  # Keras: p -= lr * weight_decay * p, i.e. fastnn's AdamW
            return core.AdamW(model, weight_decay=self.weight_decay, **args)
        return core.Adam(model, **args)


class AdamW(Adam):
    def __init__(self, learning_rate=None, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, **kwargs)

    def _make(self, model, lr):
        return core.AdamW(model, lr=lr, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                          weight_decay=self.weight_decay)


class RMSprop(Optimizer):
    default_lr = 0.001

    def __init__(self, learning_rate=None, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **kwargs):
        super().__init__(learning_rate, kwargs)
        if momentum or centered:
            raise ValueError("RMSprop: momentum and centered=True are not supported, got "
                             f"momentum={momentum!r}, centered={centered!r}")
        self.rho, self.epsilon = rho, epsilon

    def _make(self, model, lr):
        return core.RMSProp(model, lr=lr, decay_rate=self.rho, eps=self.epsilon)


class Adagrad(Optimizer):
    default_lr = 0.001

    def __init__(self, learning_rate=None, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate, kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def _make(self, model, lr):
        return core.AdaGrad(model, lr=lr, eps=self.epsilon,
                            initial_accumulator_value=self.initial_accumulator_value)


_NAMED = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def get(optimizer):
    """A facade optimizer from an instance or a name ('adam', 'sgd', 'rmsprop', ...), with
    Keras's defaults."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _NAMED:
        return _NAMED[optimizer.lower()]()
    if isinstance(optimizer, core.Optimizer):
        raise TypeError("compile: a fastnn.optim optimizer is bound to a fastnn model's "
                        "parameters; give a fastnn.keras.optimizers one (or its name)")
    raise ValueError(f"compile: unknown optimizer {optimizer!r}: expected one of "
                     f"{', '.join(_NAMED)} or a fastnn.keras.optimizers instance")


__all__ = ["Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "SGD", "get"]

"""Keras-style training methods of a model: compile, fit, evaluate, predict.

Sequential inherits them, as Keras 3's Model inherits its Trainer, and they do nothing but hand
the model to a fastnn.trainer.Trainer. The trainer trains any model and imports no model class,
so imports run one way: fastnn.sequential -> fastnn.fit_methods -> fastnn.trainer.
"""
from fastnn.trainer import Trainer, predict


class FitMethods:
    def compile(self, loss="cross_entropy", optimizer="adam", metrics=("accuracy",), seed=None):
        """Choose the loss (a fastnn.losses instance or name), the optimizer (an instance or a
        name from fastnn.optim: built on this model with its default settings) and metrics."""
        self.trainer = Trainer(self, loss, optimizer, metrics, seed=seed)
        self.optimizer = self.trainer.optimizer
        return self

    def _trainer(self):
        trainer = self.__dict__.get("trainer")
        if trainer is None:
            raise RuntimeError(f"{self.label}: call compile(loss, optimizer) before fit")
        return trainer

    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, validation_split=None,
            callbacks=(), verbose=1, **kwargs):
        """Train; returns a History of per-epoch losses and metrics (see Trainer.fit)."""
        return self._trainer().fit(x, y, epochs, batch_size, validation_data, validation_split,
                                   callbacks, verbose, **kwargs)

    def evaluate(self, x, y, batch_size=256):
        """{"loss": ..., "accuracy": ...} in inference mode."""
        return self._trainer().evaluate(x, y, batch_size)

    def predict(self, x, batch_size=256):
        """The outputs for x in inference mode, as a new array (compile is not needed)."""
        return predict(self, x, batch_size)


__all__ = ["FitMethods"]

"""Keras's callbacks: the Callback base (epoch hooks, self.model, self.params), History,
EarlyStopping and ModelCheckpoint, the last two with Keras's arguments and defaults over
fastnn's own (fastnn.callbacks). Epochs are 0-based here, as in Keras; logs hold loss,
accuracy, val_loss, val_accuracy. fastnn's callbacks can be given to fit as well.

ModelCheckpoint writes fastnn's file format whatever the name: a resumable training
checkpoint, or with save_weights_only=True the model alone; fastnn.load reads either.
"""
from fastnn import callbacks as core

BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
               "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
               "on_predict_batch_end", "on_test_begin", "on_test_end", "on_predict_begin",
               "on_predict_end")


def keras_logs(logs):
    """fastnn's epoch logs as Keras's: without the time and learning rate entries."""
    return {k: v for k, v in logs.items() if k not in ("time", "lr")}


class Callback:
    model = None
    params = None

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass


class History:
    """What fit returns: history.history["val_accuracy"], ... one value per epoch of that
    fit; history.epoch is 0-based."""

    def __init__(self, model, params, logs):
        self.model, self.params = model, params
        self.epoch = list(range(len(logs)))
        self.history = {}
        for entry in logs:
            for k, v in entry.items():
                self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class EarlyStopping(Callback):
    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 restore_best_weights=False):
        self.core = core.EarlyStopping(monitor, patience, min_delta, mode, restore_best_weights)
        self.verbose = verbose

    @property
    def stopped_epoch(self):
        """The 0-based epoch training stopped after (0 if it ran to the end, as Keras)."""
        return self.core.stopped_epoch - 1 if self.core.stopped_epoch else 0

    def on_train_begin(self, logs=None):
        self.core.trainer = self.model._trainer
        self.core.on_train_begin()

    def on_epoch_end(self, epoch, logs=None):
        self.core.on_epoch_end(epoch + 1, logs)
        if self.core.stopped_epoch == epoch + 1 and self.verbose:
            print(f"Epoch {epoch + 1}: early stopping")
            if self.core.best_state is not None:
                print("Restoring model weights from the end of the best epoch.")


class ModelCheckpoint(Callback):
    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch"):
        if save_freq != "epoch":
            raise ValueError(f"ModelCheckpoint: only save_freq='epoch' is supported, got "
                             f"{save_freq!r}")
        self.core = core.ModelCheckpoint(filepath, monitor, save_best_only, mode,
                                         weights_only=save_weights_only)
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        self.core.trainer = self.model._trainer

    def on_epoch_end(self, epoch, logs=None):
        before = self.core.last_saved
        self.core.on_epoch_end(epoch + 1, logs)
        if self.verbose and self.core.last_saved is not before:
            print(f"Epoch {epoch + 1}: saving model to {self.core.last_saved[0]}")


class KerasCallbacks(core.Callback):
    """Runs Keras-style callbacks from fastnn's trainer (0-based epochs, Keras's logs,
    model.stop_training) and keeps each epoch's logs for the History."""

    def __init__(self, callbacks, model, params):
        for cb in callbacks:
            hooks = [h for h in BATCH_HOOKS if getattr(type(cb), h, None) is not None]
            if hooks:
                raise TypeError(f"fit: {type(cb).__name__} defines {', '.join(hooks)}; fastnn "
                                "calls only the train and epoch hooks (on_train_begin/end, "
                                "on_epoch_begin/end)")
        self.callbacks, self.model, self.params = callbacks, model, params
        self.logs = []

    def on_train_begin(self):
        self.first = self.trainer.epoch  # Keras counts each fit's epochs from 0
        for cb in self.callbacks:
            cb.set_model(self.model)
            cb.set_params(self.params)
            cb.on_train_begin({})

    def on_epoch_begin(self, epoch):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch - 1 - self.first, {})

    def on_epoch_end(self, epoch, logs):
        logs = keras_logs(logs)
        self.logs.append(logs)
        for cb in self.callbacks:
            cb.on_epoch_end(epoch - 1 - self.first, logs)
        if self.model.stop_training:
            self.trainer.stop_training = True

    def on_train_end(self):
        for cb in self.callbacks:
            cb.on_train_end({})


__all__ = ["Callback", "EarlyStopping", "History", "ModelCheckpoint"]

"""Callbacks for Trainer.fit / model.fit: hooks called at the start and end of training and of
each epoch, with that epoch's logs ({"loss", "accuracy", "val_loss", "val_accuracy", "lr", ...}).

- EarlyStopping(monitor="val_loss", patience=3): stop when the monitored value stops improving
  (and restore the best weights, by default)
- ModelCheckpoint(path, monitor="val_loss", save_best_only=False): a full training checkpoint
  (resumable) after each epoch, written atomically; path may contain {epoch} and the logs'
  names, e.g. "ckpt-{epoch:02d}-{val_loss:.3f}.npz"
- LearningRateScheduler(schedule): a fastnn.optim schedule class and its arguments, or a
  function (epoch, lr) -> lr, applied before each epoch
- HistoryLogger(path): the history so far as CSV (path ends in .csv) or JSON, after each epoch
"""
import csv
import io
import json
import math
import os

from fastnn._atomic import atomic_write


class Callback:
    trainer = None

    def on_train_begin(self):
        pass

    def on_epoch_begin(self, epoch):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self):
        pass


def _better(monitor, mode):
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"expected mode 'min', 'max' or 'auto', got {mode!r}")
    return (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)


def _monitored(monitor, logs, owner):
    if monitor not in logs:
        raise KeyError(f"{owner}: the logs have no {monitor!r} (they have {', '.join(logs)}); "
                       "pass validation data for val_* values")
    return logs[monitor]


class EarlyStopping(Callback):
    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, mode="auto",
                 restore_best_weights=True):
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.better = _better(monitor, mode)
        self.sign = -1 if self.better(0, 1) else 1   # the direction of improvement
        self.restore_best_weights = restore_best_weights
        self.best, self.wait, self.best_state, self.stopped_epoch = None, 0, None, None

    def on_train_begin(self):
        self.best, self.wait, self.best_state, self.stopped_epoch = None, 0, None, None

    def on_epoch_end(self, epoch, logs):
        value = _monitored(self.monitor, logs, "EarlyStopping")
        if self.best is None or self.better(value - self.sign * self.min_delta, self.best):
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_state = self.trainer.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.trainer.stop_training = True
            self.stopped_epoch = epoch
            if self.best_state is not None:
                self.trainer.model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """weights_only=True writes the model alone (fastnn.load reads it; it cannot resume)."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto",
                 weights_only=False):
        self.path, self.monitor, self.save_best_only = os.fspath(path), monitor, save_best_only
        self.weights_only = weights_only
        self.better = _better(monitor, mode)
        self.best = None
        self.last_saved = None  # (path, epoch) of the last checkpoint written

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            value = _monitored(self.monitor, logs, "ModelCheckpoint")
            if self.best is not None and not self.better(value, self.best):
                return
            self.best = value
        path = self.path.format(epoch=epoch, **{k: v for k, v in logs.items() if k != "epoch"})
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        if self.weights_only:
            from fastnn import io as model_io
            model_io.save(self.trainer.model, path)
        else:
            self.trainer.save_checkpoint(path)
        self.last_saved = (path, epoch)


class LearningRateScheduler(Callback):
    """LearningRateScheduler(fastnn.optim.StepDecay, step_size=5, gamma=0.5), or
    LearningRateScheduler(lambda epoch, lr: ...). The epoch passed is 0-based (the one about
    to run); the schedule object is rebuilt at the start of training on the trainer's
    optimizer."""

    def __init__(self, schedule, **kwargs):
        self.schedule, self.kwargs = schedule, kwargs
        self._sched = None

    def on_train_begin(self):
        if isinstance(self.schedule, type):
            self._sched = self.schedule(self.trainer.optimizer, **self.kwargs)

    def on_epoch_begin(self, epoch):
        opt = self.trainer.optimizer
        if self._sched is not None:
            opt.lr = self._sched.lr_at(epoch - 1)
        else:
            lr = float(self.schedule(epoch - 1, opt.lr))
            if not (lr > 0 and math.isfinite(lr)):
                raise ValueError(f"LearningRateScheduler: the schedule gave lr={lr} for epoch "
                                 f"{epoch - 1}")
            opt.lr = lr


class HistoryLogger(Callback):
    def __init__(self, path):
        self.path = os.fspath(path)

    def on_epoch_end(self, epoch, logs):
        write_history(self.trainer.history, self.path)


def write_history(history, path):
    """The history as CSV (path ends in .csv: one row per epoch) or JSON, atomically."""
    d = history.to_dict()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    text = io.StringIO(newline="")
    if path.endswith(".csv"):
        keys = list(d)
        writer = csv.writer(text)
        writer.writerow(keys)
        for i in range(len(d["epoch"])):
            writer.writerow([d[k][i] if i < len(d[k]) else "" for k in keys])
    else:
        json.dump(d, text, indent=1)
    atomic_write(path, lambda f: f.write(text.getvalue().encode("utf-8")))


__all__ = ["Callback", "EarlyStopping", "HistoryLogger", "LearningRateScheduler",
           "ModelCheckpoint", "write_history"]

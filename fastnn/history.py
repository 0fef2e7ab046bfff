"""What an epoch's logs are made of: the metrics, the running Tally of a loss and its metrics
over the steps, and the History of the logs per epoch."""
import numpy as np


def accuracy(pred, y):
    """The fraction of rows whose largest output is the label (or the one-hot's 1)."""
    labels = y if y.ndim == 1 else np.argmax(y, axis=1)
    return float(np.mean(np.argmax(pred, axis=1) == labels))


# the names Keras users write for it too (the log key is the name given)
METRICS = {"accuracy": accuracy, "acc": accuracy, "categorical_accuracy": accuracy,
           "sparse_categorical_accuracy": accuracy}


class History:
    """Per-epoch logs: history.history["loss"], ["val_accuracy"], ... and history.epoch."""

    def __init__(self):
        self.history, self.epoch = {}, []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def to_dict(self):
        return {"epoch": list(self.epoch), **{k: list(v) for k, v in self.history.items()}}

    @classmethod
    def from_dict(cls, d):
        h = cls()
        h.epoch = list(d.get("epoch", []))
        h.history = {k: list(v) for k, v in d.items() if k != "epoch"}
        return h

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class Tally:
    """The running loss and accuracy of an epoch (or an evaluation).

    Losses that can (SoftmaxCrossEntropy) add each batch's summed loss and correct count to a
    2-element array on the model's device: a step then reads nothing back, and read() brings
    the sums over (every sync_every steps). Other losses give a float per step, and the
    accuracy is counted on the host. read() checks for NaN/Inf over the steps since the last
    read and returns the logs: the mean loss so far, regularization penalty included (each
    step's for a float-per-step loss; for summing ones, the penalty of the parameters as
    they are at the read, computed once per read), and the metrics."""

    def __init__(self, trainer, B, loss=None):
        self.trainer, self.B = trainer, B
        self.loss = loss or trainer.loss
        self.metrics = trainer.metrics
        self.fused = self.loss.accumulates
        self.totals = None
        self.loss_sum = self.correct = 0.0
        self.seen = self.pending = self.steps = 0

    def ensure_totals(self, dtype):
        if self.totals is None:
            self.totals = self.trainer._totals(self.B, dtype, self.loss)
        return self.totals

    def add(self, out, yb):
        n = out.shape[0]
        if self.fused:
            self.loss.forward(out, yb, totals=self.ensure_totals(out.dtype))
        else:
            try:
                value = self.loss.forward(out, yb)  # the step's penalty included
            except FloatingPointError as exc:
                raise FloatingPointError(f"{exc} (training step {self.trainer.step}, epoch "
                                         f"{self.trainer.epoch + 1})") from None
            self.loss_sum += value * n
            if self.metrics:
                self.correct += accuracy(self.B.to_host(out), self.B.to_host(yb)) * n
        self.count(n)

    def count(self, n):
        """Host bookkeeping of a step of n samples (all that a replayed graph step needs)."""
        self.pending += n
        self.steps += 1

    def read(self):
        if self.fused and self.pending:
            loss_sum, correct = (float(v) for v in self.B.to_host(self.totals))
            self.B.fill(self.totals, 0)
            if not np.isfinite(loss_sum):
                self._diverged(loss_sum)
            self.loss_sum += loss_sum
            self.correct += correct
        self.seen += self.pending
        self.pending = self.steps = 0
        mean = self.loss_sum / max(self.seen, 1)
        if self.fused and self.loss.regularization is not None:
            mean += self.loss.regularization.penalty()  # once per read, not per step
        logs = {"loss": mean}
        logs.update({m: self.correct / max(self.seen, 1) for m in self.metrics})
        return logs

    def _diverged(self, value):
        def steps(last):  # the steps since the last read, as the loss or the trainer counts
            first = last - self.steps + 1
            return f"step {last}" if first == last else f"one of steps {first}-{last}"
        raise FloatingPointError(
            f"{type(self.loss).__name__}: the loss is {'nan' if np.isnan(value) else 'inf'} at "
            f"{steps(self.loss.steps)}; lower the learning rate, check the inputs for NaN/Inf, "
            f"or add gradient-friendly normalisation (BatchNorm) (training "
            f"{steps(self.trainer.step)}, epoch {self.trainer.epoch + 1})")


__all__ = ["History", "METRICS", "Tally", "accuracy"]

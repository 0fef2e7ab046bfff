"""The training loop: Trainer (and model.compile / fit / evaluate / predict built on it).

    model.compile(loss="cross_entropy", optimizer=fastnn.optim.Adam(model, lr=1e-3))
    history = model.fit(x, y, epochs=3, batch_size=100, validation_split=0.1,
                        callbacks=[EarlyStopping(patience=2), ModelCheckpoint("ckpt.npz")])
    model.evaluate(x_test, y_test)      # {"loss": ..., "accuracy": ...}

A checkpoint (Trainer.save_checkpoint, ModelCheckpoint) holds the model, the optimizer, the
epoch, the history so far and every random generator the run uses (fastnn's default one, each
Dropout/DropConnect layer's, the data loader's): fit(..., resume_from=path) continues exactly
where the run stopped, bit for bit like a run that never stopped.
"""
import time
import warnings

import numpy as np

from fastnn import fit_inputs, init as initializers, losses as losses_mod, model as model_io
from fastnn.datasets.loader import DataLoader
from fastnn.fit_inputs import cast_input
from fastnn.layers.base import check_positive_int
from fastnn.progress import Progress


def accuracy(pred, y):
    """The fraction of rows whose largest output is the label (or the one-hot's 1)."""
    labels = y if y.ndim == 1 else np.argmax(y, axis=1)
    return float(np.mean(np.argmax(pred, axis=1) == labels))


# the names Keras users write for it too (the log key is the name given)
METRICS = {"accuracy": accuracy, "acc": accuracy, "categorical_accuracy": accuracy,
           "sparse_categorical_accuracy": accuracy}


def model_backend(model):
    """The backend holding the model's parameters (the CPU for a model without any)."""
    from fastnn.backend import backend_of, cpu
    params = list(model.named_parameters())
    return backend_of(params[0][1]) if params else cpu


def predict(model, x, batch_size=256):
    """The model's outputs for x in inference mode, as a new (host) array; host batches are
    moved to the model's device and the outputs back."""
    x = cast_input(model, x)
    B = model_backend(model)
    was = model.training
    model.eval()
    try:
        outs = [np.array(B.to_host(model.forward(B.from_host(x[i:i + batch_size]))))
                for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    if not outs:
        raise ValueError("predict: expected at least one sample, got an empty array")
    return np.concatenate(outs)


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


class _StepGraphs:
    """A training step's forward, loss and backward, captured once per batch shape as a CUDA
    graph and replayed for every later batch of that shape: one launch instead of one per
    kernel (each costs tens of microseconds of Python and driver time, which is most of a
    small step on a GPU). The optimizer's update stays outside (one launch; its scalars,
    Adam's bias corrections, change every step).

    A shape's first step runs as usual (it compiles the kernels and allocates every buffer);
    the second is captured, reading its batch from input buffers of the graph's own that each
    replay first copies the batch into. The capture is keyed on what the recorded kernels
    bake in: the batch's shape and dtype, train/eval mode, and each parameter's arrays,
    trainability and regularization strength; and it is dropped once the backend has made
    any array since (the buffers it uses might have been replaced). Models
    that draw random numbers on the host each step (Dropout, DropConnect) and losses that
    return a value per step are not captured. A capture that fails (an op that cannot be
    captured) warns once and the trainer goes on without graphs."""

    def __init__(self, trainer, B):
        self.trainer, self.B = trainer, B
        self.entry = None  # {"key", "graph" (None until captured), "inputs", "allocations"}
        self.staging = {}  # (shape, dtype) -> the input buffer graphs of that shape read

    def _input(self, a):
        """The graphs' input buffer for arrays like a, made once (a recapture reuses it)."""
        key = (tuple(a.shape), str(a.dtype))
        buf = self.staging.get(key)
        if buf is None:
            buf = self.staging[key] = self.B.empty(a.shape, a.dtype)
        return buf

    @staticmethod
    def usable(trainer, B):
        return bool(getattr(B, "graphs", False)) and trainer.loss.accumulates and \
            not _stochastic_layers(trainer.model)

    def _key(self, xb, yb):
        t = self.trainer
        params = tuple((id(ref[1]), id(ref[2]), ref.trainable,
                        getattr(ref.layer.penalties.get(ref.key) if ref.layer is not None
                                else None, "lam", None))
                       for ref in t.optimizer.params)
        return (tuple(xb.shape), str(xb.dtype), tuple(yb.shape), str(yb.dtype),
                t.model.training, params)

    def run(self, xb, yb, tally):
        """Run the step's forward, loss and backward as a graph; False where the caller must
        run them itself (a shape's first step, or graphs turned off by a failed capture)."""
        B, t = self.B, self.trainer
        key, entry = self._key(xb, yb), self.entry
        if entry is None or entry["key"] != key or (
                entry["graph"] is not None and B.allocation_count() != entry["allocations"]):
            # a new shape, or arrays made since the capture: a layer may have replaced a
            # buffer the graph writes (another batch size, an evaluation ran between). This
            # step runs as usual and (re)makes the buffers; the next one is captured.
            self.entry = {"key": key, "graph": None}
            return False
        tally.ensure_totals(xb.dtype)  # outside the graph: zeroing it must not be replayed
        x_in, y_in = entry.get("inputs") or (self._input(xb), self._input(yb))
        B.copy(xb, x_in)
        B.copy(yb, y_in)
        if entry["graph"] is None:
            saved = (tally.pending, tally.steps, t.loss.steps)
            try:
                graph = B.capture(lambda: t._forward_backward(x_in, y_in, tally))
            except Exception as exc:  # noqa: BLE001 - any op that cannot be captured
                tally.pending, tally.steps, t.loss.steps = saved
                t.cuda_graphs = False
                t._graphs = None
                warnings.warn(f"fastnn: the training step could not be captured as a CUDA "
                              f"graph ({type(exc).__name__}: {exc}); training goes on one "
                              "kernel launch at a time", RuntimeWarning, stacklevel=3)
                return False
            entry.update(graph=graph, inputs=(x_in, y_in), allocations=B.allocation_count())
            graph.replay()  # the captured step has not run yet
            return True
        t.loss.count_step()  # the host side of the step: the loss's and the tally's counts
        tally.count(xb.shape[0])
        entry["graph"].replay()
        return True


def _stochastic_layers(model):
    out = []
    if hasattr(model, "rng"):
        out.append(model)
    for _, child in model.children():
        out.extend(_stochastic_layers(child))
    return out


class _Tally:
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
            self.totals = self.trainer._totals(self.B, dtype)
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


class Trainer:
    def __init__(self, model, loss, optimizer, metrics=("accuracy",), seed=None):
        from fastnn import optim
        self.model = model
        self.loss = losses_mod.get(loss)
        if self.loss.regularization is None and model.penalty() != 0:
            self.loss.regularization = model  # the model's regularizers count in the loss
        if isinstance(optimizer, str):
            optimizer = optim.get(optimizer, model)
        if not isinstance(optimizer, optim.Optimizer):
            raise TypeError(f"Trainer: expected an optimizer or its name, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"Trainer: unknown metrics {unknown}: expected some of {list(METRICS)}")
        self.metrics = list(metrics)
        # shuffling and augmentation: seed=, else drawn from fastnn's generator, so that
        # fastnn.seed(s) before building and compiling makes the whole run reproducible
        self.rng = initializers.child_rng() if seed is None else np.random.default_rng(seed)
        self.epoch = 0                           # epochs completed
        self.step = 0                            # optimizer steps taken
        self.history = History()
        self.stop_training = False
        self.loader = None
        self._totals_arrays = {}  # (backend, dtype) -> the device array _Tally sums into
        # On a GPU, replay each step's forward and backward from a captured CUDA graph (see
        # _StepGraphs); False runs every kernel from Python (the results are the same bits).
        self.cuda_graphs = True
        self._graphs = None          # the _StepGraphs of _graphs_backend (None: not usable)
        self._graphs_backend = None

    def _totals(self, B, dtype):
        """A zeroed 2-element array on backend B, the same one every epoch (no allocation)."""
        key = (B.name, np.dtype(dtype).str)
        totals = self._totals_arrays.get(key)
        if totals is None:
            totals = self._totals_arrays[key] = B.empty((2,), dtype)
        return B.fill(totals, 0)

    # -- one step ------------------------------------------------------------------------
    def train_step(self, xb, yb):
        """Forward, loss, backward and one optimizer update on a batch that lives where the
        model does; returns the loss value (read back from the device: the fit loop reads
        only every sync_every steps)."""
        tally = _Tally(self, model_backend(self.model))
        self._step(xb, yb, tally)
        return tally.read()["loss"]

    def _step(self, xb, yb, tally):
        self.step += 1
        graphs = self._step_graphs(tally.B) if self.cuda_graphs else None
        if graphs is None or not graphs.run(xb, yb, tally):
            self._forward_backward(xb, yb, tally)
        self.optimizer.step()

    def _step_graphs(self, B):
        """The step graphs on backend B, None where B, the loss or the model cannot use them:
        decided once per backend, not every step (it walks the model's layers)."""
        if self._graphs_backend is not B:
            self._graphs_backend = B
            self._graphs = _StepGraphs(self, B) if _StepGraphs.usable(self, B) else None
        return self._graphs

    def _forward_backward(self, xb, yb, tally):
        net = self.net
        tally.add(net.forward(xb), yb)
        net.backward(self.loss.backward(), need_dx=False)

    @property
    def net(self):
        """What training and evaluation run: the model, or, for a model ending in Softmax
        trained with SoftmaxCrossEntropy, the model without that Softmax: the loss applies
        softmax itself (fused and stable), so it is never applied twice. predict runs the
        whole model and gives probabilities. Re-derived when the model's layers change."""
        children = self.model.children()
        key = (id(self.model), len(children), id(children[-1][1]) if children else None)
        if self.__dict__.get("_net_key") != key:
            self._net = fit_inputs.logits_net(self.model, self.loss)
            self._net_key = key
        return self._net

    # -- fit -------------------------------------------------------------------------------
    def fit(self, x, y, epochs=1, batch_size=32, validation_data=None, validation_split=None,
            callbacks=(), verbose=1, shuffle=True, transform=None, resume_from=None,
            stream=None, sync_every=None):
        """Train `epochs` more epochs; with resume_from, load that checkpoint and train until
        `epochs` epochs in all are complete. Returns the History of the whole run.

        On a GPU the data set goes to the device once and batches are cut there (unless a
        transform augments on the host), and the loss and accuracy are summed on the device
        and read back every `sync_every` steps (default 50 on a GPU, 1 on the CPU) and at the
        epoch's end: the progress bar and the NaN check see them then."""
        epochs = check_positive_int(epochs, "epochs", "fit")
        batch_size = check_positive_int(batch_size, "batch_size", "fit")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"fit: expected verbose 0, 1 or 2, got {verbose!r}")
        callbacks = fit_inputs.check_callbacks(callbacks)
        x, y = self._data(x, y, "fit", "x and y")
        if validation_data is not None and validation_split:
            raise ValueError("fit: give validation_data or validation_split, not both")
        if validation_split:
            x, y, validation_data = fit_inputs.split_validation(x, y, validation_split)
        elif validation_split not in (None, 0):
            fit_inputs.split_validation(x, y, validation_split)  # 0.0 is off, else checked
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                got = (f"a {type(validation_data).__name__} of {len(validation_data)}"
                       if isinstance(validation_data, (tuple, list))
                       else type(validation_data).__name__)
                raise ValueError(f"fit: expected validation_data as a pair (x_val, y_val), "
                                 f"got {got}")
            validation_data = self._data(*validation_data, "fit", "validation_data")
        B = model_backend(self.model)
        self.loader = DataLoader(x, y, batch_size, shuffle=shuffle, seed=self.rng,
                                 transform=transform, reuse_buffers=True,
                                 device=B.name if transform is None else None)
        if sync_every is None:
            sync_every = 1 if B.name == "cpu" else 50
        if not isinstance(sync_every, int) or sync_every < 1:
            raise ValueError(f"fit: expected sync_every as a positive int, got {sync_every!r}")
        self.sync_every = sync_every
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            target = epochs
        else:
            target = self.epoch + epochs
        for cb in callbacks:
            cb.trainer = self
        self.stop_training = False
        self.model.train()
        for cb in callbacks:
            cb.on_train_begin()
        while self.epoch < target and not self.stop_training:
            logs = self._run_epoch(target, validation_data, callbacks, verbose, stream)
            self.epoch += 1
            self.history.append(self.epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(self.epoch, logs)
        for cb in callbacks:
            cb.on_train_end()
        return self.history

    def _run_epoch(self, epochs, validation_data, callbacks, verbose, stream):
        for cb in callbacks:
            cb.on_epoch_begin(self.epoch + 1)
        self.model.train()
        progress = Progress(self.epoch + 1, epochs, len(self.loader.x), verbose, stream)
        start = time.perf_counter()
        B = model_backend(self.model)
        tally = _Tally(self, B)
        last = len(self.loader) - 1
        for i, (xb, yb) in enumerate(self.loader):
            if self.loader.device is None:  # a host batch (augmented, or a CPU model)
                xb, yb = B.from_host(xb), B.from_host(yb)
            self._step(xb, yb, tally)
            if tally.steps >= self.sync_every or i == last:
                progress.update(tally.seen + tally.pending, tally.read())
        logs = tally.read()
        logs["lr"] = self.optimizer.lr
        logs["time"] = time.perf_counter() - start
        if validation_data is not None:
            val = self.evaluate(*validation_data, batch_size=self.loader.batch_size)
            logs.update({f"val_{k}": v for k, v in val.items()})
        progress.finish(logs)
        return logs

    # -- evaluation --------------------------------------------------------------------------
    def _cast(self, x):
        return cast_input(self.model, x)

    def _data(self, x, y, owner, what):
        return fit_inputs.check_data(self.model, self.loss, x, y, owner, what)

    def predict(self, x, batch_size=256):
        return predict(self.model, x, batch_size)

    def evaluate(self, x, y, batch_size=256):
        """{"loss": mean loss, metric: value} on (x, y) in inference mode."""
        batch_size = check_positive_int(batch_size, "batch_size", "evaluate")
        x, y = self._data(x, y, "evaluate", "x and y")
        was = self.model.training
        self.model.eval()
        B = model_backend(self.model)
        tally = _Tally(self, B, type(self.loss)())  # no regularization term: the data loss
        # on a GPU the data goes over once and the batches are views of it
        loader = DataLoader(x, y, batch_size, shuffle=False, seed=self.rng, reuse_buffers=True,
                            device=B.name)  # in order: it draws nothing from self.rng
        try:
            for xb, yb in loader:
                if loader.device is None:
                    xb, yb = B.from_host(xb), B.from_host(yb)
                tally.add(self.net.forward(xb), yb)
        finally:
            self.model.train(was)
        return tally.read()

    # -- checkpoints ---------------------------------------------------------------------------
    def _rng_states(self):
        return {"trainer": self.rng.bit_generator.state,
                "fastnn": initializers.default_rng().bit_generator.state,
                "layers": [layer.rng.bit_generator.state
                           for layer in _stochastic_layers(self.model)]}

    def save_checkpoint(self, path):
        """Model, optimizer, epoch, step, history and RNG states, written atomically."""
        extra = {"epoch": self.epoch, "step": self.step, "loss_steps": self.loss.steps,
                 "history": self.history.to_dict(), "rng": self._rng_states()}
        model_io.save(self.model, path, self.optimizer, extra=extra)

    def load_checkpoint(self, path):
        meta, arrays = model_io.read(path)
        extra = meta.get("extra") or {}
        if "epoch" not in extra:
            raise ValueError(f"{path}: a saved model, not a training checkpoint (no epoch)")
        params, optimizer_state = model_io.unpack(meta, arrays)
        self.model.load_state_dict(params)
        self.optimizer.load_state_dict(optimizer_state)
        self.epoch, self.step = int(extra["epoch"]), int(extra["step"])
        self.loss.steps = int(extra.get("loss_steps", 0))
        self.history = History.from_dict(extra["history"])
        rng = extra["rng"]
        self.rng.bit_generator.state = rng["trainer"]
        initializers.default_rng().bit_generator.state = rng["fastnn"]
        layers = _stochastic_layers(self.model)
        if len(layers) != len(rng["layers"]):
            raise ValueError(f"{path}: the checkpoint has {len(rng['layers'])} random layers, "
                             f"the model {len(layers)}")
        for layer, s in zip(layers, rng["layers"]):
            layer.rng.bit_generator.state = s
        return self


__all__ = ["History", "Trainer", "accuracy"]

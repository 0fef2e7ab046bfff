"""The training loop: Trainer (model.compile / fit / evaluate / predict hand over to it:
fastnn.fit_methods). It trains any model and imports no model class.

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

import numpy as np

from fastnn import checkpoint, fit_inputs, init as initializers, losses as losses_mod, optim
from fastnn._checks import is_device_array
from fastnn.backend import backend_of, cpu
from fastnn.datasets.loader import DataLoader
from fastnn.fit_inputs import cast_input
from fastnn.history import METRICS, History, Tally, accuracy
from fastnn.layers.base import check_positive_int
from fastnn.progress import Progress
from fastnn.train_step import EvalStep, TrainStep, all_layers, stochastic_layers


def model_backend(model):
    """The backend holding the model's parameters (the CPU for a model without any)."""
    params = list(model.named_parameters())
    return backend_of(params[0][1]) if params else cpu


def predict(model, x, batch_size=256):
    """The model's outputs for x in inference mode, as a new (host) array; host batches are
    moved to the model's device (x already on the GPU is cut there) and the outputs back."""
    x = cast_input(model, x)
    B = model_backend(model)
    on_device = is_device_array(x)
    was = model.training
    model.eval()
    try:
        outs = [np.array(B.to_host(model.forward(
            x[i:i + batch_size] if on_device else B.from_host(x[i:i + batch_size]))))
                for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    if not outs:
        raise ValueError("predict: expected at least one sample, got an empty array")
    return np.concatenate(outs)


class Trainer:
    def __init__(self, model, loss, optimizer, metrics=("accuracy",), seed=None):
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
        self._totals_arrays = {}  # (backend, dtype, loss) -> the device array Tally sums into
        self._host_batches = {}  # (backend, role, shape, dtype) -> where host batches go
        # On a GPU, replay each step's forward and backward from a captured CUDA graph (the
        # backend's step runner); False runs every kernel from Python (the same bits).
        self.cuda_graphs = True
        self._runner, self._runner_backend = None, None  # Backend.step_runner, per backend
        self._evaluation_loss = None  # what evaluate sums (_eval_loss)

    def _totals(self, B, dtype, loss):
        """A zeroed 2-element array on backend B that `loss` sums into, the same one every
        epoch (no allocation; one per loss: training's and evaluate's are two, so that an
        evaluation never zeroes sums a training tally has not read). Kept for the trainer's
        life, so made as a cache's (Backend.empty_cached: the first evaluation's drops none
        of training's graphs)."""
        key = (B.name, np.dtype(dtype).str, loss)
        totals = self._totals_arrays.get(key)
        if totals is None:
            totals = self._totals_arrays[key] = B.empty_cached((2,), dtype)
        return B.fill(totals, 0)

    # -- one step ------------------------------------------------------------------------
    def train_step(self, xb, yb):
        """Forward, loss, backward and one optimizer update on a batch that lives where the
        model does; returns the loss value (read back from the device: the fit loop reads
        only every sync_every steps)."""
        tally = Tally(self, model_backend(self.model))
        self._step(xb, yb, tally)
        return tally.read()["loss"]

    def _step(self, xb, yb, tally):
        self.step += 1
        if not self.cuda_graphs:
            TrainStep(self, tally)(xb, yb)
            return
        runner = self._step_runner(tally.B)
        step = TrainStep(self, tally, updates=self.optimizer.records())
        runner.run(step, xb, yb)
        if runner.failed:  # a capture failed (the runner warned): launches from now on
            self.cuda_graphs = False
        if not step.updates:
            self.optimizer.step()

    def step_replayable(self, seeded=None):
        """Whether a step could be replayed from a recording: its loss sums on the device
        (no value per step), and every layer that draws random numbers each step (`seeded`:
        the model's stochastic_layers, found here unless given) can take its seed from device
        memory (next_seed and seed_slot: fastnn.layers.dropout)."""
        return self.loss.accumulates and all(
            hasattr(layer, "draws_seed") and hasattr(layer, "next_seed")
            and hasattr(layer, "seed_slot")
            for layer in (stochastic_layers(self.model) if seeded is None else seeded))

    def _step_runner(self, B, evaluation=False):
        """What runs training (or evaluation) steps on backend B (Backend.step_runner: eagerly
        on the CPU, captured and replayed where B has graphs; one for each, so that neither
        drops the other's graph): asked once per backend, not every step (whether the step is
        replayable walks the model's layers)."""
        if self._runner_backend is not B:
            self._layers = all_layers(self.model)
            self._seeded_layers = stochastic_layers(self.model, self._layers)
            replayable = self.step_replayable(self._seeded_layers)
            self._runner = B.step_runner(replayable=replayable)
            self._eval_runner = B.step_runner(replayable=replayable)
            self._runner_backend = B
        return self._eval_runner if evaluation else self._runner

    @property
    def replays_steps(self):
        """Whether the last training step replayed a captured CUDA graph (False on the CPU,
        with cuda_graphs off, before a batch shape's capture, and after a failed capture)."""
        return bool(self.cuda_graphs and self._runner is not None and self._runner.replaying)

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

        On a GPU the data set goes to the device once (x and y already there are used as
        they are) and batches are cut there (unless a transform augments on the host), and
        the loss and accuracy are summed on the device and read back every `sync_every` steps
        (default 50 on a GPU, 1 on the CPU) and at the epoch's end: the progress bar and the
        NaN check see them then."""
        epochs = check_positive_int(epochs, "epochs", "fit")
        batch_size = check_positive_int(batch_size, "batch_size", "fit")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"fit: expected verbose 0, 1 or 2, got {verbose!r}")
        callbacks = fit_inputs.check_callbacks(callbacks)
        x, y = self._data(x, y, "fit", "x and y")
        x, y, validation_data = fit_inputs.validation(
            x, y, validation_data, validation_split,
            lambda xv, yv: self._data(xv, yv, "fit", "validation_data"))
        B = model_backend(self.model)
        if validation_data is not None and B.device_arrays and \
                B.host_array(validation_data[0]) is not None:
            # evaluated after every epoch: moved to the device once, not once per epoch
            validation_data = tuple(B.from_host(a) for a in validation_data)
        self.loader = DataLoader(x, y, batch_size, shuffle=shuffle, seed=self.rng,
                                 transform=transform, reuse_buffers=True,
                                 device=B.name if transform is None else None)
        if sync_every is None:
            sync_every = B.default_sync_every()
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

    def _batch_on(self, B, role, a):
        """A host batch on backend B. A device gets it copied into the same array every step
        of its shape (a new array per step would be an allocation every step). Where steps
        replay, that array is the one the graphs read (the step runner's input_buffer): one
        copy a step; elsewhere one of the trainer's, kept (Backend.empty_cached)."""
        if not B.device_arrays:
            return B.from_host(a)
        buf = self._step_runner(B).input_buffer(role, a) if self.cuda_graphs else None
        if buf is None:  # (role: "x" or "y", an x and a y of one shape are two arrays)
            key = (B.name, role, a.shape, a.dtype.str)
            buf = self._host_batches.get(key)
            if buf is None:
                buf = self._host_batches[key] = B.empty_cached(a.shape, a.dtype)
        return B.copy_from_host(np.ascontiguousarray(a), buf)

    def _run_epoch(self, epochs, validation_data, callbacks, verbose, stream):
        for cb in callbacks:
            cb.on_epoch_begin(self.epoch + 1)
        self.model.train()
        progress = Progress(self.epoch + 1, epochs, len(self.loader.x), verbose, stream)
        start = time.perf_counter()
        B = model_backend(self.model)
        tally = Tally(self, B)
        last = len(self.loader) - 1
        for i, (xb, yb) in enumerate(self.loader):
            if B.host_array(xb) is not None:  # a host batch (augmented, or a CPU model)
                xb, yb = self._batch_on(B, "x", xb), self._batch_on(B, "y", yb)
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
        tally = Tally(self, B, self._eval_loss())
        # on a GPU the data goes over once and the batches are views of it
        loader = DataLoader(x, y, batch_size, shuffle=False, seed=self.rng, reuse_buffers=True,
                            device=B.name)  # in order: it draws nothing from self.rng
        # on a GPU each batch's forward and loss replay as a graph, like training steps
        runner, step = self._step_runner(B, evaluation=True), EvalStep(self, tally)
        try:
            for xb, yb in loader:
                if B.host_array(xb) is not None:
                    xb, yb = B.from_host(xb), B.from_host(yb)
                if self.cuda_graphs:  # (a runner whose capture failed runs the step itself)
                    runner.run(step, xb, yb)
                else:
                    step(xb, yb)
        finally:
            self.model.train(was)
        return tally.read()

    def _eval_loss(self):
        """The loss evaluate sums, without the training loss's regularization term (the data
        loss): one per trainer and loss class, so that a recorded evaluation's buffers (the
        loss's own) are those every later evaluation writes."""
        if type(self._evaluation_loss) is not type(self.loss):
            self._evaluation_loss = type(self.loss)()
        self._evaluation_loss.steps = 0  # an evaluation's steps (a NaN names its own)
        return self._evaluation_loss

    # -- checkpoints (fastnn/checkpoint.py) ---------------------------------------------------
    def save_checkpoint(self, path):
        """Model, optimizer, epoch, step, history and RNG states, written atomically."""
        checkpoint.save(self, path)

    def load_checkpoint(self, path):
        checkpoint.load(self, path)
        return self


__all__ = ["History", "METRICS", "Trainer", "accuracy", "predict"]

"""One training step, or one evaluation step, as a backend's step runner takes it
(fastnn.backend.graphs): the forward, loss, backward and optimizer update of a Trainer's batch
(the forward and loss of an evaluation's), what a captured graph of it bakes in (key), and its
host bookkeeping; and the walks over a model's layers it and the trainer make."""


def all_layers(model):
    """The model and every layer inside it, in order."""
    out = [model]
    for _, child in model.children():
        out.extend(all_layers(child))
    return out


def stochastic_layers(model, layers=None):
    """The layers that draw random numbers each step (Dropout, DropConnect: an `rng`), among
    `layers` where the caller has walked the model already (all_layers(model))."""
    return [layer for layer in (all_layers(model) if layers is None else layers)
            if hasattr(layer, "rng")]


class EvalStep:
    """One evaluation step, the forward and the loss summed into the tally's device totals,
    in the form a backend's step runner takes (fastnn.backend.graphs): recorded and replayed
    like a training step (Trainer.evaluate; the model is in eval mode, so nothing draws a
    mask). The base of TrainStep: the key and host bookkeeping are the tally's and its loss's."""
    what = "an evaluation step"

    def __init__(self, trainer, tally):
        self.trainer, self.tally = trainer, tally

    def __call__(self, xb, yb):
        self.tally.add(self.trainer.net.forward(xb), yb)

    @property
    def loss(self):
        """The loss the step sums (the trainer's own, or evaluate's)."""
        return self.tally.loss

    def recorded_optimizer(self):
        return None

    def key(self, xb, yb):
        """What a captured step bakes in: the batch's shape and dtype, train/eval mode, each
        parameter's binding (its version: arrays, trainability, penalty) and its penalty's
        strength (a regularizer's lam may change in place), each layer's capture_key, the
        loss (the buffers it writes are its own), and the update's (Optimizer.capture_key)."""
        t = self.trainer
        # (lists, not generators: a replayed GPU step computes its key on the host every step)
        params = [(p.version, getattr(p.penalty, "lam", None)) for p in t.optimizer.params]
        # each layer's mode and the hyperparameters its kernels take (Layer.capture_key)
        layers = [layer.capture_key() for layer in t._layers]
        opt = self.recorded_optimizer()
        return (tuple(xb.shape), xb.dtype, tuple(yb.shape), yb.dtype, t.model.training,
                tuple(params), tuple(layers), self.loss, opt.capture_key() if opt else None)

    def seeded_layers(self):
        """The layers that draw a mask seed this step (not those in eval mode or at p = 0)."""
        return [layer for layer in self.trainer._seeded_layers if layer.draws_seed()]

    def prepare(self, xb, yb):
        self.tally.ensure_totals(xb.dtype)

    def host_state(self):
        return self.tally.pending, self.tally.steps, self.loss.steps

    def restore(self, state):
        self.tally.pending, self.tally.steps, self.loss.steps = state

    def count(self, n):
        self.loss.count_step()
        self.tally.count(n)

    def outputs(self):
        return self.loss.last_outputs()

    def restore_outputs(self, outputs):
        self.loss.restore_outputs(outputs)


class TrainStep(EvalStep):
    """One training step's forward, loss, backward and (with `updates`) the optimizer's
    update, in the form a backend's step runner takes (fastnn.backend.graphs): the trainer
    never sees a graph, and a backend without graphs simply calls the step. Without `updates`
    (an optimizer whose update cannot be recorded: Optimizer.records) the trainer updates
    after the step."""
    what = "the training step"

    def __init__(self, trainer, tally, updates=True):
        super().__init__(trainer, tally)
        self.updates = updates

    @property
    def loss(self):
        return self.trainer.loss

    def __call__(self, xb, yb):
        super().__call__(xb, yb)  # the forward and the loss
        t = self.trainer
        t.net.backward(t.loss.backward(), need_dx=False)
        if self.updates:
            t.optimizer.step()

    def recorded_optimizer(self):
        """The optimizer whose update is part of the step, or None (see fastnn.optim's
        numbers_slot: how a recording takes the numbers that change every step)."""
        return self.trainer.optimizer if self.updates else None


__all__ = ["EvalStep", "TrainStep", "all_layers", "stochastic_layers"]

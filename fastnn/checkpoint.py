"""A training checkpoint (Trainer.save_checkpoint, ModelCheckpoint, fit(resume_from=...)): the
model, the optimizer, the epoch and step, the history so far and every random generator the run
uses (fastnn's default one, each Dropout/DropConnect layer's, the data loader's), written
atomically (fastnn.io): a resumed run goes on bit for bit like one that never stopped."""
from fastnn import init as initializers, io as model_io
from fastnn.history import History
from fastnn.train_step import stochastic_layers


def rng_states(trainer):
    return {"trainer": trainer.rng.bit_generator.state,
            "fastnn": initializers.default_rng().bit_generator.state,
            "layers": [layer.rng.bit_generator.state
                       for layer in stochastic_layers(trainer.model)]}


def save(trainer, path):
    extra = {"epoch": trainer.epoch, "step": trainer.step, "loss_steps": trainer.loss.steps,
             "history": trainer.history.to_dict(), "rng": rng_states(trainer)}
    model_io.save(trainer.model, path, trainer.optimizer, extra=extra)


def load(trainer, path):
    """Put the checkpoint at path into trainer (its model, optimizer and generators)."""
    meta, arrays = model_io.read(path)
    extra = meta.get("extra") or {}
    if "epoch" not in extra:
        raise ValueError(f"{path}: a saved model, not a training checkpoint (no epoch)")
    params, optimizer_state = model_io.unpack(meta, arrays)
    trainer.model.load_state_dict(params)
    trainer.optimizer.load_state_dict(optimizer_state)
    trainer.epoch, trainer.step = int(extra["epoch"]), int(extra["step"])
    trainer.loss.steps = int(extra.get("loss_steps", 0))
    trainer.history = History.from_dict(extra["history"])
    rng = extra["rng"]
    trainer.rng.bit_generator.state = rng["trainer"]
    initializers.default_rng().bit_generator.state = rng["fastnn"]
    layers = stochastic_layers(trainer.model)
    if len(layers) != len(rng["layers"]):
        raise ValueError(f"{path}: the checkpoint has {len(rng['layers'])} random layers, "
                         f"the model {len(layers)}")
    for layer, s in zip(layers, rng["layers"]):
        layer.rng.bit_generator.state = s

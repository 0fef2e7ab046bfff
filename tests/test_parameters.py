"""Parameters as stable objects: moving their storage (model.to, the arena) keeps the objects,
optimizers follow them without re-checking every parameter on every step, and files written
before Parameters were objects still load."""
import copy
import pathlib

import numpy as np
import pytest

import fastnn
from fastnn import optim
from fastnn.layers import Dense, Parameter, ReLU
from fastnn.layers.base import Layer
from fastnn.losses import SoftmaxCrossEntropy

DATA = pathlib.Path(__file__).parent / "data"
X = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
LABELS = np.array([0, 1, 2, 0, 1, 2])


def _model():
    fastnn.seed(0)
    return fastnn.Sequential([Dense(4, 5), ReLU(), Dense(5, 3)])


def _step(model, opt, loss=SoftmaxCrossEntropy()):
    loss.forward(model.forward(X), LABELS)
    model.backward(loss.backward())
    opt.step()


def test_a_parameter_is_the_same_object_after_packing_and_moving():
    model = _model()
    before = list(model.named_parameters())
    assert all(isinstance(p, Parameter) for p in before)
    assert [p.name for p in before] == ["0.W", "0.b", "2.W", "2.b"]
    values = [p.value.copy() for p in before]
    versions = [p.version for p in before]
    model.to("cpu")  # packs the parameters into one arena: new storage, same objects
    after = list(model.named_parameters())
    assert all(a is b for a, b in zip(after, before))
    assert before[0] is model[0].parameter("W")
    arena = before[0].arena
    assert arena is not None and all(p.arena is arena for p in after)
    assert model[0].params["W"] is before[0].value is arena.views["0.W"][0]
    assert model[0].grads["W"] is before[0].grad is arena.views["0.W"][1]
    for p, v in zip(after, values):
        np.testing.assert_array_equal(p.value, v)
    # a new version for each move: what a captured step baked in is stale
    assert all(p.version != v for p, v in zip(after, versions))
    name, value, grad = before[0]  # still reads as the (name, value, grad) triple
    assert (name, value, grad) == ("0.W", before[0].value, before[0].grad)


def test_a_version_changes_with_storage_trainability_and_penalty_only():
    model = _model()
    opt = optim.SGD(model, lr=0.1)
    p = model[0].parameter("W")
    seen = {p.version}
    _step(model, opt)
    assert p.version in seen  # training writes into the storage, it does not move it
    for change in (lambda: model.freeze("0"), lambda: model.unfreeze(),
                   lambda: model.regularize(fastnn.regularizers.L2(0.1)),
                   lambda: model.to("cpu")):
        change()
        assert p.version not in seen
        seen.add(p.version)
    model.unfreeze()  # already trainable: nothing changed, nothing to recapture
    assert p.version in seen
    assert model[2].parameter("W").version not in seen  # unique across parameters


def test_optimizer_state_follows_a_parameter_whose_storage_moved():
    """An optimizer built before model.to() holds the same Parameter objects after it, and its
    state moves with them: bit for bit the run that never moved."""
    runs = []
    for move in (False, True):
        model = _model()
        opt = optim.Adam(model, lr=0.05)
        for step in range(4):
            if move and step == 2:
                model.to("cpu")  # repacks: every parameter's storage moves
            _step(model, opt)
        assert all(a is b for a, b in zip(opt.params, model.named_parameters()))
        runs.append((model.state_dict(), opt.state_dict()))
    (plain, plain_opt), (moved, moved_opt) = runs
    for key in plain:
        np.testing.assert_array_equal(moved[key], plain[key], err_msg=key)
    assert plain_opt["state"].keys() == moved_opt["state"].keys() == set(plain)
    for name, slots in plain_opt["state"].items():
        for slot, value in slots.items():
            np.testing.assert_array_equal(moved_opt["state"][name][slot], value)


def test_a_step_does_not_rescan_the_parameters():
    """Between changes, step() reads nothing from the layers (no check of which arrays they
    hold or whether they train); a change (freeze) is picked up at the next step."""
    reads = []

    class CountedDense(Dense):
        def __getattribute__(self, name):
            if name == "trainable":
                reads.append(name)
            return super().__getattribute__(name)

    fastnn.seed(0)
    model = fastnn.Sequential([CountedDense(4, 5), ReLU(), CountedDense(5, 3)])
    opt = optim.Momentum(model, lr=0.1)
    loss = SoftmaxCrossEntropy()
    counts = []
    for step in range(6):
        if step == 3:
            model.freeze("0")
        loss.forward(model.forward(X), LABELS)
        model.backward(loss.backward())
        reads.clear()
        opt.step()
        counts.append(len(reads))
    # the first step plans (one read per parameter), as does the first after freeze()
    assert counts == [4, 0, 0, 4, 0, 0]


def test_an_optimizer_finds_the_arena_without_looking_into_layers():
    model = _model().to("cpu")
    opt = optim.SGD(model, lr=0.1)
    calls = []
    update = opt._update
    opt._update = lambda B, p, g, state: (calls.append(p.shape), update(B, p, g, state))
    _step(model, opt)
    assert calls == [(43,)]  # one pass over the arena: 4*5 + 5 + 5*3 + 3
    assert opt.params[0].arena is model[0].parameter("W").arena


def test_layer_dicts_are_views_of_the_parameters():
    layer = Dense(3, 2, regularizer=fastnn.regularizers.L1(0.5))
    assert list(layer.params) == ["W", "b"] and list(layer.penalties) == ["W"]
    p = layer.parameter("W")
    new = np.ones((3, 2), dtype=np.float32)
    layer.params["W"] = new  # rebinding through the dict moves the same Parameter
    assert layer.parameter("W") is p and p.value is new
    layer.penalties["b"] = layer.penalties["W"]
    assert layer.parameter("b").penalty is p.penalty
    del layer.penalties["b"]
    assert "b" not in layer.penalties and layer.parameter("b").penalty is None
    with pytest.raises(KeyError, match="no parameter 'gamma'"):
        layer.parameter("gamma")

    class OldStyle(Layer):  # a layer written before Parameters: dicts assigned whole
        def __init__(self):
            super().__init__()
            self.params["w"] = np.arange(3.0)
            self.grads = {k: v * 0 for k, v in self.params.items()}

    old = OldStyle()
    assert [(n, list(v), list(g)) for n, v, g in old.named_parameters()] == \
        [("w", [0.0, 1.0, 2.0], [0.0, 0.0, 0.0])]


def test_a_copied_model_does_not_wake_the_original_optimizer():
    model = _model()
    opt = optim.SGD(model, lr=0.1)
    _step(model, opt)
    twin = copy.deepcopy(model)
    twin.to("cpu")  # moves the copy's parameters only
    assert not opt._watch.changed
    assert list(twin.named_parameters())[0] is not opt.params[0]


@pytest.mark.parametrize("packed", [False, True])
def test_a_file_saved_before_parameters_were_objects_loads_and_resumes(packed):
    """tests/data/pre_parameter_model.npz was written by the code at 410a98d (a Conv2D,
    BatchNorm, ReLU, MaxPool2D, Flatten, Dense with L2 model and its Adam state after two
    steps); pre_parameter_next_step.npz holds what that code computed one step later."""
    model = fastnn.load(DATA / "pre_parameter_model.npz")
    if packed:
        model.to("cpu")
    with np.load(DATA / "pre_parameter_model.npz") as saved:
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(value, saved[f"param/{name}"], err_msg=name)
        state = model.optimizer.state_dict()["state"]
        assert state.keys() == {p.name for p in model.named_parameters()}
        for name, slots in state.items():
            for slot, value in slots.items():
                np.testing.assert_array_equal(value, saved[f"optim/{name}/{slot}"])
    x = np.linspace(-1, 1, 6 * 16, dtype=np.float32).reshape(6, 1, 4, 4)
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(x), LABELS)
    model.backward(loss.backward())
    model.optimizer.step()
    with np.load(DATA / "pre_parameter_next_step.npz") as expected:
        after = model.state_dict()
        assert after.keys() == set(expected.files)
        for name in expected.files:
            np.testing.assert_array_equal(after[name], expected[name], err_msg=name)

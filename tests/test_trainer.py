"""model.compile/fit/evaluate/predict, the Trainer's callbacks, checkpoints that resume
bit-identically, the progress output, plots, and the `fastnn train` command (the CI job)."""
import io
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import callbacks
from fastnn.datasets import RandomShift
from fastnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

from graph_standin import recording_capture



def _blobs(n=600, seed=0):
    """Three separable classes of 2x4x4 'images' (class-dependent mean)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 2, 4, 4)).astype(np.float32)
    x[:, 0] += (y[:, None, None] - 1) * 1.5
    return x, y


def _model(seed=0):
    fastnn.seed(seed)
    return fastnn.Sequential([Conv2D(2, 4, 3, pad=1), ReLU(), MaxPool2D(2), Flatten(),
                              Dense(16, 16), ReLU(), Dropout(0.2), Dense(16, 3)])


def _compiled(name="adam", lr=0.01, seed=0, model_seed=0):
    model = _model(model_seed)
    return model.compile("cross_entropy", fastnn.optim.get(name, model, lr=lr), seed=seed)


def test_fit_evaluate_predict():
    x, y = _blobs()
    model = _compiled()
    out = io.StringIO()
    history = model.fit(x, y, epochs=4, batch_size=32, validation_split=0.25, stream=out)
    assert history.epoch == [1, 2, 3, 4]
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    lines = out.getvalue().splitlines()  # not a terminal: one clean line per epoch
    assert len(lines) == 4 and lines[0].startswith("Epoch 1/4") and "val_accuracy" in lines[0]
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] > 0.9
    pred = model.predict(x[:50], batch_size=16)
    assert pred.shape == (50, 3)
    # inference mode: no dropout draws, the same answer every time (and for any batch size,
    # up to the GEMM's rounding)
    np.testing.assert_array_equal(pred, model.predict(x[:50], batch_size=16))
    np.testing.assert_allclose(pred, model.predict(x[:50]), rtol=1e-5, atol=1e-5)
    quiet = io.StringIO()
    model.fit(x, y, epochs=5, batch_size=32, verbose=0, stream=quiet)
    assert quiet.getvalue() == ""
    with pytest.raises(RuntimeError, match="compile"):
        _model().fit(x, y)


def test_early_stopping_scheduler_and_logger(tmp_path):
    x, y = _blobs(200)
    model = _model().compile("cross_entropy", "sgd", seed=0)
    stop = callbacks.EarlyStopping(monitor="loss", mode="max", patience=2)  # loss falls: no gain
    sched = callbacks.LearningRateScheduler(fastnn.optim.StepDecay, step_size=1, gamma=0.5)
    log_csv = callbacks.HistoryLogger(tmp_path / "h.csv")
    log_json = callbacks.HistoryLogger(tmp_path / "h.json")
    history = model.fit(x, y, epochs=10, batch_size=50, verbose=0,
                        callbacks=[stop, sched, log_csv, log_json])
    assert history.epoch == [1, 2, 3] and stop.stopped_epoch == 3
    assert history.history["lr"] == pytest.approx([0.01, 0.005, 0.0025])
    rows = (tmp_path / "h.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,loss,accuracy") and len(rows) == 4
    assert json.loads((tmp_path / "h.json").read_text())["epoch"] == [1, 2, 3]
    # a second fit trains 5 more epochs (4..8); the schedule sees the run's epoch (0-based)
    fn = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    history = model.fit(x, y, epochs=5, batch_size=50, verbose=0, callbacks=[fn])
    assert history.epoch == list(range(1, 9))
    assert history.history["lr"][3:] == pytest.approx([0.1 / e for e in range(4, 9)])


def _run(tmp_path, epochs, resume=None, seed_model=0, checkpoint=None, packed=False,
         models=None):
    x, y = _blobs(300)
    model = _compiled(seed=7, model_seed=seed_model)
    if models is not None:
        models.append(model)
    if packed:  # as `fastnn train` does: model.to() packs the parameters into one arena
        model.to("cpu")
    cbs = [callbacks.ModelCheckpoint(checkpoint)] if checkpoint else []
    history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=cbs,
                        transform=RandomShift(1), resume_from=resume)
    return model, history


@pytest.mark.parametrize("replayed", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_resume_from_checkpoint_is_bit_identical(tmp_path, monkeypatch, packed, replayed):
    """3 epochs straight == 2 epochs, checkpoint, a fresh process-like restart (different init
    seed, new objects) resumed to 3: dropout masks, shuffling and augmentation included; also
    where the steps replay recordings (the CPU standing in for a GPU: a replay's seeds come
    from the layers' generators, which the checkpoint holds, as a launched step's do)."""
    from fastnn.backend import cpu
    recordings, models = [], []  # (models: each run's, the one being fitted last)
    if replayed:
        recordings = recording_capture(monkeypatch, cpu, lambda: models[-1].trainer)
    full, full_history = _run(tmp_path, 3, packed=packed, models=models)
    ckpt = tmp_path / "ckpt.npz"
    _run(tmp_path, 2, checkpoint=ckpt, packed=packed, models=models)
    fastnn.seed(12345)  # a restarted process would not share the default generator's state
    resumed, resumed_history = _run(tmp_path, 3, resume=ckpt, seed_model=99, packed=packed,
                                    models=models)
    if replayed:
        assert len(models) == 3 and all(m.trainer.cuda_graphs for m in models)
        # 300 = 9 x 32 + 12: each batch shape's second step recorded and its later ones
        # replayed, in runs of 3, 2 and 1 epochs (the last run's one partial batch runs as
        # written)
        assert [r.replays for r in recordings] == [26, 2, 17, 1, 8]
    for (n, a, _), (_, b, _) in zip(full.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=n)
    assert resumed_history.history["loss"] == full_history.history["loss"]
    assert resumed.trainer.optimizer.t == full.trainer.optimizer.t
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    with pytest.raises(ValueError, match="not a training checkpoint"):
        full.save(tmp_path / "plain.npz")
        _run(tmp_path, 3, resume=tmp_path / "plain.npz")


def test_divergence_names_the_step():
    x, y = _blobs(100)
    x[5, 0, 0, 0] = np.nan
    model = _model().compile("cross_entropy", "sgd", seed=0)
    with pytest.raises(FloatingPointError, match=r"nan at step \d+.*training step \d+, epoch 1"):
        model.fit(x, y, epochs=1, batch_size=10, verbose=0, shuffle=False)


def test_plots_are_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from fastnn import plots
    x, y = _blobs(100)
    model = _model().compile("cross_entropy", "adam", seed=0)
    history = model.fit(x, y, epochs=2, batch_size=50, validation_split=0.2, verbose=0)
    for path in (plots.learning_curves(history, tmp_path / "c.png"),
                 plots.conv_filters(model[0], tmp_path / "f.png")):
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fastnn_train_simple_cnn_on_a_10k_subset(tmp_path, mnist_root):
    """The CI job: `fastnn train`'s own code path, one epoch of simple-cnn on 10,000 images,
    test accuracy on the full 10,000 test images >= 95%. Batch 50 and lr 2e-3 give the 200
    steps of one short epoch the reach of a longer run: 96.2% for seeds 0, 1 and 2 (batch 100
    with lr 1e-3 gives 94.5-95.0%, too close to the bar)."""
    from fastnn import cli
    args = cli.build_parser().parse_args(
        ["train", "--model", "simple-cnn", "--epochs", "1", "--train-subset", "10000",
         "--batch-size", "50", "--lr", "0.002", "--data-dir", str(mnist_root),
         "--out", str(tmp_path / "run"), "--seed", "0"])
    out = io.StringIO()
    result = cli.train(args, stream=out)
    print(out.getvalue())
    assert result["test_accuracy"] >= 0.95, result["test_accuracy"]
    files = set(os.listdir(tmp_path / "run"))
    assert {"checkpoint.npz", "history.json", "history.csv", "model.npz", "result.json"} <= files
    model = fastnn.load(tmp_path / "run" / "model.npz")
    assert model.predict(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)
    assert "test accuracy" in out.getvalue()


def test_command_line_entry_points(tmp_path):
    help_text = subprocess.run([sys.executable, "-m", "fastnn", "train", "--help"],
                               capture_output=True, text=True, check=True).stdout
    for option in ("--model", "--epochs", "--batch-size", "--optimizer", "--lr", "--seed",
                   "--data-dir", "--out", "--device"):
        assert option in help_text
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    bad = subprocess.run([sys.executable, "-m", "fastnn", "train", "--device", "cuda",
                          "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    if not bad.returncode:
        pytest.skip("this machine has a usable GPU")
    assert "--device cuda is not usable here" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "fastnn", "train", "--model", "resnet"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_train_step_returns_the_batch_loss_and_updates():
    x, y = _blobs(20)
    model = _compiled(lr=0.05)
    model.eval()  # no dropout: the same forward twice
    expected = fastnn.losses.SoftmaxCrossEntropy().forward(model.forward(x), y)
    before = model.state_dict()["0.W"].copy()
    value = model.trainer.train_step(x, y)
    assert value == pytest.approx(expected, rel=1e-6)
    assert model.trainer.step == 1
    assert not np.array_equal(model.state_dict()["0.W"], before)


def test_step_graphs_fall_back_to_launches_when_a_capture_fails(monkeypatch):
    """Where a backend offers graphs, fit captures the second step of each batch shape; a
    capture that fails warns, undoes the step's host bookkeeping and trains on without
    graphs, to the same bits as a run that never tried (the CPU stands in for a GPU here:
    replays themselves are checked on a real one in tests/test_cuda.py)."""
    from fastnn.backend import cpu
    from fastnn.backend.graphs import EAGER, GraphedSteps
    x, y = _blobs(250)
    tries = []

    def capture(fn):
        tries.append(fn)
        raise RuntimeError("operation not permitted when stream is capturing")
    runs = []
    for graphs in (True, False):
        fastnn.seed(0)
        model = fastnn.Sequential([Conv2D(2, 4, 3, pad=1), ReLU(), MaxPool2D(2), Flatten(),
                                   Dense(16, 3)])
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=1e-2), seed=0)
        model.trainer.cuda_graphs = graphs
        with monkeypatch.context() as m:
            m.setattr(cpu, "graphs", True, raising=False)
            m.setattr(cpu, "capture", capture, raising=False)
            if graphs:
                with pytest.warns(RuntimeWarning, match="could not be captured as a CUDA graph"):
                    history = model.fit(x, y, epochs=2, batch_size=100, verbose=0)
            else:
                history = model.fit(x, y, epochs=2, batch_size=100, verbose=0)
        logs = {k: v for k, v in history.history.items() if k != "time"}
        runs.append((logs, [p.copy() for _, p, _ in model.named_parameters()],
                     model.trainer, model.trainer.loss.steps))
    assert len(tries) == 1 and runs[0][2].cuda_graphs is False  # tried once, then off
    assert runs[0][0] == runs[1][0] and runs[0][3] == runs[1][3] == 6
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    # not even tried: a model with a layer that draws random numbers on the host every step
    # and cannot take them from device memory (Dropout can: next_seed and seed_slot)
    class HostNoise(fastnn.layers.Layer):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(0)

        def _forward(self, x):
            return x + np.float32(self.rng.normal())

        def _backward(self, dy, need_dx):
            return dy
    with monkeypatch.context() as m:
        m.setattr(cpu, "graphs", True, raising=False)
        model = fastnn.Sequential([Flatten(), Dense(32, 3), HostNoise()])
        model.compile("cross_entropy", "adam")
        assert not model.trainer.step_replayable()
        assert cpu.step_runner(model.trainer.step_replayable()) is EAGER
        for net in (_model(), fastnn.Sequential([Flatten(), Dense(32, 3)])):
            model.trainer.model = net
            assert model.trainer.step_replayable()
            assert isinstance(cpu.step_runner(model.trainer.step_replayable()), GraphedSteps)
    assert cpu.step_runner(True) is EAGER  # without graphs the CPU simply runs the step


def test_step_graphs_are_decided_once_per_backend_and_can_be_turned_off(monkeypatch):
    """Whether a step can be a graph is decided once per backend (not a walk over the model
    every step), and trainer.cuda_graphs = False stops replays even after graphs were made."""
    from fastnn.backend import cpu
    from fastnn.backend.graphs import GraphedSteps
    x, y = _blobs(200)
    checks, runs = [], []
    real_runner = cpu.step_runner
    monkeypatch.setattr(cpu, "graphs", True, raising=False)
    monkeypatch.setattr(cpu, "step_runner",
                        lambda replayable=True: checks.append(cpu) or real_runner(replayable))
    monkeypatch.setattr(GraphedSteps, "run",
                        lambda self, step, xb, yb: runs.append(1) or step(xb, yb))
    fastnn.seed(0)
    model = fastnn.Sequential([Flatten(), Dense(32, 3)])
    model.compile("cross_entropy", "adam")
    model.fit(x, y, epochs=2, batch_size=50, verbose=0)
    # asked once: a runner for training steps, and one for evaluation steps
    assert checks == [cpu, cpu] and len(runs) == 8
    model.trainer.cuda_graphs = False
    model.fit(x, y, epochs=1, batch_size=50, verbose=0)
    assert checks == [cpu, cpu] and len(runs) == 8
    checks.clear()  # a model with random layers is not walked every step either (and its
    model = fastnn.Sequential([Flatten(), Dense(32, 8), Dropout(0.5), Dense(8, 3)])
    model.compile("cross_entropy", "adam")  # steps go to the graph runner: Dropout replays)
    model.fit(x, y, epochs=2, batch_size=50, verbose=0)
    assert checks == [cpu, cpu] and len(runs) == 16


def test_mse_steps_replay_and_log_the_host_loss_and_accuracy(monkeypatch):
    """MSE sums into device totals like the cross-entropy (issue 16: a step that reads a loss
    back every step cannot replay): a captured MSE step replays, bit for bit the eager one,
    and the logged loss and accuracy are those of the host's formulas (the mean over every
    element, history.accuracy on one-hot targets) for the same weights."""
    from fastnn.history import accuracy
    x, labels = _blobs(300)
    y = np.eye(3, dtype=np.float32)[labels]

    def build():
        fastnn.seed(2)
        model = fastnn.Sequential([Flatten(), Dense(32, 16), ReLU(), Dropout(0.2),
                                   Dense(16, 3)])
        return model.compile("mse", fastnn.optim.Adam(model, lr=1e-2), seed=0)
    first = build()
    assert first.trainer.step_replayable()
    # a step over the whole set logs the loss and accuracy of the initial weights, and of the
    # first Dropout mask: the one this forward draws from a generator seeded the same way
    first.train()
    out = first.forward(x)
    runs, recordings = _recorded_and_eager(
        monkeypatch, build, lambda model: model.fit(x, y, epochs=2, batch_size=50, verbose=0))
    assert len(recordings) == 1 and recordings[0].replays == 11 and runs[0][3].replays_steps
    whole = build()
    logs = whole.fit(x, y, epochs=1, batch_size=300, verbose=0, shuffle=False).history
    expected = fastnn.losses.MeanSquaredError().forward(out, y)
    assert logs["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert logs["accuracy"][0] == accuracy(out, y)


class _DropoutRate(callbacks.Callback):
    """Sets the model's first Dropout's rate at the start of every epoch (a schedule)."""

    def __init__(self, rates):
        self.rates = rates

    def on_epoch_begin(self, epoch):
        next(l for _, l in self.trainer.model.children() if isinstance(l, Dropout)).p = \
            self.rates[epoch - 1]


@pytest.mark.parametrize("wrap", ["dropout", "dropconnect", "p0-and-eval", "rate-schedule"])
def test_replayed_steps_with_dropout_are_the_eager_steps(monkeypatch, wrap):
    """A model with Dropout or DropConnect is captured (issue 16) and its replays draw a new
    mask every step, from seeds the runner draws with the layers' own generators and puts in
    device memory: the weights, the history and the generators' states equal eager training
    bit for bit (the CPU stands in for a GPU; tests/test_cuda.py replays on a real one)."""
    from fastnn.backend import cpu
    from fastnn.layers import DropConnect
    x, y = _blobs(300)

    def build():
        fastnn.seed(4)
        tail = {"dropconnect": [DropConnect(Dense(16, 16), 0.3), ReLU()],
                # layers that draw nothing: the runner must not draw for them either
                "p0-and-eval": [Dense(16, 16), ReLU(), Dropout(0.3), Dropout(0.0),
                                Dropout(0.5).eval()]}.get(wrap, [Dense(16, 16), ReLU(),
                                                                Dropout(0.3)])
        model = fastnn.Sequential([Conv2D(2, 4, 3, pad=1), ReLU(), MaxPool2D(2), Flatten()]
                                  + tail + [Dense(16, 3)])
        return model.compile("cross_entropy", fastnn.optim.Adam(model, lr=1e-2), seed=0)
    # a rate changed between epochs is a new graph: p is baked into the recorded kernels
    schedule = [_DropoutRate([0.3, 0.0])] if wrap == "rate-schedule" else []
    runs, seeds_seen = [], []
    for graphs in (True, False):
        model = build()
        with monkeypatch.context() as m:
            if graphs:
                recordings = recording_capture(m, cpu, lambda: model.trainer)
                copy_in = cpu.copy_from_host
                m.setattr(cpu, "copy_from_host", lambda host, out: seeds_seen.append(
                    host.copy()) or copy_in(host, out), raising=False)
            history = model.fit(x, y, epochs=2, batch_size=50, verbose=0, callbacks=schedule)
        rngs = [l.rng.bit_generator.state for _, l in model.children() if hasattr(l, "rng")]
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict(), rngs, model.trainer))
    # each step the runner ran as a graph copies its inputs in, one transfer of uint64 words:
    # its seeds, then the update's numbers of its step (Adam's step size and bias correction,
    # three float32 in the last two words)
    assert {h.dtype for h in seeds_seen} == {np.dtype(np.uint64)}
    numbers = [h[-2:].view(np.float32)[:3] for h in seeds_seen]
    seeds_seen = [h[:-2] for h in seeds_seen if len(h) > 2]
    graphed = [2, 3, 4, 5, 6, 8, 9, 10, 11, 12] if wrap == "rate-schedule" else range(2, 13)
    np.testing.assert_array_equal(numbers, [np.array(
        (1e-2 / (1 - 0.9 ** t), 1 / math.sqrt(1 - 0.999 ** t), 0), np.float32) for t in graphed])
    if wrap == "rate-schedule":  # epoch 2 at p = 0: a new graph, and no seeds to draw
        assert [r.replays for r in recordings] == [5, 5] and len(seeds_seen) == 5
    else:  # 12 steps: 1 eager, 11 replays, each with new seeds
        assert len(recordings) == 1 and recordings[0].replays == 11
        assert len({int(s[0]) for s in seeds_seen}) == len(seeds_seen) == 11
    assert runs[0][3].cuda_graphs and runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2]
    assert runs[0][3].replays_steps and not runs[1][3].replays_steps  # the last step
    for name in runs[1][1]:
        np.testing.assert_array_equal(runs[0][1][name], runs[1][1][name], err_msg=name)


def _recorded_and_eager(monkeypatch, build, fit):
    """build() -> a compiled model; fit(model) trains it. Returns, for recorded steps (the CPU
    standing in for a GPU) and then for eager ones: (the history without times, the state,
    the optimizer's state_dict, the trainer), and the recordings."""
    from fastnn.backend import cpu
    runs = []
    for graphs in (True, False):
        model = build()
        with monkeypatch.context() as m:
            if graphs:
                recordings = recording_capture(m, cpu, lambda: model.trainer)
            history = fit(model)
        runs.append(({k: v for k, v in history.history.items() if k != "time"},
                     model.state_dict(), model.trainer.optimizer.state_dict(), model.trainer))
    assert runs[0][0] == runs[1][0]
    for name in runs[1][1]:
        np.testing.assert_array_equal(runs[0][1][name], runs[1][1][name], err_msg=name)
    assert runs[0][2]["t"] == runs[1][2]["t"]
    for name, slots in runs[1][2]["state"].items():
        for slot, value in slots.items():
            np.testing.assert_array_equal(runs[0][2]["state"][name][slot], value)
    return runs, recordings


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
                                  "adamw"])
def test_the_update_is_recorded_with_the_step_and_follows_the_learning_rate(monkeypatch,
                                                                            name):
    """Every optimizer's update is part of the recorded step (one graph per step on a GPU,
    nothing launched from Python after it): it reads the numbers that change every step (the
    learning rate, Adam's bias corrections, AdamW's decay) from device memory, put there before
    each replay, so a schedule that changes lr between epochs replays the same graph, and the
    weights, the optimizer's state and step count equal eager training's bit for bit."""
    x, y = _blobs(200)

    def build():
        fastnn.seed(5)
        model = fastnn.Sequential([Conv2D(2, 4, 3, pad=1), ReLU(), MaxPool2D(2), Flatten(),
                                   Dense(16, 3)])
        return model.compile("cross_entropy", fastnn.optim.get(name, model, lr=0.05), seed=0)

    def fit(model):
        steps, opt = [], model.trainer.optimizer
        real = opt._update

        def spy(B, p, g, state, numbers):  # an update reading its numbers from the slot?
            steps.append(not isinstance(numbers, tuple))
            return real(B, p, g, state, numbers)
        spy.recordable = True  # as @recordable marks the rules' (a function on the instance)
        opt._update = spy
        schedule = callbacks.LearningRateScheduler(fastnn.optim.StepDecay, step_size=1,
                                                   gamma=0.5)
        history = model.fit(x, y, epochs=3, batch_size=50, verbose=0, callbacks=[schedule])
        model.steps_seen = steps
        return history
    runs, recordings = _recorded_and_eager(monkeypatch, build, fit)
    assert len(recordings) == 1 and recordings[0].replays == 11  # 12 steps: 1 eager
    # the recorded update ran in every replay, reading its numbers slot (n updates a step:
    # one per parameter, the model's are not packed)
    n = len(runs[1][3].model.steps_seen) // 12
    assert n == 4 and runs[1][3].model.steps_seen == [False] * 12 * n
    assert runs[0][3].model.steps_seen == [False] * n + [True] * 11 * n
    assert runs[1][2]["lr"] == pytest.approx(0.05 / 4)
    assert runs[0][3].replays_steps and runs[0][2]["t"] == 12


def test_an_update_that_cannot_be_recorded_runs_after_each_replay(monkeypatch):
    """An optimizer subclass that overrides the update (it may read numbers a recording would
    freeze: its _update(B, p, g, state) takes none) is not recorded: the step replays
    without it and the trainer updates after each replay, from Python: the same bits as eager
    training."""
    x, y = _blobs(200)

    class HalvingSGD(fastnn.optim.SGD):  # reads its own lr, not the recorded numbers
        def _update(self, B, p, g, state):
            B.sgd_update(p, g, self.lr / (1 + self.t))

    def build():
        fastnn.seed(6)
        model = fastnn.Sequential([Flatten(), Dense(32, 8), ReLU(), Dense(8, 3)])
        return model.compile("cross_entropy", HalvingSGD(model, lr=0.5), seed=0)
    assert not HalvingSGD(build(), lr=0.1).records()
    assert fastnn.optim.Adam(build()).records()
    runs, recordings = _recorded_and_eager(
        monkeypatch, build, lambda model: model.fit(x, y, epochs=2, batch_size=50, verbose=0))
    assert len(recordings) == 1 and recordings[0].replays == 7
    assert recordings[0].step.recorded_optimizer() is None and runs[0][2]["t"] == 8


def _count_cpu_arrays(monkeypatch):
    """The CPU backend, standing in for a GPU, counts the arrays it makes and those its caches
    let go of as its array_generation (a GPU's moves then; a captured graph is then stale)."""
    from fastnn.backend import cpu
    made, empty = [0], cpu.empty

    def counted(shape, dtype):
        made[0] += 1
        return empty(shape, dtype)

    def released(a):
        made[0] += 1
    monkeypatch.setattr(cpu, "empty", counted, raising=False)
    # (as on a GPU, the arrays caches make are not counted: Backend.empty_cached)
    monkeypatch.setattr(cpu, "empty_cached", empty, raising=False)
    # what the layers' buffers and the scratch cache let go of is (the scratch took the
    # backend's release when the backend was made)
    monkeypatch.setattr(cpu, "release", released, raising=False)
    monkeypatch.setattr(cpu.context.scratch, "_release", released)
    monkeypatch.setattr(cpu, "array_generation", lambda: made[0], raising=False)


def test_a_step_that_makes_arrays_every_time_is_named_once(monkeypatch):
    """Arrays made between every two steps of one shape (here an update that is not recorded,
    so it runs after each step, and makes a scratch array each time) leave the buffers a
    capture would read possibly stale before every step: no step is ever captured. The runner
    warns once, naming the step and its batch shape, and training equals eager training's bit
    for bit. The CPU stands in for a GPU and counts the arrays it makes, as a GPU does."""
    x, y = _blobs(400)
    _count_cpu_arrays(monkeypatch)

    class ScratchSGD(fastnn.optim.SGD):  # not recorded: the trainer runs it after each step
        def _update(self, B, p, g, state):
            scratch = B.empty(g.shape, g.dtype)
            B.copy(g, scratch)
            B.sgd_update(p, scratch, self.lr)

    def build():
        fastnn.seed(6)
        model = fastnn.Sequential([Flatten(), Dense(32, 8), ReLU(), Dense(8, 3)])
        return model.compile("cross_entropy", ScratchSGD(model, lr=0.5), seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs, recordings = _recorded_and_eager(
            monkeypatch, build, lambda model: model.fit(x, y, epochs=2, batch_size=50,
                                                        verbose=0))
    ours = [str(w.message) for w in caught if str(w.message).startswith("fastnn:")]
    assert len(ours) == 1 and "the training step at batch shape (50, 2, 4, 4) keeps making" \
        in ours[0], ours
    assert recordings == [] and not runs[0][3].replays_steps


def test_inputs_and_targets_of_one_shape_replay_from_two_buffers(monkeypatch):
    """A replay reads x and y from input buffers of its own, one per role: where both have one
    shape and dtype (an autoencoder's targets are its inputs), they are still two arrays, and
    training and validation equal eager ones bit for bit (one buffer would train on (y, y))."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    y = np.tanh(x[:, ::-1] * 0.5)  # the targets: another (200, 8) float32 array

    def build():
        fastnn.seed(9)
        model = fastnn.Sequential([Dense(8, 16), ReLU(), Dense(16, 8)])
        return model.compile("mse", fastnn.optim.Adam(model, lr=0.01), seed=0)
    runs, recordings = _recorded_and_eager(monkeypatch, build, lambda model: model.fit(
        x, y, epochs=2, batch_size=50, verbose=0, validation_data=(x[:100], y[:100])))
    assert [r.replays for r in recordings] == [7, 3]  # training; validation, 2 batches each


class _AtEpoch2(callbacks.Callback):
    def __init__(self, change):
        self.change = change

    def on_epoch_begin(self, epoch):
        if epoch == 2:
            self.change(self.trainer)


@pytest.mark.parametrize("name,change", [
    ("momentum", lambda t: setattr(t.optimizer, "momentum", 0.5)),
    ("momentum", lambda t: setattr(t.optimizer, "nesterov", True)),  # a flag, on the instance
    ("adam", lambda t: setattr(t.optimizer, "beta1", 0.8)),
    ("adamw", lambda t: setattr(t.optimizer, "weight_decay", 0.1)),
    ("adam", lambda t: t.model.freeze()),  # nothing left to update
    ("adam", lambda t: setattr(t, "optimizer", fastnn.optim.Adam(t.model, lr=0.05))),
    # an update set on the instance, not @recordable: from then on it runs after each replay
    ("adam", lambda t: setattr(t.optimizer, "_update",
                               lambda B, p, g, state: B.sgd_update(p, g, 0.01))),
], ids=["momentum", "nesterov-flag", "beta1", "weight-decay", "freeze-all", "new-optimizer",
        "update-on-instance"])
def test_what_a_recorded_update_bakes_in_is_recorded_again(monkeypatch, name, change):
    """The recorded update bakes in the optimizer (its state arrays), its hyperparameters but
    lr and its flags, and which parameters it trains: a change of any of them between epochs
    is a new recording, not a replay of the old update (the stand-in reruns Python, so here
    only the count of recordings shows it; on a GPU a stale replay would apply the old
    values), and training equals eager training's bit for bit."""
    x, y = _blobs(200)

    def build():
        fastnn.seed(10)
        model = fastnn.Sequential([Flatten(), Dense(32, 8), ReLU(), Dense(8, 3)])
        return model.compile("cross_entropy", fastnn.optim.get(name, model, lr=0.05), seed=0)
    runs, recordings = _recorded_and_eager(monkeypatch, build, lambda model: model.fit(
        x, y, epochs=2, batch_size=50, verbose=0, callbacks=[_AtEpoch2(change)]))
    assert [r.replays for r in recordings] == [3, 3]  # each epoch: 1 eager step, 3 replays


def test_an_evaluation_leaves_a_training_tally_its_sums():
    """Training and evaluation sum their losses into device arrays of their own (each
    recorded graph writes its own): an evaluate between a training tally's steps and its read
    does not zero what the tally has summed."""
    from fastnn.backend import cpu
    from fastnn.history import Tally
    x, y = _blobs(100)
    fastnn.seed(11)
    model = fastnn.Sequential([Flatten(), Dense(32, 3)])
    model.compile("cross_entropy", "sgd")
    trainer = model.trainer
    tally = Tally(trainer, cpu)
    tally.add(trainer.net.forward(x[:50]), y[:50])
    trainer.evaluate(x[50:], y[50:])
    expected = fastnn.losses.SoftmaxCrossEntropy().forward(trainer.net.forward(x[:50]), y[:50])
    assert tally.read()["loss"] == pytest.approx(expected, rel=1e-6)


def test_a_loaded_optimizer_state_is_recorded_again(monkeypatch):
    """Loading an optimizer's state between fits gives it new state arrays (a new plan): the
    recorded update would still write the old ones, so the next fit records the step again;
    training goes on as eager training does."""
    x, y = _blobs(200)

    def build():
        fastnn.seed(7)
        model = fastnn.Sequential([Flatten(), Dense(32, 8), ReLU(), Dense(8, 3)])
        return model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.02), seed=0)

    def fit(model):
        model.fit(x, y, epochs=1, batch_size=50, verbose=0)
        opt = model.trainer.optimizer
        opt.load_state_dict(opt.state_dict())
        return model.fit(x, y, epochs=1, batch_size=50, verbose=0)
    runs, recordings = _recorded_and_eager(monkeypatch, build, fit)
    assert [r.replays for r in recordings] == [3, 3]  # each fit: 1 eager step, 3 replays


def test_evaluation_steps_replay_and_give_the_eager_figures(monkeypatch):
    """evaluate records each batch's forward and loss (summed into device totals) as a graph
    of its own and replays it, as training steps are (issue 16: on a GPU every launch costs
    tens of microseconds, and fit evaluates after every epoch): fit's validation figures and a
    later evaluate equal eager evaluation's bit for bit, and the training step's recording
    keeps replaying beside it (the CPU stands in for a GPU)."""
    x, y = _blobs(200)

    def build():
        fastnn.seed(8)
        model = fastnn.Sequential([Conv2D(2, 4, 3, pad=1), ReLU(), MaxPool2D(2), Flatten(),
                                   Dense(16, 8), BatchNorm(8), Dropout(0.2), Dense(8, 3)])
        return model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.02), seed=0)

    def fit(model):
        history = model.fit(x, y, epochs=3, batch_size=50, verbose=0,
                            validation_data=(x[:100], y[:100]))
        history.history["evaluate"] = [model.evaluate(x[100:], y[100:], batch_size=50)]
        return history
    runs, recordings = _recorded_and_eager(monkeypatch, build, fit)
    assert set(runs[0][0]) >= {"val_loss", "val_accuracy", "evaluate"}
    # training: 12 steps, 1 eager; evaluation: 2 batches per evaluation, the first eager
    assert [(r.step.what, r.replays) for r in recordings] == [
        ("the training step", 11), ("an evaluation step", 3 * 2 - 1 + 2)]


def test_partial_batches_and_other_batch_sizes_keep_their_graphs(monkeypatch):
    """Each batch shape keeps a recording of its own (an epoch's full batches and its smaller last
    one, validation's, another evaluate batch size), and the layers keep their buffers per
    shape, so once each shape has run nothing is made and nothing is recorded again: from the
    second epoch every step is captured or replays (with one recording per runner, the last
    batch dropped the full batches' graph every epoch, and an evaluation at another batch size
    both). A new shape's arrays (its layers' buffers, the runner's input buffers, an
    evaluation's sums) are made for caches that keep them (Backend.empty_cached), so they
    drop no graph of another shape: training after an evaluation at a new batch size replays
    every step (on a GPU one at a batch larger than any before also grows scratch buffers,
    which drops the graphs once: tests/test_cuda.py). The figures equal eager training's bit
    for bit. The CPU stands in for a GPU and counts the arrays it makes and lets go of, as a
    GPU does."""
    from fastnn.backend import cpu
    x, y = _blobs(230)
    _count_cpu_arrays(monkeypatch)

    class Snapshot(callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(totals())
    runs = []
    for graphs in (True, False):
        fastnn.seed(3)
        model = fastnn.Sequential([Conv2D(2, 4, 3, pad=1), ReLU(), MaxPool2D(2), Flatten(),
                                   Dense(16, 8), BatchNorm(8), Dropout(0.2), Dense(8, 3)])
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.02), seed=0)
        with monkeypatch.context() as m, warnings.catch_warnings():
            # shapes that come back are not steps that make arrays every time: no warning
            warnings.filterwarnings("error", message="fastnn:")
            recordings = recording_capture(m, cpu, lambda: model.trainer) if graphs else []

            def totals():  # (recordings made, replays) so far
                return len(recordings), sum(r.replays for r in recordings)
            seen = [totals()]
            # 230 = 4 x 50 + 30, validation 70 = 50 + 20: four shapes
            fit = dict(batch_size=50, verbose=0, validation_data=(x[:70], y[:70]),
                       callbacks=[Snapshot()])
            model.fit(x, y, epochs=4, **fit)
            evaluations = []
            for _ in range(4):  # 100 = 64 + 36
                evaluations.append(model.evaluate(x[:100], y[:100], batch_size=64))
                seen.append(totals())
            history = model.fit(x, y, epochs=3, **fit)  # epochs 5 to 7
        runs.append((history.history, evaluations, model.state_dict(), seen, recordings))
    (history, evaluations, state, seen, recordings), eager = runs
    steps = [b[1] - a[1] for a, b in zip(seen, seen[1:])]
    new = [b[0] - a[0] for a, b in zip(seen, seen[1:])]
    # epochs 1-4: 7 steps each (5 training, 2 validation). Epoch 1 runs each shape's first
    # step as written and captures the full batch's second; epoch 2 captures the other three
    # shapes, and every step after replays
    assert steps[:4] == [3, 7, 7, 7] and new[:4] == [1, 3, 0, 0], str((steps, new))
    # evaluations at 64: two new shapes, run as written, captured, then replayed
    assert steps[4:8] == [0, 2, 2, 2] and new[4:8] == [0, 2, 0, 0], str((steps, new))
    # epochs 5-7: the evaluations' new arrays dropped none of training's graphs
    assert steps[8:] == [7, 7, 7] and new[8:] == [0, 0, 0], str((steps, new))
    assert {r.made for r in recordings} == {0}, [r.made for r in recordings]  # while recorded
    assert eager[3] == [(0, 0)] * len(seen)
    assert {k: v for k, v in history.items() if k != "time"} == {
        k: v for k, v in eager[0].items() if k != "time"}
    assert evaluations == eager[1]
    for name in state:
        np.testing.assert_array_equal(state[name], eager[2][name], err_msg=name)


def test_a_new_fit_replays_the_graphs_of_the_last(monkeypatch):
    """Each fit call makes a new loader, and its arrays (the epoch's batches) are not ones a
    recorded step reads (the runner copies each batch into its own input buffers): fit after
    fit, every step replays the graphs recorded in the first, validation's included. (A new
    loader's arrays used to drop every graph: each fit ran its first steps as written and
    recorded them again.) The CPU stands in for a GPU and counts the arrays it makes, as a
    GPU does; tests/test_cuda.py checks the GPU's count."""
    from fastnn.backend import cpu
    x, y = _blobs(230)
    _count_cpu_arrays(monkeypatch)
    model = _compiled()
    recordings = recording_capture(monkeypatch, cpu, lambda: model.trainer)
    fit = dict(batch_size=50, verbose=0, validation_data=(x[:70], y[:70]))
    # 230 = 4 x 50 + 30, validation 70 = 50 + 20: four batch shapes, each recorded once, by
    # the second epoch
    model.fit(x, y, epochs=3, **fit)
    recorded, replays = len(recordings), sum(r.replays for r in recordings)
    assert recorded == 4 and sorted(r.batch for r in recordings) == [20, 30, 50, 50]
    for _ in range(3):
        model.fit(x, y, epochs=1, **fit)
        assert len(recordings) == recorded and model.trainer.replays_steps
        assert sum(r.replays for r in recordings) == replays + 7  # 5 training, 2 validation
        replays += 7


def test_fastnn_seed_alone_makes_fit_reproducible():
    """fastnn.seed(s) before building and compiling fixes the weights, the dropout masks and
    the shuffling: compile(seed=) is not needed (it used to be, for the shuffling)."""
    x, y = _blobs(200)

    def run():
        model = _model(seed=3)  # fastnn.seed(3), then the layers
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.01))
        history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        return model.state_dict(), history.history["loss"]
    (first, loss_a), (second, loss_b) = run(), run()
    assert loss_a == loss_b
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # a standalone DataLoader without seed= follows fastnn.seed too
    orders = []
    for _ in range(2):
        fastnn.seed(5)
        orders.append(np.concatenate([yb for _, yb in
                                      fastnn.datasets.DataLoader(x, np.arange(200), 50)]))
    np.testing.assert_array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], np.arange(200))


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 2.5}, "fit: expected epochs as a positive int, got 2.5"),
    ({"epochs": -1}, "fit: expected epochs as a positive int, got -1"),
    ({"epochs": 0}, "fit: expected epochs as a positive int, got 0"),
    ({"epochs": "2"}, "fit: expected epochs as a positive int, got '2'"),
    ({"batch_size": 0}, "fit: expected batch_size as a positive int, got 0"),
    ({"validation_split": "0.1"}, r"fit: expected validation_split as a number in \(0, 1\)"),
    ({"validation_split": 1.5}, r"fit: expected validation_split as a number in \(0, 1\)"),
    ({"validation_split": 0.001}, "validation_split=0.001 of 60 samples leaves no validation"),
    ({"validation_data": "val"}, r"expected validation_data as a pair \(x_val, y_val\), got str"),
    ({"verbose": 3}, "fit: expected verbose 0, 1 or 2, got 3"),
])
def test_fit_refuses_bad_arguments_by_name(kwargs, message):
    x, y = _blobs(60)
    model = _compiled()
    before = model.state_dict()
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, **{"verbose": 0, **kwargs})
    assert model.trainer.epoch == 0 and model.trainer.step == 0  # nothing ran
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_fit_refuses_empty_and_mismatched_data():
    x, y = _blobs(60)
    model = _compiled()
    with pytest.raises(ValueError, match=r"validation_data as a pair \(x_val, y_val\), got a "
                                         "tuple of 1"):
        model.fit(x, y, validation_data=(x,), verbose=0)
    with pytest.raises(ValueError, match=r"fit: expected at least one sample in x and y, got "
                                         r"shape \(0, 2, 4, 4\)"):
        model.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(ValueError, match=r"fit: expected x and y with the same number of "
                                         r"samples, got shapes \(60, 2, 4, 4\) and \(59,\)"):
        model.fit(x, y[:59], verbose=0)
    with pytest.raises(ValueError, match="at least one sample in validation_data"):
        model.fit(x, y, validation_data=(x[:0], y[:0]), verbose=0)
    with pytest.raises(ValueError, match="evaluate: expected at least one sample"):
        model.evaluate(x[:0], y[:0])
    with pytest.raises(TypeError, match="the class EarlyStopping"):
        model.fit(x, y, callbacks=[callbacks.EarlyStopping], verbose=0)
    # an empty batch reaching a loss is named as such, not as a diverging loss
    empty = np.zeros((0, 3), np.float32)
    for loss, target in ((fastnn.losses.SoftmaxCrossEntropy(), np.zeros(0, np.int64)),
                         (fastnn.losses.MeanSquaredError(), empty)):
        with pytest.raises(ValueError, match=r"expected a batch of at least one sample, got "
                                             r"predictions of shape \(0, 3\)"):
            loss.forward(empty, target)
    with pytest.raises(ValueError, match="at least one sample"):
        model.trainer.train_step(x[:0], y[:0])


def test_a_final_softmax_with_cross_entropy_trains_through_the_fused_loss():
    """Softmax() last plus loss="cross_entropy": training and evaluation skip the Softmax (the
    loss applies it, fused and stable), so the run is bit for bit that of the same model
    without it (it applied softmax twice: the loss stalled), and predict keeps it."""
    x, y = _blobs(300)
    runs = []
    for head in ([], [fastnn.layers.Softmax()]):
        fastnn.seed(0)
        model = fastnn.Sequential([Flatten(), Dense(32, 16), ReLU(), Dropout(0.1),
                                   Dense(16, 3)] + head)
        model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.01))
        history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
        runs.append((model, {k: v for k, v in history.history.items() if k != "time"}))
    (plain, logs_plain), (soft, logs_soft) = runs
    assert logs_plain == logs_soft
    for (name, a, _), (_, b, _) in zip(plain.named_parameters(), soft.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert soft.evaluate(x, y) == plain.evaluate(x, y)
    probs = soft.predict(x[:20])
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    e = np.exp(plain.predict(x[:20]) - plain.predict(x[:20]).max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    # one-hot targets train the same (converted to class indices once)
    fastnn.seed(0)
    model = fastnn.Sequential([Flatten(), Dense(32, 16), ReLU(), Dropout(0.1), Dense(16, 3)])
    model.compile("cross_entropy", fastnn.optim.Adam(model, lr=0.01))
    history = model.fit(x, np.eye(3, dtype=np.float32)[y], epochs=2, batch_size=32,
                        validation_split=0.2, verbose=0)
    assert {k: v for k, v in history.history.items() if k != "time"} == logs_plain
    with pytest.raises(ValueError, match="one-hot label rows"):
        model.fit(x, np.full((300, 3), 1 / 3, np.float32), verbose=0)
    # a Softmax the loss cannot skip (inside a nested block) is refused, not applied twice
    nested = fastnn.Sequential([Flatten(), fastnn.Sequential([Dense(32, 3),
                                                              fastnn.layers.Softmax()])])
    with pytest.raises(ValueError, match="Softmax inside a nested block"):
        nested.compile("cross_entropy", "adam").fit(x, y, verbose=0)
    # with another loss a final Softmax is an ordinary layer
    mse = fastnn.Sequential([Flatten(), Dense(32, 3), fastnn.layers.Softmax()])
    mse.compile("mse", "adam", metrics=())
    assert mse.trainer.net is mse


def test_checkpoint_paths_take_the_epoch_and_the_logs(tmp_path):
    x, y = _blobs(100)
    model = _compiled()
    saver = callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}-{val_accuracy:.2f}.npz"))
    history = model.fit(x, y, epochs=2, batch_size=50, validation_split=0.2, verbose=0,
                        callbacks=[saver])
    names = sorted(os.listdir(tmp_path))
    assert names == [f"ckpt-{e + 1:02d}-{a:.2f}.npz"
                     for e, a in enumerate(history.history["val_accuracy"])]
    assert saver.last_saved == (str(tmp_path / names[-1]), 2)


def test_graphed_steps_capture_the_second_step_of_a_key_and_replay_the_rest():
    """fastnn.backend.graphs on a stand-in backend and step (what a GPU does cannot run here):
    a key's first step runs as written, its second is captured (the step's host side runs
    once, in the capture) and replayed, later ones are replays with the host side counted
    and their capture's outputs put back (with two keys' graphs in turn, the Python last ran
    at the other's shape); a new key or an array made since the capture starts over; a failed
    capture puts the host side back, warns once and leaves every later step to run as
    written, and so does a step that makes an array while it is recorded (it would make one
    every step: a replay would write into arrays freed after the capture)."""
    import warnings
    from fastnn.backend.graphs import GraphedSteps

    class Backend:
        def __init__(self):
            self.made, self.log = 0, []

        def empty(self, shape, dtype):
            self.made += 1
            return np.empty(shape, dtype)

        def empty_cached(self, shape, dtype):  # (the runner's input buffers: kept)
            return np.empty(shape, dtype)

        def array_generation(self):
            return self.made

        def copy(self, a, out):
            out[...] = a
            return out

        def capture(self, fn):
            self.log.append("capture")
            fn()
            return type("Graph", (), {"replay": lambda g: self.log.append("replay")})()

        def capture_key(self):
            return ()

    class Step:
        def __init__(self, B):
            self.B, self.ran, self.counted, self.host = B, [], [], 0

        def __call__(self, xb, yb):
            self.ran.append(xb)
            self.host += 1
            self.out = ("written at batch", len(xb))  # what a loss's cache holds

        def key(self, xb, yb):
            return xb.shape

        def prepare(self, xb, yb):
            self.B.log.append("prepare")

        def host_state(self):
            return self.host

        def restore(self, state):
            self.host = state

        def count(self, n):
            self.counted.append(n)
            self.host += 1

        def outputs(self):
            return self.out

        def restore_outputs(self, out):
            self.out = out

        def seeded_layers(self):
            return []

        def recorded_optimizer(self):
            return None

    B = Backend()
    step, runner = Step(B), GraphedSteps(B)
    xs = [np.full((2, 3), i, np.float32) for i in range(4)]
    y = np.zeros(2, np.int64)
    for x in xs[:3]:
        runner.run(step, x, y)
    assert step.ran[0] is xs[0] and len(step.ran) == 2  # run as written, then in the capture
    # the capture read the graph's input buffer, which the replay of step 3 refilled
    assert step.ran[1] is not xs[1] and (step.ran[1] == 2).all()
    assert B.log == ["prepare", "capture", "replay", "prepare", "replay"]
    assert step.counted == [2] and step.host == 3  # one host side per step
    runner.run(step, np.zeros((5, 3), np.float32), y)  # a new key: runs as written
    assert len(step.ran) == 3 and B.log[-1] == "replay"
    # two keys' graphs in turn: a replay leaves its own capture's outputs, not those of the
    # step whose Python ran last (a loss's probabilities of the last batch, at its shape)
    ran = len(step.ran)
    x5 = np.zeros((5, 3), np.float32)
    for x, ran_as_written in ((x5, True), (xs[0], False), (x5, False), (xs[0], False),
                              (x5, False), (xs[1], False)):
        # batch 5 captured (its input buffers, kept, leave batch 2's graph), then both
        # replayed in turn
        runner.run(step, x, y)
        ran += ran_as_written
        assert len(step.ran) == ran and step.out == ("written at batch", len(x))
    del step.ran[3:]
    B.made += 1  # an array made since: the graph is dropped, not replayed
    runner.run(step, xs[3], y)
    assert len(step.ran) == 4 and step.ran[-1] is xs[3]

    def fail(fn):
        fn()
        raise RuntimeError("operation not permitted when stream is capturing")
    B.capture = fail
    host = step.host
    with pytest.warns(RuntimeWarning, match="could not be captured"):
        runner.run(step, xs[3], y)  # the capture fails: host side put back, then run as written
    assert runner.failed and step.host == host + 1 and step.ran[-1] is xs[3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner.run(step, xs[3], y)
    assert step.host == host + 2 and step.ran[-1] is xs[3]

    class Making(Step):  # makes an array every step (through the backend: counted)
        def __call__(self, xb, yb):
            super().__call__(xb, yb)
            self.B.empty((1,), np.float32)
    runner = GraphedSteps(Backend())
    step = Making(runner.B)
    runner.run(step, xs[0], y)  # as written; the next one is recorded, and makes an array
    with pytest.warns(RuntimeWarning, match=r"made \(or let go of\) 1 array\(s\) while"):
        runner.run(step, xs[1], y)
    assert runner.failed and step.host == 2 and step.ran[-1] is xs[1]


def test_a_captured_step_is_keyed_on_what_its_kernels_bake_in():
    """A recorded step replays only while every layer's capture_key is the one it was recorded
    with: a changed Dropout rate, LeakyReLU slope or BatchNorm momentum, or one layer put in
    eval mode, is a new graph (a replay would run the old value); nothing else is."""
    from fastnn.backend import cpu
    from fastnn.layers import BatchNorm, LeakyReLU
    from fastnn.train_step import TrainStep
    fastnn.seed(0)
    model = fastnn.Sequential([Dense(4, 8), BatchNorm(8), LeakyReLU(0.1), Dropout(0.3),
                               Dense(8, 3)])
    model.compile("cross_entropy", "adam")
    trainer = model.trainer
    trainer._step_runner(cpu)
    step = TrainStep(trainer, None)
    x, y = np.zeros((5, 4), np.float32), np.zeros(5, np.int64)
    key = step.key(x, y)
    assert step.key(x, y) == key
    changes = [(model[1], "momentum", 0.5), (model[2], "alpha", 0.2), (model[3], "p", 0.0),
               (model[1], "training", False)]
    for layer, name, value in changes:
        old = getattr(layer, name)
        setattr(layer, name, value)
        assert step.key(x, y) != key, name
        setattr(layer, name, old)
        assert step.key(x, y) == key, name

"""Sequential and Residual containers, saving and loading, losses, and the errors users see."""
import os

import numpy as np
import pytest

import fastnn
from fastnn import naive
from fastnn.layers import (BatchNorm, Conv2D, Dense, DropConnect, Dropout, Flatten, MaxPool2D,
                           ReLU, Residual)
from fastnn.losses import MeanSquaredError, SoftmaxCrossEntropy


def _cnn(seed=0):
    fastnn.seed(seed)
    return fastnn.Sequential([
        ("conv1", Conv2D(1, 4, 3, pad=1)), BatchNorm(4), ReLU(), MaxPool2D(2),
        Residual(fastnn.Sequential([Conv2D(4, 4, 3, pad=1), ReLU()])),
        Flatten(), DropConnect(Dense(4 * 4 * 4, 16), 0.2), ReLU(), Dropout(0.3), Dense(16, 3)])


def _train(model, opt, steps, seed=1):
    rng = np.random.default_rng(seed)
    loss = SoftmaxCrossEntropy()
    for _ in range(steps):
        x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
        loss.forward(model.forward(x), rng.integers(0, 3, 5))
        model.backward(loss.backward(), need_dx=False)
        opt.step()


def test_named_parameters_and_indexing():
    model = _cnn()
    names = [n for n, _, _ in model.named_parameters()]
    assert names == ["conv1.W", "conv1.b", "1.gamma", "1.beta", "4.block.0.W", "4.block.0.b",
                     "6.W", "6.b", "9.W", "9.b"]
    assert model["conv1"] is model[0]
    assert isinstance(model[-1], Dense)
    assert len(model[:4]) == 4 and model[:4][0] is model[0]
    assert [n for n, _ in model.named_state()] == ["1.running_mean", "1.running_var"]
    model.eval()
    assert not any(layer.training for layer in model.layers_flat())
    model.train()
    assert all(layer.training for layer in model.layers_flat())
    with pytest.raises(KeyError, match="conv1"):
        model["nope"]


def test_save_load_round_trips_model_and_optimizer_bitwise(tmp_path):
    model = _cnn()
    opt = fastnn.optim.Adam(model, lr=0.01)
    _train(model, opt, 3)
    path = tmp_path / "model.npz"
    model.save(path, optimizer=opt)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left behind
    loaded = fastnn.load(path)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert "1.running_var" in b and not np.all(b["1.running_var"] == 1)
    sa, sb = opt.state_dict(), loaded.optimizer.state_dict()
    assert (sa["t"], sa["lr"], sa["hyper"]) == (sb["t"], sb["lr"], sb["hyper"])
    for name in sa["state"]:
        for slot in sa["state"][name]:
            np.testing.assert_array_equal(sa["state"][name][slot], sb["state"][name][slot])
    x = np.random.default_rng(5).standard_normal((2, 1, 8, 8)).astype(np.float32)
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))


def test_load_state_dict_strict_and_transfer():
    trained = _cnn(seed=3)
    fresh = _cnn(seed=4)
    fresh.load_state_dict(trained.state_dict())
    np.testing.assert_array_equal(fresh["conv1"].params["W"], trained["conv1"].params["W"])
    # a new head with 5 classes: the trunk loads with strict=False, the head keeps its init
    fastnn.seed(9)
    new = fastnn.Sequential([("conv1", Conv2D(1, 4, 3, pad=1)), BatchNorm(4), ReLU(),
                             MaxPool2D(2), Flatten(), ("head", Dense(64, 5))])
    trunk = {k: v for k, v in trained.state_dict().items() if k.startswith(("conv1", "1."))}
    with pytest.raises(KeyError, match="missing"):
        new.load_state_dict(trunk)
    missing, unexpected = new.load_state_dict(trunk, strict=False)
    assert missing == ["head.W", "head.b"] and unexpected == []
    np.testing.assert_array_equal(new["conv1"].params["W"], trained["conv1"].params["W"])
    with pytest.raises(ValueError, match="shape"):
        new.load_state_dict({"head.W": np.zeros((3, 3))}, strict=False)
    new.freeze("conv1", "1")
    trainable = [p.name for p in new.named_parameters() if p.trainable]
    assert trainable == ["head.W", "head.b"]


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    model = _cnn()
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_load_rejects_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a fastnn file"):
        fastnn.load(bad)
    bad.write_bytes(b"PK\x03\x04 but no archive after it")
    with pytest.raises(ValueError, match="not a readable fastnn model file"):
        fastnn.load(bad)
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="metadata"):
        fastnn.load(tmp_path / "plain.npz")


def test_summary_table():
    text = _cnn().summary((1, 8, 8), print_fn=None)
    assert "conv1 (Conv2D)" in text and "(None, 4, 8, 8)" in text and "(None, 3)" in text
    assert "Total params: 1,287" in text  # conv1 40 + BatchNorm 8 + residual conv 148 + 1040 + 51
    assert _cnn().num_params() == 1287


def test_wrong_input_shape_names_the_layer():
    model = fastnn.Sequential([("conv1", Conv2D(1, 30, 5)), ReLU(), Flatten(), Dense(30 * 24 * 24, 10)])
    with pytest.raises(ValueError, match=r"Conv2D 'conv1': expected input \(N, 1, H, W\), "
                                         r"got \(100, 784\)"):
        model.forward(np.zeros((100, 784), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Dense '0': expected input \(N, 10\), got \(2, 1, 4, 4\)"
                                         r" \(put a Flatten\(\) before it\)"):
        fastnn.Sequential([Dense(10, 2)]).forward(np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(TypeError, match="float32 input"):
        model.forward(np.zeros((1, 1, 28, 28)))
    with pytest.raises(ValueError, match="kernel 5x5 is larger"):
        model.forward(np.zeros((1, 1, 3, 3), dtype=np.float32))


def test_softmax_cross_entropy_matches_the_oracle_and_is_stable():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4)) * 3
    labels = rng.integers(0, 4, 6)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)
    ref, probs = naive.softmax_cross_entropy_forward(logits, labels)
    assert value == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), naive.softmax_cross_entropy_backward(probs, labels),
                               rtol=1e-12, atol=1e-15)
    assert loss.forward(logits, np.eye(4)[labels]) == pytest.approx(ref, rel=1e-12)  # one-hot
    huge = np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32)
    assert loss.forward(huge, np.array([0])) == pytest.approx(0.0, abs=1e-6)
    assert loss.forward(huge, np.array([2])) == pytest.approx(2000.0, rel=1e-6)  # no log(0)
    assert fastnn.gradcheck_loss(SoftmaxCrossEntropy(), logits, labels) < 1e-7
    # grad_out=: the forward writes the backward's dlogits too, bit for bit (the loss uses it)
    from fastnn.backend import cpu
    for dtype in (np.float32, np.float64):
        x = logits.astype(dtype)
        grad = np.full(x.shape, np.nan, dtype)
        _, p = cpu.softmax_cross_entropy_forward(x, labels, grad_out=grad)
        np.testing.assert_array_equal(grad, cpu.softmax_cross_entropy_backward(p, labels))
    with pytest.raises(ValueError, match="grad_out must be an array of its own"):
        cpu.softmax_cross_entropy_forward(logits, labels, probs_out=grad, grad_out=grad)
    # totals=: the summed loss and the correct count added in place, nothing returned
    logits[2] = logits[2, 0]  # a tie: the first largest logit counts, as np.argmax
    totals = np.array([1.0, 2.0])
    assert loss.forward(logits, labels, totals=totals) is None
    ref, _ = naive.softmax_cross_entropy_forward(logits, labels)
    assert totals[0] == pytest.approx(1.0 + 6 * ref, rel=1e-12)
    assert totals[1] == 2.0 + naive.count_correct(logits, labels)
    assert naive.count_correct(logits, labels) == np.sum(logits.argmax(axis=1) == labels)
    with pytest.raises(ValueError, match=r"expected totals of shape \(2,\)"):
        loss.forward(logits, labels, totals=np.zeros(3))
    class PerStep(fastnn.losses.Loss):  # a loss of one's own that gives a float per step
        def _forward(self, y, t):
            return 0.0
    with pytest.raises(TypeError, match="takes no totals"):
        PerStep().forward(logits, logits, totals=totals)
    with pytest.raises(ValueError, match=r"labels in \[0, 4\)"):
        loss.forward(logits, labels + 4)
    with pytest.raises(ValueError, match="one-hot"):
        loss.forward(logits, np.full((6, 4), 0.25))


def test_mean_squared_error():
    y = np.array([[1.0, 2.0], [3.0, 5.0]])
    t = np.array([[1.0, 0.0], [2.0, 5.0]])
    loss = MeanSquaredError()
    assert loss.forward(y, t) == pytest.approx((0 + 4 + 1 + 0) / 4)
    np.testing.assert_allclose(loss.backward(), 2 * (y - t) / 4)
    assert fastnn.gradcheck_loss(MeanSquaredError(), y, t) < 1e-8


def test_mean_squared_error_into_totals_is_the_host_loss_and_accuracy():
    """With totals= (what a training step passes), MSE adds [the summed per-sample loss, the
    correct count] as the trainer's host path computes them (loss * N and the accuracy of
    history.accuracy), returns None, and its backward is unchanged."""
    from fastnn.history import accuracy
    rng = np.random.default_rng(3)
    y, t = rng.standard_normal((5, 3)), np.eye(3)[[0, 2, 1, 1, 0]]
    y[1] = y[1, 0]  # a tie: the first largest output counts, as np.argmax
    loss = MeanSquaredError()
    value, plain_grad = loss.forward(y, t), loss.backward().copy()
    totals = np.array([1.0, 2.0])
    for _ in range(2):
        assert loss.forward(y, t, totals=totals) is None
    _, total, correct = naive.mean_squared_error_totals(y, t)
    assert total == pytest.approx(value * 5, rel=1e-12) and correct == accuracy(y, t) * 5
    np.testing.assert_allclose(totals, [1 + 2 * total, 2 + 2 * correct], rtol=1e-12)
    np.testing.assert_array_equal(loss.backward(), plain_grad)
    # (N,) targets are labels against one output per row; (N, ...) outputs count as rows
    one, labels = rng.standard_normal((4, 1)), np.array([0.0, 1.0, 0.0, 0.0])
    totals = np.zeros(2)
    MeanSquaredError().forward(one, labels, totals=totals)
    assert totals[1] == accuracy(one, labels) * 4 == 3
    assert totals[0] == pytest.approx(np.sum((one[:, 0] - labels) ** 2), rel=1e-12)
    images = rng.standard_normal((3, 1, 2, 2)).astype(np.float32)
    target = rng.standard_normal((3, 1, 2, 2)).astype(np.float32)
    totals = np.zeros(2)
    MeanSquaredError().forward(images, target, totals=totals)
    _, total, correct = naive.mean_squared_error_totals(images.reshape(3, 4), target.reshape(3, 4))
    assert totals == pytest.approx([total, correct], rel=1e-5)
    from fastnn.backend import cpu
    diff, _, _ = naive.mean_squared_error_totals(y, t)
    np.testing.assert_array_equal(cpu.mean_squared_error_forward(y, t, np.zeros(2)), diff)
    with pytest.raises(ValueError, match="labels_1d takes one output per row"):
        cpu.mean_squared_error_forward(y, t, np.zeros(2), labels_1d=True)
    with pytest.raises(ValueError, match="diff_out must not be the target"):
        cpu.mean_squared_error_forward(y, t, np.zeros(2), diff_out=t)


def test_regularized_loss_includes_the_penalty():
    fastnn.seed(0)
    model = fastnn.Sequential([Dense(3, 2, dtype="float64")]).regularize(fastnn.regularizers.L2(0.5))
    x, labels = np.ones((2, 3)), np.array([0, 1])
    plain = SoftmaxCrossEntropy().forward(model.forward(x), labels)
    with_reg = SoftmaxCrossEntropy(regularization=model).forward(model.forward(x), labels)
    W = model[0].params["W"]
    assert with_reg - plain == pytest.approx(0.25 * np.sum(W * W), rel=1e-12)
    l1 = fastnn.Sequential([Dense(3, 2, dtype="float64")]).regularize(fastnn.regularizers.L1(0.1))
    assert l1.penalty() == pytest.approx(0.1 * np.abs(l1[0].params["W"]).sum())
    # a penalty is read every training step: once warm, reading it allocates no array
    import tracemalloc
    big = fastnn.Sequential([Dense(400, 300)]).regularize(fastnn.regularizers.L1(0.1))
    big.penalty()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert big.penalty() > 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 16 * 1024  # W alone is 480 kB


def test_nan_loss_names_the_step():
    loss = SoftmaxCrossEntropy()
    good = np.zeros((2, 3), dtype=np.float32)
    loss.forward(good, np.array([0, 1]))
    loss.forward(good, np.array([0, 1]))
    with pytest.raises(FloatingPointError, match="nan at step 3"):
        loss.forward(np.full((2, 3), np.nan, dtype=np.float32), np.array([0, 1]))
    with pytest.raises(FloatingPointError, match="inf at step 1"):
        MeanSquaredError().forward(np.array([np.inf]), np.array([0.0]))


def test_residual_identity_sums_both_paths():
    fastnn.seed(0)
    block = fastnn.Sequential([Dense(3, 3, dtype="float64")])
    res = Residual(block)
    x = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_allclose(res.forward(x), block.forward(x) + x)
    dy = np.ones((2, 3))
    res.forward(x)
    np.testing.assert_allclose(res.backward(dy), dy @ block[0].params["W"].T + dy)
    with pytest.raises(ValueError, match="projection shortcut"):
        Residual(fastnn.Sequential([Dense(3, 4, dtype="float64")])).forward(x)


def _fused_equals_layer_by_layer(fused, apart, x, dy):
    """The fused model's forward and backward equal running `apart` (built the same) one layer
    at a time, bit for bit; returns the fused (y, dx)."""
    y = fused.forward(x).copy()
    dx = fused.backward(dy).copy()
    h = x
    for layer in apart:
        h = layer.forward(h)
    g = dy
    for layer in reversed(list(apart)):
        g = layer.backward(g)
    np.testing.assert_array_equal(y, h)
    np.testing.assert_array_equal(dx, g)
    return y, dx


def test_sequential_fuses_relu_into_conv_dense_and_max_pool_bit_for_bit():
    # Sequential runs Conv2D -> ReLU and Dense -> ReLU with the ReLU applied as the producer
    # writes its output, and ReLU -> MaxPool2D's backward in the pool's scatter; the same
    # layers run one by one must give identical outputs and gradients.
    def build():
        fastnn.seed(4)
        return fastnn.Sequential([Conv2D(2, 5, 3, pad=1), ReLU(), MaxPool2D(2), Flatten(),
                                  Dense(5 * 4 * 4, 7), ReLU(), Dense(7, 8), ReLU()])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((6, 8)).astype(np.float32)
    fused, apart = build(), build()
    y_fused, dx_fused = _fused_equals_layer_by_layer(fused, apart, x, dy)
    assert (y_fused == 0).any() and (y_fused > 0).any()  # the last ReLU cut something
    for (name, _, grad_f), (_, _, grad_a) in zip(fused.named_parameters(),
                                                 apart.named_parameters()):
        np.testing.assert_array_equal(grad_f, grad_a, err_msg=name)
    # the pool's backward_through falls back to two backwards when the pool's input was not
    # the ReLU's output
    relu, pool = fused[1], fused[2]
    pooled_grad = rng.standard_normal((6, 5, 4, 4)).astype(np.float32)
    relu.forward(rng.standard_normal((6, 5, 8, 8)).astype(np.float32))  # (the fused forward
    pool.forward(np.abs(x[:, :1].repeat(5, axis=1)))  # left it none) and another input
    want = relu.backward(pool.backward(pooled_grad)).copy()
    np.testing.assert_array_equal(pool.backward_through(relu, pooled_grad), want)
    # the producer's own forward, called directly, is not rectified
    conv_out = fused[0].forward(x)
    assert (conv_out < 0).any()
    np.testing.assert_array_equal(np.maximum(conv_out, 0), apart[1].forward(apart[0].forward(x)))


def test_relu_into_conv_backward_is_fused_bit_for_bit_on_every_data_algorithm():
    # ReLU -> Conv2D: the conv's data gradient is masked by its own input (the ReLU's output)
    # as it is written. On the CPU, 8 input channels at stride 1 take the direct kernels (the
    # mask after them), stride 2 takes im2col (col2im's relu_gate); the regularized conv's
    # penalty gradient is added on the fused path too.
    def build():
        fastnn.seed(5)
        return fastnn.Sequential([
            Conv2D(2, 8, 3, pad=1), ReLU(),
            Conv2D(8, 8, 3, pad=1, regularizer=fastnn.regularizers.L2(0.1)), ReLU(),
            Conv2D(8, 5, 3, stride=2, pad=1), ReLU(), MaxPool2D(2), Flatten(),
            Dense(5 * 2 * 2, 7)])
    from fastnn import fusion
    fused, apart = build(), build()
    relu_conv, relu_pool, conv_pool = fusion.BACKWARD[1], fusion.BACKWARD[0], fusion.BACKWARD[3]
    relu_conv_pool = fusion.BACKWARD[4]
    assert fused._fusion.backward == {2: (relu_conv,), 4: (relu_conv,),
                                      6: (relu_conv_pool, conv_pool, relu_pool)}
    plans = [fused[i].conv_plan((6, fused[i].in_channels, 8, 8)).backward_data for i in (2, 4)]
    assert plans[1] == "im2col" and plans[0] in ("direct", "im2col")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 2, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((6, 7)).astype(np.float32)
    _fused_equals_layer_by_layer(fused, apart, x, dy)
    assert (fused[1]._cache == 0).any()  # the ReLUs masked something
    for (name, _, grad_f), (_, _, grad_a) in zip(fused.named_parameters(),
                                                 apart.named_parameters()):
        np.testing.assert_array_equal(grad_f, grad_a, err_msg=name)
    # a training step (need_dx=False) fuses them too, and stops at the first conv
    fused.forward(x)
    assert fused.backward(dy, need_dx=False) is None
    apart.forward(x)
    apart.backward(dy, need_dx=False)
    for (name, _, grad_f), (_, _, grad_a) in zip(fused.named_parameters(),
                                                 apart.named_parameters()):
        np.testing.assert_array_equal(grad_f, grad_a, err_msg=name)
    # a conv whose last input was not that ReLU's output runs the two backwards in turn
    relu, conv = fused[3], Conv2D(8, 3, 3, pad=1)
    conv.forward(np.abs(rng.standard_normal((6, 8, 8, 8))).astype(np.float32) - 0.5)
    conv_grad = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    want = relu.backward(conv.backward(conv_grad)).copy()
    np.testing.assert_array_equal(conv.backward_through(relu, conv_grad), want)
    assert (want == 0).any() and (want != 0).any()


def test_dense_into_relu_backward_is_fused_bit_for_bit():
    # Dense -> ReLU: the ReLU's mask is applied as the Dense's bias gradient reads the
    # gradient (relu_backward_and_bias_grad); with no bias, or frozen, it is relu_backward
    # alone. Bit for bit the layers one by one: a regularized Dense, a bias-free one, a
    # training step stopping at the first Dense (need_dx=False, its mask still taken), and
    # the fallback when the ReLU's last input was not the Dense's last output.
    from fastnn import fusion

    def build(frozen=False):
        fastnn.seed(6)
        model = fastnn.Sequential([
            Flatten(), Dense(12, 9, regularizer=fastnn.regularizers.L2(0.1)), ReLU(),
            Dense(9, 8, bias=False), ReLU(), Dense(8, 5), ReLU(), Dense(5, 3)])
        model[5].trainable = not frozen
        return model
    dense_relu = fusion.BACKWARD[2]
    assert build()._fusion.backward == {2: (dense_relu,), 4: (dense_relu,), 6: (dense_relu,)}
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 3, 2, 2)).astype(np.float32)
    dy = rng.standard_normal((10, 3)).astype(np.float32)
    for frozen in (False, True):
        fused, apart = build(frozen), build(frozen)
        _fused_equals_layer_by_layer(fused, apart, x, dy)
        assert all((fused[i]._cache == 0).any() for i in (2, 4, 6))  # the ReLUs masked
        for need_dx in (True, False):  # False: the backward stops at the first Dense
            for model in (fused, apart):
                model.forward(x)
            fused.backward(dy, need_dx=need_dx)
            g = dy
            for layer in reversed(list(apart)[1:]):
                g = layer.backward(g, need_dx=layer is not apart[1] or need_dx)
            for (name, _, grad_f), (_, _, grad_a) in zip(fused.named_parameters(),
                                                         apart.named_parameters()):
                np.testing.assert_array_equal(grad_f, grad_a, err_msg=f"{name} {need_dx}")
    # a Dense whose output the ReLU did not take runs the two backwards in turn
    model = build()
    dense, relu = model[5], model[6]
    dense.forward(rng.standard_normal((10, 8)).astype(np.float32))
    relu.forward(rng.standard_normal((10, 5)).astype(np.float32))
    g = rng.standard_normal((10, 5)).astype(np.float32)
    want = dense.backward(relu.backward(g)).copy()
    np.testing.assert_array_equal(dense.backward_relu(relu, g), want)


def test_load_of_random_bytes_says_it_is_not_a_fastnn_file(tmp_path):
    """np.load reads unknown bytes as a pickle, and refusing one it said to pass allow_pickle
    (which would run whatever the file holds): the message now says what the file is not."""
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(ValueError, match="is not a fastnn file") as info:
        fastnn.load(path)
    assert "pickle" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "missing.npz")


def test_freeze_survives_save_and_load(tmp_path):
    model = _cnn()
    model.freeze("conv1", "1")
    model[4].freeze()  # the residual block, container and all
    model.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    trainable = [p.name for p in model.named_parameters() if p.trainable]
    assert [p.name for p in loaded.named_parameters() if p.trainable] == trainable
    assert trainable == ["6.W", "6.b", "9.W", "9.b"]
    assert not loaded["conv1"].trainable and not loaded[4].trainable
    assert fastnn.optim.Adam(loaded).step() is None  # the frozen ones are skipped, as before


def test_a_writer_killed_during_save_leaves_no_temporary_file_for_good(tmp_path):
    """kill -9 in the middle of save leaves its temporary file (nothing can remove it then);
    the next save of the same target removes it, as the writer is gone. Files of another
    target, and of a writer still running, stay."""
    import signal
    import subprocess
    import sys
    path = tmp_path / "m.npz"
    code = ("import os, signal, sys, numpy as np, fastnn\n"
            "from fastnn.layers import Dense\n"
            "def killed(f, **arrays):\n"
            "    f.write(b'half an archive')\n"
            "    f.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "np.savez = killed\n"
            "fastnn.Sequential([Dense(2, 2)]).save(sys.argv[1])\n")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True)
    assert run.returncode == -signal.SIGKILL
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith("m.npz") and left[0].endswith(".tmp"), left
    live = tmp_path / f"m.npz.partial-{os.getpid()}-inprogress.tmp"  # a running writer's
    other = tmp_path / "other.npz.partial-999999999-x.tmp"
    live.write_bytes(b"")
    other.write_bytes(b"")
    _cnn().save(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.npz", live.name, other.name])
    fastnn.load(path)


def test_fusion_patterns_live_in_one_table_and_a_changed_subclass_runs_on_its_own():
    """fastnn.fusion's table is matched once, as the model is built; a subclass that keeps
    the methods a fused pass stands in for is fused like its class, one that changes its
    forward (or backward) runs on its own and computes what it says."""
    from fastnn import fusion

    class PlainReLU(ReLU):
        pass

    class ShiftedReLU(ReLU):  # max(x, 0) + 1: a fused max(., 0) would drop the + 1
        def _compute(self, B, x, y):
            super()._compute(B, x, y)
            y += 1

    class NoisyDense(Dense):
        def _forward(self, x, relu=False):
            return super()._forward(x, relu=False) * 2

    class PlainPool(MaxPool2D):
        pass

    def build(relu, dense=Dense, pool=MaxPool2D):
        fastnn.seed(4)
        return fastnn.Sequential([Conv2D(2, 3, 3, pad=1), relu(), pool(2), Flatten(),
                                  dense(3 * 4 * 4, 5), relu()])
    model = build(ReLU)
    conv_pool, conv_relu = fusion.FORWARD
    relu_pool, dense_relu, conv_pool_back = fusion.BACKWARD[0], fusion.BACKWARD[2], \
        fusion.BACKWARD[3]
    assert model._fusion.forward == {0: conv_pool, 4: conv_relu}
    assert model._fusion.backward == {2: (conv_pool_back, relu_pool), 5: (dense_relu,)}
    assert build(PlainReLU, pool=PlainPool)._fusion == model._fusion
    assert build(ShiftedReLU)._fusion == ({}, {})
    assert build(ReLU, dense=NoisyDense)._fusion == ({0: conv_pool},
                                                     {2: (conv_pool_back, relu_pool)})
    x = np.random.default_rng(0).standard_normal((4, 2, 8, 8)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    for relu, dense in ((ShiftedReLU, Dense), (ReLU, NoisyDense), (PlainReLU, Dense)):
        _fused_equals_layer_by_layer(build(relu, dense), build(relu, dense), x, dy)
    assert (build(ShiftedReLU).forward(x) >= 1).all()  # its own forward ran
    # the plan follows add(), and a slice makes its own
    model.add(ReLU())
    assert 5 not in model._fusion.forward
    assert model[:3]._fusion.backward == {2: (conv_pool_back, relu_pool)}
    assert model[1:3]._fusion.backward == {1: (relu_pool,)}  # (layers 1, 2 of the model)


@pytest.mark.parametrize("im2col", [False, True])
def test_conv_relu_max_pool_run_as_one_pass(im2col, monkeypatch):
    """Conv2D -> ReLU -> MaxPool2D (fastnn.fusion's conv + ReLU + max pool), and preceded by a
    ReLU, equal the layers one by one: outputs, data gradients and weight gradients bit for
    bit, the conv's bias gradient to float rounding on im2col (summed over the pool's winners,
    in another order). On the CPU the direct kernels write the conv's output and pool it; with
    im2col (every plan forced to it, as on a GPU) the pool comes from the GEMM's rows. The
    ReLU inside never had an output: its backward alone says so."""
    from fastnn import convolution
    if im2col:
        monkeypatch.setattr(convolution, "_PLANS", {})
        monkeypatch.setattr(convolution, "_choose", lambda B, *a: convolution.Plan(
            "im2col", "im2col", "im2col", "forced"))

    def build():
        fastnn.seed(3)
        return fastnn.Sequential([
            Conv2D(2, 4, 3, pad=1), ReLU(), Conv2D(4, 6, 3, pad=1), ReLU(), MaxPool2D(2),
            Conv2D(6, 5, 3, pad=1, regularizer=fastnn.regularizers.L2(0.1)), ReLU(),
            MaxPool2D(2, stride=1), Flatten(), Dense(5 * 3 * 3, 7)])
    fused, apart = build(), build()
    assert [p.name for p in fused._fusion.forward.values()] == [
        "conv/dense + ReLU", "conv + ReLU + max pool", "conv + ReLU + max pool"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((3, 7)).astype(np.float32)
    _fused_equals_layer_by_layer(fused, apart, x, dy)
    for (name, _, grad_f), (_, _, grad_a) in zip(fused.named_parameters(),
                                                 apart.named_parameters()):
        if im2col and name in ("2.b", "5.b"):
            np.testing.assert_allclose(grad_f, grad_a, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(grad_f, grad_a, err_msg=name)
    fused.forward(x)
    assert fused.backward(dy, need_dx=False) is None  # a training step: stops at the first
    with pytest.raises(RuntimeError, match="never writes this ReLU's output"):
        fused[6].backward(np.zeros((3, 5, 4, 4), np.float32))
    # The conv's backward alone, after a fused forward that never wrote its output, still takes
    # the gradient of that output, as after its own forward; a pooled-shape gradient is refused.
    g = rng.standard_normal((3, 5, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(fused[5].backward(g), apart[5].backward(g))
    np.testing.assert_array_equal(fused[5].grads["W"], apart[5].grads["W"])
    with pytest.raises(ValueError, match=r"expected an output gradient of shape \(3, 5, 4, 4\)"):
        fused[5].backward(np.zeros((3, 5, 3, 3), np.float32))


def test_a_conv_keeps_its_im2col_matrix_only_for_a_weight_gradient(monkeypatch):
    """Only a training, trainable Conv2D keeps its forward's im2col matrix (in a buffer of its
    own, per shape) for the weight gradient: in eval mode (an evaluation's batch shape) or
    frozen, the matrix stays scratch, and a backward asked for anyway rebuilds what it needs:
    the same gradients, bit for bit."""
    from fastnn import convolution
    monkeypatch.setattr(convolution, "_PLANS", {})
    monkeypatch.setattr(convolution, "_choose", lambda B, *a: convolution.Plan(
        "im2col", "im2col", "im2col", "forced"))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((4, 5, 6, 6)).astype(np.float32)
    fastnn.seed(1)
    conv = Conv2D(3, 5, 3, pad=1)
    conv.forward(x)
    assert conv._buffers.get("cols") is not None and conv._cache[1] is conv._buffers["cols"]
    want = (conv.backward(dy).copy(), conv.grads["W"].copy(), conv.grads["b"].copy())
    for mode in ("eval", "frozen"):
        fastnn.seed(1)
        other = Conv2D(3, 5, 3, pad=1)
        if mode == "eval":
            other.eval()
        else:
            other.trainable = False
        other.forward(x)
        assert other._buffers.get("cols") is None and other._cache[1] is None, mode
        np.testing.assert_array_equal(other.backward(dy), want[0], err_msg=mode)
        if mode == "eval":
            np.testing.assert_array_equal(other.grads["W"], want[1])
            np.testing.assert_array_equal(other.grads["b"], want[2])

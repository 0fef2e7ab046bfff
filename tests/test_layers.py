"""Every layer's backward against central differences (fastnn.gradcheck), in float64 and in
training mode, on randomly drawn shapes; and the layers' inference-mode behaviour."""
import numpy as np
import pytest

import fastnn
from fastnn.buffers import Buffers
from fastnn.gradcheck import numerical_gradient
from fastnn.layers import (AvgPool2D, BatchNorm, Conv2D, Dense, DropConnect, Dropout, Flatten,
                           FromChannelsLast, Identity, L2Pool2D, LeakyReLU, Maxout, MaxPool2D,
                           ReLU, Residual, Sigmoid, Softmax, Step, Tanh)

F64 = "float64"
TOL = 1e-6  # the bound on the max relative error


def _case(seed):
    """Random sizes for one draw: batch, channels, spatial size."""
    r = np.random.default_rng(seed)
    return int(r.integers(1, 4)), int(r.integers(1, 4)), int(r.integers(5, 9)), r


# name -> (layer factory given the random draw, input shape)
def _cases():
    out = []
    for seed in range(3):
        n, c, s, r = _case(seed)
        d = int(r.integers(2, 7))
        k = int(r.integers(1, 4))
        stride = int(r.integers(1, 3))
        pad = int(r.integers(0, 2))
        out += [
            (f"Dense-{seed}", lambda d=d: Dense(d, 4, dtype=F64), (n + 1, d)),
            (f"DenseNoBias-{seed}", lambda d=d: Dense(d, 4, dtype=F64, bias=False), (n, d)),
            (f"FromChannelsLast-{seed}", FromChannelsLast, (n, s, s + 1, c)),
            (f"Conv2D-{seed}", lambda c=c, k=k, stride=stride, pad=pad:
                Conv2D(c, 3, k, stride=stride, pad=pad, dtype=F64), (n, c, s, s + 1)),
            (f"MaxPool2D-{seed}", lambda k=k, stride=stride: MaxPool2D(k + 1, stride),
             (n, c, s, s + 1)),
            (f"AvgPool2D-{seed}", lambda k=k, pad=pad: AvgPool2D(k + 1, 1, pad), (n, c, s, s)),
            (f"L2Pool2D-{seed}", lambda k=k, stride=stride: L2Pool2D(k + 1, stride), (n, c, s, s)),
            (f"ReLU-{seed}", ReLU, (n, c, s, s)),
            (f"LeakyReLU-{seed}", lambda: LeakyReLU(0.1), (n, d)),
            (f"Sigmoid-{seed}", Sigmoid, (n, c, s, s)),
            (f"Tanh-{seed}", Tanh, (n, d)),
            (f"Identity-{seed}", Identity, (n, d)),
            (f"Softmax-{seed}", Softmax, (n, d)),
            (f"Flatten-{seed}", Flatten, (n, c, s, s)),
            (f"Dropout-{seed}", lambda: Dropout(0.4, seed=seed), (n, c, s, s)),
            (f"DropConnect-{seed}", lambda d=d: DropConnect(Dense(d, 5, dtype=F64), 0.3, seed=seed),
             (n + 1, d)),
            (f"DropConnectNoBias-{seed}", lambda d=d: DropConnect(
                Dense(d, 5, dtype=F64, bias=False), 0.3, seed=seed), (n + 1, d)),
            (f"BatchNorm2d-{seed}", lambda d=d: BatchNorm(d, dtype=F64), (n + 2, d)),
            (f"BatchNorm4d-{seed}", lambda c=c: BatchNorm(c, dtype=F64), (n + 1, c, s, s)),
            (f"Maxout2d-{seed}", lambda: Maxout(3), (n, 3 * c)),
            (f"Maxout4d-{seed}", lambda: Maxout(2), (n, 2 * c, s, s)),
            (f"Residual-{seed}", lambda c=c: Residual(fastnn.Sequential([
                Conv2D(c, c, 3, pad=1, dtype=F64), BatchNorm(c, dtype=F64), ReLU(),
                Conv2D(c, c, 3, pad=1, dtype=F64)])), (n, c, s, s)),
            (f"ResidualProjection-{seed}", lambda c=c: Residual(
                fastnn.Sequential([Conv2D(c, 4, 3, pad=1, dtype=F64), Tanh()]),
                shortcut=Conv2D(c, 4, 1, dtype=F64)), (n, c, s, s)),
            (f"ResidualDense-{seed}", lambda d=d: Residual(
                fastnn.Sequential([Dense(d, 3, dtype=F64), Sigmoid()]),
                shortcut=Dense(d, 3, dtype=F64)), (n, d)),
        ]
    return out


@pytest.mark.parametrize("name,make,shape", _cases(), ids=[c[0] for c in _cases()])
def test_gradcheck_every_layer(name, make, shape):
    fastnn.seed(1)
    layer = make()
    layer.train()
    x = np.random.default_rng(7).standard_normal(shape)
    errors = fastnn.gradcheck(layer, x)
    assert set(errors) == {"x"} | {n for n, _, _ in layer.named_parameters()}
    assert max(errors.values()) < TOL, errors


def test_gradcheck_a_whole_cnn_with_regularizer():
    fastnn.seed(2)
    reg = fastnn.regularizers.L2(0.3)
    model = fastnn.Sequential([
        Conv2D(2, 3, 3, pad=1, dtype=F64, regularizer=reg), BatchNorm(3, dtype=F64), ReLU(),
        MaxPool2D(2), Flatten(), Dense(3 * 3 * 3, 4, dtype=F64, regularizer=fastnn.regularizers.L1(0.2))])
    x = np.random.default_rng(3).standard_normal((3, 2, 6, 6))
    labels = np.array([0, 3, 1])
    loss = fastnn.losses.SoftmaxCrossEntropy(regularization=model)

    def value():
        return loss.forward(model.forward(x), labels)

    value()
    model.backward(loss.backward(), need_dx=False)
    for name, p, g in model.named_parameters():
        analytic = g.copy()
        numeric = numerical_gradient(value, p)
        # (the conv bias before BatchNorm has a true gradient of 0: floor the scale)
        err = np.max(np.abs(analytic - numeric)) / max(np.max(np.abs(numeric)), 1e-4)
        assert err < TOL, (name, err)


def test_step_forward_and_backward_refuses():
    s = Step()
    y = s.forward(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(y, [[0, 0, 1]])
    with pytest.raises(RuntimeError, match="no useful gradient"):
        s.backward(np.ones((1, 3)))


def test_backward_before_forward_is_a_clear_error():
    for layer in (Dense(3, 2), ReLU(), Conv2D(1, 1, 1), fastnn.Sequential([ReLU()])):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.ones((1, 2), dtype=np.float32))


def test_batchnorm_uses_running_statistics_at_inference():
    bn = BatchNorm(3, momentum=0.5, dtype=F64)
    rng = np.random.default_rng(0)
    batches = [rng.normal(2.0, 3.0, (50, 3, 2, 2)) for _ in range(3)]
    mean, var = np.zeros(3), np.ones(3)
    for b in batches:
        bn.forward(b)
        mean = 0.5 * mean + 0.5 * b.mean(axis=(0, 2, 3))
        var = 0.5 * var + 0.5 * b.var(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.state["running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(bn.state["running_var"], var, rtol=1e-12)
    bn.params["gamma"][:] = [1.0, 2.0, 0.5]
    bn.params["beta"][:] = [0.0, 1.0, -1.0]
    bn.eval()
    x = rng.normal(size=(4, 3, 2, 2))
    expected = ((x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + bn.eps)
                * bn.params["gamma"][None, :, None, None] + bn.params["beta"][None, :, None, None])
    np.testing.assert_allclose(bn.forward(x), expected, rtol=1e-12)
    np.testing.assert_allclose(bn.state["running_mean"], mean)  # not updated in eval mode
    # training mode normalises with the batch: per-channel mean 0, variance 1 (gamma=1, beta=0)
    bn2 = BatchNorm(2, dtype=F64)
    y = bn2.forward(rng.normal(5.0, 2.0, (64, 2)))
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), 1, rtol=1e-4)


def test_dropout_scales_in_training_and_is_identity_at_inference():
    d = Dropout(0.25, seed=0)
    x = np.ones((200, 100), dtype=np.float32)
    y = d.forward(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(d.backward(x) != 0, kept)  # the same mask routes gradients
    d.eval()
    np.testing.assert_array_equal(d.forward(x), x)


@pytest.mark.parametrize("bits", ["PCG64", "PCG64DXSM", "SFC64", "Philox", "MT19937"])
def test_mask_seeds_are_rng_integers_of_the_layers_generator(bits):
    """next_seed takes a 64-bit bit generator's raw draw (cheaper on the host, where a replayed
    GPU step draws one per layer): the seeds, and the generator's state after them, must be
    those rng.integers(1 << 63) gives (saved runs and checkpoints replay the same masks)."""
    make = getattr(np.random, bits)
    d = Dropout(0.5, seed=np.random.Generator(make(7)))
    ref = np.random.Generator(make(7))
    d.rng.random(3), ref.random(3)  # a generator part-way through its stream
    seeds = [d.next_seed() for _ in range(2000)]
    assert seeds == [int(ref.integers(1 << 63)) for _ in range(2000)]
    assert all(type(s) is int and 0 <= s < 1 << 63 for s in seeds)
    assert d.rng.random() == ref.random()  # the same state after them


def test_dropconnect_uses_expected_weights_at_inference():
    fastnn.seed(0)
    dense = Dense(6, 4, dtype=F64)
    dc = DropConnect(dense, 0.5, seed=1)
    x = np.random.default_rng(0).standard_normal((3, 6))
    outs = [dc.forward(x).copy() for _ in range(4000)]
    y_plain = x @ dense.params["W"] + dense.params["b"]
    assert not np.allclose(outs[0], y_plain)  # training draws masks
    np.testing.assert_allclose(np.mean(outs, axis=0), y_plain, atol=0.1)
    dc.eval()
    np.testing.assert_allclose(dc.forward(x), y_plain, rtol=1e-12)
    assert [n for n, _, _ in fastnn.Sequential([dc]).named_parameters()] == ["0.W", "0.b"]


def test_maxout_groups_consecutive_channels():
    x = np.arange(12, dtype=np.float64).reshape(1, 6, 1, 2)[:, [1, 0, 3, 2, 5, 4]].copy()
    y = Maxout(2).forward(x)
    np.testing.assert_array_equal(y, np.maximum(x[:, 0::2], x[:, 1::2]))


def test_l2_pool_is_the_root_mean_square():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    y = L2Pool2D(2).forward(x)
    expected = np.sqrt((x.reshape(2, 3, 2, 2, 2, 2) ** 2).mean(axis=(3, 5)))
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_layers_reuse_their_buffers():
    layer = Dense(4, 3)
    x = np.ones((2, 4), dtype=np.float32)
    y1 = layer.forward(x)
    y2 = layer.forward(x * 2)
    assert y1 is y2  # documented: an output stays valid until the layer's next forward
    y5 = layer.forward(np.ones((5, 4), dtype=np.float32))
    assert y5.shape == (5, 3)
    # a few shapes are kept (a partial last batch does not replace the full batch's arrays,
    # which a captured CUDA graph writes), the least recently used dropped past Buffers.KEEP
    assert layer.forward(x) is y1 and layer.forward(np.ones((5, 4), np.float32)) is y5
    kept = [layer.forward(np.ones((n, 4), np.float32)) for n in range(6, 4 + Buffers.KEEP)]
    assert layer.forward(x) is y1 and layer.forward(np.ones((6, 4), np.float32)) is kept[0]
    layer.forward(np.ones((20, 4), np.float32))  # one more: the oldest, 5, goes
    assert layer.forward(np.ones((5, 4), np.float32)) is not y5
    # a one-off large batch is not held once the layer is back at its own shapes (the
    # largest goes first: the smaller ones stay)
    layer._buffers.KEEP_BYTES = 1000
    big = layer.forward(np.ones((200, 4), np.float32))  # 2400 bytes
    assert layer.forward(x) is y1 and layer._buffers.nbytes() < 1000 + y1.nbytes
    assert layer.forward(np.ones((6, 4), np.float32)) is kept[0]
    assert layer.forward(np.ones((200, 4), np.float32)) is not big


def test_buffers_tell_the_backend_what_they_let_go(monkeypatch):
    """Every array a layer's Buffers drop (past KEEP shapes, past KEEP_BYTES when the layer
    goes back to a kept shape: no array is made then, and Layer.to's clear) is reported to its
    backend (Backend.release), whose array_generation a captured CUDA graph checks: a graph
    recorded with a dropped array is recorded again, never replayed into freed memory."""
    from fastnn.backend import cpu
    released = []
    monkeypatch.setattr(cpu, "release", released.append, raising=False)
    layer = Dense(4, 3)
    outs = [layer.forward(np.ones((n, 4), np.float32)) for n in range(1, 2 + Buffers.KEEP)]
    assert [a.shape for a in released] == [(1, 3)]  # one shape past KEEP: the oldest
    big = layer.forward(np.ones((50, 4), np.float32))  # 600 bytes
    layer._buffers.KEEP_BYTES = 100
    released.clear()
    back = np.ones((1 + Buffers.KEEP, 4), np.float32)
    assert layer.forward(back) is outs[-1]  # back at a kept shape: nothing made
    assert any(a is big for a in released)
    released.clear()
    layer.to("cpu")
    assert len(released) > 0 and layer._buffers.nbytes() == 0


def test_init_scales_and_names():
    rng = np.random.default_rng(0)
    big = (400, 500)
    for name, std in (("he_normal", np.sqrt(2 / 400)), ("xavier_normal", np.sqrt(1 / 400)),
                      ("he_uniform", np.sqrt(2 / 400)), ("xavier_uniform", np.sqrt(1 / 400))):
        w = fastnn.init.get(name)(big, 400, rng)
        assert abs(w.std() - std) / std < 0.02, name
    assert abs(fastnn.init.normal(0.01)(big, 400, rng).std() - 0.01) < 2e-4
    conv = Conv2D(3, 64, 5, init="he_normal")  # fan_in = C*KH*KW = 75
    assert abs(conv.params["W"].std() - np.sqrt(2 / 75)) / np.sqrt(2 / 75) < 0.05
    assert conv.params["W"].dtype == np.float32
    with pytest.raises(ValueError, match="he_normal.*xavier_normal|xavier_normal.*he_normal"):
        Dense(3, 3, init="glorot")
    d = Dense(3, 2, init=lambda shape, fan_in, rng: np.full(shape, 0.5))
    np.testing.assert_array_equal(d.params["W"], 0.5)


def test_batchnorm_refuses_one_value_per_feature_in_training():
    """A batch of one normalised by its own statistics is exactly 0 (it returned zeros):
    training mode raises, as PyTorch does; inference and images (H*W values) are fine."""
    bn = BatchNorm(3, dtype=F64)
    with pytest.raises(ValueError, match=r"BatchNorm: expected more than 1 value per feature "
                                         r"in training mode, got input \(1, 3\)"):
        bn.forward(np.ones((1, 3)))
    assert bn.state["running_mean"].tolist() == [0, 0, 0]  # nothing updated
    assert bn.forward(np.ones((1, 3, 2, 2))).shape == (1, 3, 2, 2)  # 4 values per channel
    bn.eval()
    assert bn.forward(np.ones((1, 3))).shape == (1, 3)


def test_sequential_refuses_a_list_input_by_name():
    model = fastnn.Sequential([("first", Dense(2, 2))])
    with pytest.raises(TypeError, match=r"Sequential: expected an array input \(for its first "
                                        r"layer, Dense 'first'\), got list"):
        model.forward([[1.0, 2.0]])


@pytest.mark.parametrize("channels", [1, 3])
def test_from_channels_last_is_the_transpose_once(channels):
    x = np.random.default_rng(0).standard_normal((2, 5, 4, channels)).astype(np.float32)
    layer = FromChannelsLast()
    y = layer.forward(x)
    np.testing.assert_array_equal(y, x.transpose(0, 3, 1, 2))
    assert y.flags.c_contiguous
    if channels == 1:
        assert np.shares_memory(y, x)  # one channel: the same bytes, no copy
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(dy), dy.transpose(0, 2, 3, 1))
    with pytest.raises(ValueError, match=r"expected input \(N, H, W, C\) \(channels last\), "
                                         r"got \(2, 20\)"):
        layer.forward(np.zeros((2, 20), np.float32))


def test_dense_without_bias_has_no_b_and_fuses_its_relu():
    fastnn.seed(0)
    layer = Dense(3, 4, bias=False, dtype=F64)
    assert list(layer.params) == ["W"] and layer.num_params() == 12
    x = np.random.default_rng(2).standard_normal((5, 3))
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["W"], rtol=1e-14)
    model = fastnn.Sequential([layer, ReLU()])
    np.testing.assert_allclose(model.forward(x), np.maximum(x @ layer.params["W"], 0),
                               rtol=1e-14)
    with pytest.raises(TypeError, match="expected bias True or False"):
        Dense(3, 4, bias="no")


def test_glorot_initialisers_use_fan_in_and_fan_out():
    from fastnn import init
    rng = np.random.default_rng(0)
    w = init.get("glorot_uniform")((400, 200), 400, rng)  # Dense (in, out)
    a = np.sqrt(6 / 600)
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.99 * a
    assert np.var(w) == pytest.approx(2 / 600, rel=0.02)
    conv = init.get("glorot_normal")((64, 32, 3, 3), 32 * 9, rng)  # fan_out = F*KH*KW
    assert np.std(conv) == pytest.approx(np.sqrt(2 / (32 * 9 + 64 * 9)), rel=0.02)
    with pytest.raises(ValueError, match="expected a Dense"):
        init.get("glorot_uniform")((3, 4, 5), 3, rng)


def test_a_layer_class_whose_name_is_taken_is_refused():
    """Saved models name layer classes by their bare name: a second class of that name would
    silently replace the first in the registry and load files as the wrong class."""
    from fastnn.layers.base import Layer, build_layer

    with pytest.raises(TypeError, match=r"has the name of fastnn\.layers\.dense\.Dense"):
        class Dense(Layer):  # noqa: F811 - the clash under test
            pass
    assert type(build_layer(fastnn.layers.Dense(2, 3).get_config())) is fastnn.layers.Dense

    def define():
        class ReloadedLayer(Layer):
            pass
        return ReloadedLayer

    # the same qualified name again (a module reloaded, a cell re-run) replaces the old class
    first, second = define(), define()
    assert first is not second
    assert type(build_layer({"class": "ReloadedLayer", "args": {}})) is second

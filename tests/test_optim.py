"""Optimizers: three steps on a fixed quadratic against the textbook formulas worked out by
hand (scalar Python, one coordinate at a time); the fused kernels against fastnn.naive; state,
freezing and schedules."""
import math

import numpy as np
import pytest

import fastnn
from fastnn import naive, optim
from fastnn.backend import cpu

P0 = [1.0, -2.0, 0.5]
C = [1.0, 2.0, 3.0]  # f(p) = 0.5 * sum(C * p^2), so g = C * p


def _run(make, steps=3):
    p = np.array(P0)
    g = np.zeros(3)
    opt = make([("w", p, g)])
    for _ in range(steps):
        g[:] = np.array(C) * p
        opt.step()
    return p


def _by_hand(update, steps=3):
    """Apply a per-coordinate textbook update rule to each coordinate separately."""
    out = []
    for p, c in zip(P0, C):
        state = {}
        for t in range(1, steps + 1):
            p = update(p, c * p, state, t)
        out.append(p)
    return np.array(out)


def test_sgd_by_hand():
    # step 1 by hand for coordinate 0: 1 - 0.1 * 1 = 0.9; then 0.81, 0.729
    assert _run(lambda ps: optim.SGD(ps, lr=0.1))[0] == pytest.approx(0.729, abs=1e-15)
    expected = _by_hand(lambda p, g, s, t: p - 0.1 * g)
    np.testing.assert_allclose(_run(lambda ps: optim.SGD(ps, lr=0.1)), expected, rtol=1e-14)


def test_momentum_by_hand():
    def rule(p, g, s, t):
        s["v"] = 0.9 * s.get("v", 0.0) - 0.1 * g
        return p + s["v"]
    # coordinate 0: v=-0.1, p=0.9; v=-0.18, p=0.72; v=-0.234, p=0.486
    assert _run(lambda ps: optim.Momentum(ps, lr=0.1, momentum=0.9))[0] == pytest.approx(0.486)
    np.testing.assert_allclose(_run(lambda ps: optim.Momentum(ps, lr=0.1, momentum=0.9)),
                               _by_hand(rule), rtol=1e-14)


def test_nesterov_by_hand():
    def rule(p, g, s, t):
        s["v"] = 0.9 * s.get("v", 0.0) - 0.1 * g
        return p + 0.9 * s["v"] - 0.1 * g
    np.testing.assert_allclose(_run(lambda ps: optim.Nesterov(ps, lr=0.1, momentum=0.9)),
                               _by_hand(rule), rtol=1e-14)


def test_adagrad_by_hand():
    def rule(p, g, s, t):
        s["h"] = s.get("h", 0.0) + g * g
        return p - 0.5 * g / (math.sqrt(s["h"]) + 1e-7)
    # coordinate 0: h=1, p = 1 - 0.5 * 1 / (1 + 1e-7)
    first = _run(lambda ps: optim.AdaGrad(ps, lr=0.5, eps=1e-7), steps=1)[0]
    assert first == pytest.approx(1 - 0.5 / (1 + 1e-7), abs=1e-15)
    np.testing.assert_allclose(_run(lambda ps: optim.AdaGrad(ps, lr=0.5, eps=1e-7)),
                               _by_hand(rule), rtol=1e-14)


def test_rmsprop_by_hand():
    def rule(p, g, s, t):
        s["h"] = 0.99 * s.get("h", 0.0) + 0.01 * g * g
        return p - 0.01 * g / (math.sqrt(s["h"]) + 1e-7)
    np.testing.assert_allclose(
        _run(lambda ps: optim.RMSProp(ps, lr=0.01, decay_rate=0.99, eps=1e-7)),
        _by_hand(rule), rtol=1e-14)


def _adam_rule(lr, wd):
    def rule(p, g, s, t):
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
        m_hat, v_hat = s["m"] / (1 - 0.9 ** t), s["v"] / (1 - 0.999 ** t)
        p = p - lr * wd * p
        return p - lr * m_hat / (math.sqrt(v_hat) + 1e-8)
    return rule


def test_adam_by_hand():
    # step 1: m_hat = g, v_hat = g^2, so each coordinate moves by lr * sign(g) (almost exactly)
    first = _run(lambda ps: optim.Adam(ps, lr=0.1), steps=1)
    np.testing.assert_allclose(first, np.array(P0) - 0.1 * np.sign(P0), rtol=1e-7)
    np.testing.assert_allclose(_run(lambda ps: optim.Adam(ps, lr=0.1)),
                               _by_hand(_adam_rule(0.1, 0.0)), rtol=1e-14)


def test_adamw_by_hand():
    np.testing.assert_allclose(_run(lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.2)),
                               _by_hand(_adam_rule(0.1, 0.2)), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernels_match_the_oracles(dtype):
    rng = np.random.default_rng(0)
    p, g, s1, s2 = (rng.standard_normal(1000).astype(dtype) for _ in range(4))
    s1a, s2a = np.abs(s1), np.abs(s2)
    rtol = 1e-5 if dtype == np.float32 else 1e-13

    def fused(fn, *arrays):
        arrays = [a.copy() for a in arrays]
        fn(*arrays)
        return arrays

    pp, = fused(lambda a: cpu.sgd_update(a, g, 0.1), p)
    np.testing.assert_allclose(pp, naive.sgd_update(p, g, 0.1), rtol=rtol)
    for nesterov in (False, True):
        got = fused(lambda a, b: cpu.momentum_update(a, g, b, 0.1, 0.9, nesterov), p, s1)
        for a, b in zip(got, naive.momentum_update(p, g, s1, 0.1, 0.9, nesterov)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6)
    got = fused(lambda a, b: cpu.adagrad_update(a, g, b, 0.1, 1e-7), p, s1a)
    for a, b in zip(got, naive.adagrad_update(p, g, s1a, 0.1, 1e-7)):
        np.testing.assert_allclose(a, b, rtol=rtol)
    got = fused(lambda a, b: cpu.rmsprop_update(a, g, b, 0.1, 0.9, 1e-7), p, s1a)
    for a, b in zip(got, naive.rmsprop_update(p, g, s1a, 0.1, 0.9, 1e-7)):
        np.testing.assert_allclose(a, b, rtol=rtol)
    t, lr, wd = 3, 0.01, 0.1
    step = (lr / (1 - 0.9 ** t), 1 / math.sqrt(1 - 0.999 ** t), lr * wd)
    got = fused(lambda a, m, v: cpu.adam_update(a, g, m, v, step, 0.9, 0.999, 1e-8),
                p, s1, s2a)
    for a, b in zip(got, naive.adam_update(p, g, s1, s2a, t, lr, 0.9, 0.999, 1e-8, wd)):
        np.testing.assert_allclose(a, b, rtol=rtol * 10, atol=1e-6)


def test_kernels_reject_mismatched_state():
    p = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        cpu.momentum_update(p, np.zeros(4, np.float32), np.zeros(5, np.float32), 0.1, 0.9)
    with pytest.raises(TypeError, match="dtype"):
        cpu.sgd_update(p, np.zeros(4, np.float64), 0.1)
    with pytest.raises(ValueError, match="writeable"):
        p.flags.writeable = False
        cpu.sgd_update(p, np.zeros(4, np.float32), 0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_numbers_read_from_an_array_are_the_numbers(dtype):
    """Each update takes its per-step numbers (lr; Adam's step) as numbers or as an array of
    the parameter's dtype holding them (what a recorded update reads on a GPU): the same
    result, bit for bit, once the numbers are rounded to that dtype as a kernel rounds them;
    numbers of another count, dtype or kind are refused by name."""
    rng = np.random.default_rng(1)
    p, g, m = (rng.standard_normal(50).astype(dtype) for _ in range(3))
    h = np.abs(m)
    cases = [("sgd_update", (p, g), (0.1,)), ("momentum_update", (p, g, m), (0.1, 0.9, True)),
             ("adagrad_update", (p, g, h), (0.1, 1e-7)),
             ("rmsprop_update", (p, g, h), (0.1, 0.9, 1e-7)),
             ("adam_update", (p, g, m, h), ((0.03, 1.3, 0.002), 0.9, 0.999, 1e-8))]
    for name, arrays, hyper in cases:
        first = hyper[0] if isinstance(hyper[0], tuple) else (hyper[0],)
        numbers = np.array(first, dtype)
        rounded = tuple(float(v) for v in numbers)
        by_value, by_array = [a.copy() for a in arrays], [a.copy() for a in arrays]
        getattr(cpu, name)(*by_value, rounded if len(first) > 1 else rounded[0], *hyper[1:])
        getattr(cpu, name)(*by_array, numbers, *hyper[1:])
        for a, b in zip(by_value, by_array):
            np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(ValueError, match=r"adam: expected step of shape \(3,\), got \(2,\)"):
        cpu.adam_update(p.copy(), g, m.copy(), h.copy(), np.zeros(2, dtype), 0.9, 0.999, 1e-8)
    with pytest.raises(TypeError, match="adam: expected step as 3 number"):
        cpu.adam_update(p.copy(), g, m.copy(), h.copy(), (0.1, 1.0), 0.9, 0.999, 1e-8)
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(TypeError, match=f"sgd: expected lr of dtype {np.dtype(dtype)}"):
        cpu.sgd_update(p.copy(), g, np.array([0.1], other))
    for bad in (True, None, "0.1"):
        with pytest.raises(TypeError, match="sgd: expected lr as 1 number"):
            cpu.sgd_update(p.copy(), g, bad)
    with pytest.raises(TypeError, match=r"adam: expected step as 3 number\(s\), or a \(3,\) "
                                        "array holding them, got float"):
        cpu.adam_update(p.copy(), g, m.copy(), h.copy(), 0.1, 0.9, 0.999, 1e-8)
    # a 0-d array or a numpy scalar is a number (an lr set as np.array(0.1) still trains)
    by_value, by_scalar = p.copy(), p.copy()
    cpu.sgd_update(by_value, g, 0.1)
    cpu.sgd_update(by_scalar, g, np.array(0.1))
    np.testing.assert_array_equal(by_value, by_scalar)


def test_a_replayed_update_gets_as_many_numbers_as_its_slot_holds():
    """advance() (the host side of a replayed update) checks step_numbers against
    numbers_count, the size of the device array a recording reads them from."""
    class Miscounted(optim.SGD):
        numbers_count = 3

    opt = Miscounted(_small_model(), lr=0.1)
    with pytest.raises(ValueError, match="Miscounted.step_numbers: expected numbers_count = 3 "
                                         "numbers, got 1"):
        opt.advance()
    assert optim.Adam(_small_model()).advance() == pytest.approx((1e-3 / 0.1, 1 / 0.001 ** 0.5,
                                                                  0.0))


def _small_model():
    fastnn.seed(0)
    from fastnn.layers import Dense, ReLU
    return fastnn.Sequential([Dense(4, 5), ReLU(), Dense(5, 3)])


def test_frozen_layers_are_not_updated():
    model = _small_model()
    opt = optim.SGD(model.named_parameters(), lr=0.1)
    model.freeze("0")
    before = model.state_dict()
    x = np.ones((2, 4), dtype=np.float32)
    loss = fastnn.losses.SoftmaxCrossEntropy()
    loss.forward(model.forward(x), np.array([0, 1]))
    model.backward(loss.backward(), need_dx=False)
    opt.step()
    after = model.state_dict()
    np.testing.assert_array_equal(after["0.W"], before["0.W"])
    assert not np.array_equal(after["2.W"], before["2.W"])
    model.unfreeze()
    assert all(p.trainable for p in model.named_parameters())


def test_state_dict_round_trip_continues_identically():
    def train(opt, model, steps):
        loss = fastnn.losses.SoftmaxCrossEntropy()
        x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
        for _ in range(steps):
            loss.forward(model.forward(x), np.array([0, 1, 2, 0, 1, 2]))
            model.backward(loss.backward())
            opt.step()

    a = _small_model()
    opt_a = optim.Adam(a, lr=0.01)
    train(opt_a, a, 3)
    b = _small_model()
    b.load_state_dict(a.state_dict())
    opt_b = optim.Adam(b, lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    train(opt_a, a, 2)
    train(opt_b, b, 2)
    for (n, va, _), (_, vb, _) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(va, vb, err_msg=n)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
                                  "adamw"])
def test_one_update_over_the_packed_parameters_equals_one_per_parameter(name):
    """model.to() packs the parameters into one arena and step() makes one fused pass over
    it: bit for bit what the per-parameter passes give, through a freeze (which falls back to
    per-parameter passes) and a state_dict reload (which repacks the state)."""
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
    labels = np.array([0, 1, 2, 0, 1, 2])
    runs = []
    for packed in (False, True):
        model = _small_model().regularize(fastnn.regularizers.L2(0.01))
        if packed:
            model.to("cpu")
        opt = optim.get(name, model, lr=0.05)
        loss = fastnn.losses.SoftmaxCrossEntropy()
        calls = []
        update = opt._update
        opt._update = lambda B, p, g, state: (calls.append(p.shape), update(B, p, g, state))
        for step in range(6):
            if step == 2:
                model.freeze("0")
            if step == 3:
                model.unfreeze()
                opt.load_state_dict(opt.state_dict())
            loss.forward(model.forward(x), labels)
            model.backward(loss.backward())
            opt.step()
        runs.append((model.state_dict(), opt.state_dict(), calls))
    (plain, plain_opt, plain_calls), (packed, packed_opt, packed_calls) = runs
    for key in plain:
        np.testing.assert_array_equal(packed[key], plain[key], err_msg=key)
    for pname, slots in plain_opt["state"].items():
        for slot, value in slots.items():
            np.testing.assert_array_equal(packed_opt["state"][pname][slot], value)
    assert plain_calls == [(4, 5), (5,), (5, 3), (3,)] * 2 + [(5, 3), (3,)] + \
        [(4, 5), (5,), (5, 3), (3,)] * 3
    assert packed_calls == [(43,)] * 2 + [(5, 3), (3,)] + [(43,)] * 3
    layer = model[0]
    assert layer.params["W"] is layer.parameter("W").arena.views["0.W"][0]


def test_an_optimizer_follows_a_model_repacked_after_it_was_built():
    """An optimizer built before model.to() (which rebinds the parameters to arena views)
    follows the layers' new arrays on its next step, state included."""
    model = _small_model()
    opt = optim.Adam(model, lr=0.1)
    loss = fastnn.losses.SoftmaxCrossEntropy()
    x = np.ones((2, 4), dtype=np.float32)
    for step in range(3):
        if step == 1:
            model.to("cpu")
        before = model.state_dict()["0.W"].copy()
        loss.forward(model.forward(x), np.array([0, 1]))
        model.backward(loss.backward())
        opt.step()
        assert not np.array_equal(model.state_dict()["0.W"], before)
    assert opt.params[0][1] is model[0].params["W"]


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(ValueError, match="sgd, momentum, nesterov, adagrad, rmsprop, adam"):
        optim.get("adamax", _small_model())
    assert isinstance(optim.get("Adam", _small_model(), lr=0.1), optim.Adam)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(_small_model(), lr=-1)


def test_schedules():
    opt = optim.SGD(_small_model(), lr=0.1)
    sched = optim.StepDecay(opt, step_size=2, gamma=0.5)
    assert [sched.step() for _ in range(4)] == pytest.approx([0.1, 0.05, 0.05, 0.025])
    opt2 = optim.SGD(_small_model(), lr=1.0)
    cos = optim.CosineDecay(opt2, total_epochs=4, min_lr=0.0)
    lrs = [cos.step() for _ in range(5)]
    assert lrs == pytest.approx([(1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3, 4, 4)])


def test_adam_weight_decay_is_l2_in_the_gradient():
    """Adam(weight_decay=) adds weight_decay * p to the gradient, as PyTorch's Adam does (it
    was checked, saved and then ignored); AdamW decays p itself instead, and the two differ."""
    def rule(p, g, s, t):
        return _adam_rule(0.1, 0.0)(p, g + 0.3 * p, s, t)
    np.testing.assert_allclose(_run(lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.3)),
                               _by_hand(rule), rtol=1e-14)

    def constant_gradient(make):
        # g = 1: with g proportional to p (the quadratic), Adam's invariance to the gradient's
        # scale would make the L2 term all but invisible
        p, g = np.array(P0), np.ones(3)
        opt = make([("w", p, g)])
        for _ in range(3):
            g[:] = 1.0
            opt.step()
        return p
    decayed = constant_gradient(lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.3))
    assert not np.allclose(decayed, constant_gradient(lambda ps: optim.Adam(ps, lr=0.1)))
    assert not np.allclose(decayed, constant_gradient(
        lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.3)))
    # the same on a packed model (one flat array), and through a save/load round trip
    fastnn.seed(0)
    from fastnn.layers import Dense
    runs = []
    for packed in (False, True):
        fastnn.seed(0)
        model = fastnn.Sequential([Dense(4, 3, dtype="float64"), Dense(3, 2, dtype="float64")])
        if packed:
            model.to("cpu")
        opt = optim.from_state_dict(model, optim.Adam(model, lr=0.1,
                                                      weight_decay=0.3).state_dict())
        x = np.ones((2, 4))
        for _ in range(3):
            model.backward(model.forward(x))
            opt.step()
        runs.append(model.state_dict())
    for name in runs[0]:
        np.testing.assert_allclose(runs[0][name], runs[1][name], rtol=1e-13, err_msg=name)


def test_adagrad_initial_accumulator_by_hand():
    def rule(p, g, s, t):
        s["h"] = s.get("h", 0.1) + g * g
        return p - 0.1 * g / (math.sqrt(s["h"]) + 1e-7)
    make = lambda ps: optim.AdaGrad(ps, lr=0.1, initial_accumulator_value=0.1)  # noqa: E731
    np.testing.assert_allclose(_run(make), _by_hand(rule), rtol=1e-14)
    # packed into one flat array (model.to), the slot starts at the same value
    from fastnn.layers import Dense
    for packed in (False, True):
        fastnn.seed(0)
        model = fastnn.Sequential([Dense(2, 2, dtype="float64"), Dense(2, 2, dtype="float64")])
        if packed:
            model.to("cpu")
        opt = optim.AdaGrad(model, initial_accumulator_value=0.25)
        model.backward(model.forward(np.ones((1, 2))))
        opt.step()
        assert all(np.all(s["h"] >= 0.25) for s in opt.state.values())
        assert optim.from_state_dict(model, opt.state_dict()).initial_accumulator_value == 0.25

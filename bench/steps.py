"""One SimpleConvNet training step (forward, backward, Adam update) in three implementations:
fastnn's layers, PyTorch CPU, and numpy in the course's style (bench/numpy_ref.py, Adam as the
course writes it). Conv(1->30, 5x5) -> ReLU -> MaxPool 2 -> Flatten -> Dense(4320, 100) -> ReLU
-> Dense(100, 10), softmax cross-entropy, batch 100, float32."""
import numpy as np

import numpy_ref

BATCH = 100


def batch(seed=0, n=BATCH):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return x, y


def fastnn_step():
    import fastnn
    from fastnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
    fastnn.seed(0)
    model = fastnn.Sequential([Conv2D(1, 30, 5), ReLU(), MaxPool2D(2), Flatten(),
                               Dense(4320, 100), ReLU(), Dense(100, 10)])
    loss = fastnn.losses.SoftmaxCrossEntropy()
    opt = fastnn.optim.Adam(model, lr=1e-3)
    x, y = batch()

    def step():
        loss.forward(model.forward(x), y)
        model.backward(loss.backward(), need_dx=False)
        opt.step()
    return step


def torch_step():
    import torch
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4320, 100), nn.ReLU(), nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    x, y = batch()
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=False)
        lossf(model(x), y).backward()
        opt.step()
    return step


class CourseSimpleConvNet:
    """The course's SimpleConvNet, vectorised numpy (float32 kept throughout)."""

    def __init__(self):
        rng = np.random.default_rng(0)
        f32 = np.float32
        self.p = {"W1": (rng.standard_normal((30, 1, 5, 5)) * np.sqrt(2 / 25)).astype(f32),
                  "b1": np.zeros(30, f32),
                  "W2": (rng.standard_normal((4320, 100)) * np.sqrt(2 / 4320)).astype(f32),
                  "b2": np.zeros(100, f32),
                  "W3": (rng.standard_normal((100, 10)) * np.sqrt(2 / 100)).astype(f32),
                  "b3": np.zeros(10, f32)}
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.t = 0

    def step(self, x, t, lr=1e-3, beta1=0.9, beta2=0.999):
        p = self.p
        # forward
        c1, col = numpy_ref.conv_forward(x, p["W1"], p["b1"])
        r1 = np.maximum(c1, 0)
        p1, arg = numpy_ref.max_pool_forward(r1, 2, 2)
        flat = p1.reshape(p1.shape[0], -1)
        a2 = flat @ p["W2"] + p["b2"]
        r2 = np.maximum(a2, 0)
        a3 = r2 @ p["W3"] + p["b3"]
        e = np.exp(a3 - a3.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        n = x.shape[0]
        _ = -np.sum(np.log(y[np.arange(n), t] + 1e-7)) / n
        # backward
        dy = y.copy()
        dy[np.arange(n), t] -= 1
        dy /= n
        g = {"W3": r2.T @ dy, "b3": dy.sum(axis=0)}
        dr2 = dy @ p["W3"].T
        da2 = dr2 * (a2 > 0)
        g["W2"], g["b2"] = flat.T @ da2, da2.sum(axis=0)
        dp1 = (da2 @ p["W2"].T).reshape(p1.shape)
        dr1 = numpy_ref.max_pool_backward(dp1, arg, r1.shape, 2, 2)
        dc1 = dr1 * (c1 > 0)
        _, g["W1"], g["b1"] = numpy_ref.conv_backward(dc1, x, p["W1"], col)
        # Adam, as the course writes it
        self.t += 1
        lr_t = lr * np.sqrt(1 - beta2 ** self.t) / (1 - beta1 ** self.t)
        for k in p:
            self.m[k] += (1 - beta1) * (g[k] - self.m[k])
            self.v[k] += (1 - beta2) * (g[k] ** 2 - self.v[k])
            p[k] -= lr_t * self.m[k] / (np.sqrt(self.v[k]) + 1e-7)


def numpy_step():
    net = CourseSimpleConvNet()
    x, y = batch()
    return lambda: net.step(x, y)

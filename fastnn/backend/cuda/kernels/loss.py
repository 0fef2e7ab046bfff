"""The fused softmax cross-entropy."""
import math

from fastnn.backend.cuda.kernels._common import cuda


@cuda.jit(cache=True)
def softmax_cross_entropy_forward(x, labels, probs, row_loss, zero):
    """One thread per row: probs = softmax(row), row_loss = logsumexp(row) - row[label]."""
    n = cuda.grid(1)
    if n >= x.shape[0]:
        return
    classes = x.shape[1]
    mx = x[n, 0]
    for c in range(1, classes):
        mx = max(mx, x[n, c])
    s = zero
    for c in range(classes):
        e = math.exp(x[n, c] - mx)
        probs[n, c] = e
        s += e
    for c in range(classes):
        probs[n, c] = probs[n, c] / s
    row_loss[n] = math.log(s) + mx - x[n, labels[n]]


@cuda.jit(cache=True)
def softmax_cross_entropy_backward(probs, labels, dx, inv_n):
    i = cuda.grid(1)
    rows, classes = probs.shape
    if i < rows * classes:
        n, c = i // classes, i % classes
        v = probs[n, c] * inv_n
        if labels[n] == c:
            v -= inv_n
        dx[n, c] = v

"""The fused softmax cross-entropy, and the mean squared error's forward into totals."""
import math

from fastnn.backend.cuda.kernels._common import cuda


@cuda.jit(cache=True)
def softmax_cross_entropy_forward(x, labels, probs, row_loss, totals, accumulate, dx, with_grad,
                                  inv_n, zero, one):
    """One thread per row: probs = softmax(row), row_loss = logsumexp(row) - row[label]; with
    accumulate, also adds the row loss and (1 if the row's first largest logit is the label's)
    to totals[0] and totals[1]; with_grad, also dx = the backward's (probs - onehot) * inv_n."""
    n = cuda.grid(1)
    if n >= x.shape[0]:
        return
    classes = x.shape[1]
    mx = x[n, 0]
    arg = 0
    for c in range(1, classes):
        if x[n, c] > mx:
            mx = x[n, c]
            arg = c
    s = zero
    for c in range(classes):
        e = math.exp(x[n, c] - mx)
        probs[n, c] = e
        s += e
    for c in range(classes):
        probs[n, c] = probs[n, c] / s
    if with_grad:
        for c in range(classes):
            v = probs[n, c] * inv_n
            if labels[n] == c:
                v -= inv_n
            dx[n, c] = v
    loss = math.log(s) + mx - x[n, labels[n]]
    row_loss[n] = loss
    if accumulate:
        cuda.atomic.add(totals, 0, loss)
        if arg == labels[n]:
            cuda.atomic.add(totals, 1, one)


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


@cuda.jit(cache=True)
def mean_squared_error_forward(y, t, diff, totals, labels_1d, inv_f, zero, one):
    """One thread per row: diff = y - t, and adds the row's mean squared difference to
    totals[0] and (1 if the row's first largest output is the target's first largest, or
    with labels_1d the target's value) to totals[1] (naive.mean_squared_error_totals)."""
    n = cuda.grid(1)
    if n >= y.shape[0]:
        return
    s = zero
    arg = target_arg = 0
    at = arg_value = zero  # c and arg in y's type: an int against a float32 is float64 math
    for c in range(y.shape[1]):
        d = y[n, c] - t[n, c]
        diff[n, c] = d
        s += d * d
        if y[n, c] > y[n, arg]:
            arg = c
            arg_value = at
        if t[n, c] > t[n, target_arg]:
            target_arg = c
        at += one
    cuda.atomic.add(totals, 0, s * inv_f)
    if (labels_1d and arg_value == t[n, 0]) or (not labels_1d and arg == target_arg):
        cuda.atomic.add(totals, 1, one)

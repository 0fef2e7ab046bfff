"""The checks of the CPU's convolution ops (fastnn/backend/cpu_conv.py) that only its direct
and Winograd kernels need, beside the shared ones of fastnn/_checks.py: sizes their index
arithmetic holds, outputs and work arrays apart from the inputs, the caller's work arrays.
fastnn._cpu_conv's entries check nothing of this: it is checked here, once per call."""
import numpy as np

from fastnn import _checks

# The kernels index their buffers in ptrdiff_t: a padded image (or gradient) of more elements
# than this is refused before any size is computed (a pad of 2**31 once wrapped a size to 0).
MAX_ELEMENTS = 1 << 40


def fits(op, x, W, stride, pad, out_hw):
    """Refuse a geometry whose padded input, padded gradient or packed weights would take more
    than MAX_ELEMENTS (in Python ints, before the C code computes any size)."""
    (sh, sw), (ph, pw), (oh, ow) = stride, pad, out_hw
    _, c, h, w = x.shape
    f, _, kh, kw = W.shape
    widest = max(c, f) + 16
    for what, n in (("padded input", (h + 2 * ph + 2) * (w + 2 * pw + 2) * widest),
                    ("padded gradient", (oh + 2 * kh + 2) * (ow + 2 * kw + 2) * widest),
                    ("weights", 16 * kh * kw * widest * widest)):
        if n > MAX_ELEMENTS:
            raise ValueError(f"{op}: the {what} would take {n} elements, more than "
                             f"{MAX_ELEMENTS} (padding ({ph}, {pw}), stride ({sh}, {sw}), "
                             f"input {h}x{w}): use fastnn.ops with algorithm='im2col'")


def winograd_geometry(op, kernel, pad):
    """A geometry Winograd F(2x2, 3x3) computes: a 3x3 kernel (stride 1), pad <= 2."""
    if kernel != (3, 3) or pad[0] > 2 or pad[1] > 2:
        raise ValueError(f"{op}: expected a 3x3 kernel and pad <= 2, got kernel "
                         f"{kernel[0]}x{kernel[1]} and pad ({pad[0]}, {pad[1]})")


def apart(op, name, a, others):
    """Refuse an array the kernels write that shares memory with another they read or write
    (they would read what they have already overwritten). others: (name, array) pairs."""
    for other_name, other in others:
        if other is not None and np.may_share_memory(a, other):
            raise ValueError(f"{op}: expected {name} apart from {other_name}, got arrays that "
                             "share memory")


def output(op, out, shape, dtype, name, others):
    """A new output, or the caller's (its shape, dtype and layout checked already) apart from
    the others."""
    if out is None:
        return np.empty(shape, dtype)
    apart(op, name, out, others)
    return out


def caller_work(op, work, dtype, others):
    """A caller's work array, checked: 1-D, contiguous, of dtype, writeable, apart from the
    others."""
    _checks.array(op, "work", work, 1, dtypes=(dtype,), device=False)
    _checks.writeable(op, "work", work, ", got a read-only array")
    apart(op, "work", work, others)
    return work


def long_enough(op, work, size):
    """The caller's work array, of at least the `size` elements the kernel about to run needs."""
    if work.shape[0] < size:
        raise ValueError(f"{op}: expected work of at least {size} elements, got {work.shape[0]}")
    return work


def geometry(x, W, stride, pad):
    """The raw work-size entries' geometry tuple (N, C, H, W, F, KH, KW, SH, SW, PH, PW)."""
    return (*x.shape, W.shape[0], *W.shape[2:], *stride, *pad)

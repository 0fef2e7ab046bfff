"""Argument checks shared by every backend's Python-facing wrappers.

A compiled kernel trusts its arguments completely, so everything a kernel relies on is checked
here first: array type, dtype, ndim, contiguity, sizes and window geometry. Each failure raises
TypeError (wrong kind of thing) or ValueError (right kind, wrong value) with a message that names
the operation, what was expected and what came.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPE = np.dtype(np.int32)  # max-pool argmax: flat index into one (H, W) plane
_MAX_PLANE = 2**31 - 1  # so that an int32 index can address every pixel of a plane


def pair(value, what, op):
    """An int or an (h, w) pair of ints -> (h, w)."""
    if type(value) is int:  # the common cases, without the ABC checks below (every op pays)
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and \
            type(value[1]) is int:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{op}: expected {what} as an int or an (h, w) pair of ints, got {value!r}")


def geometry(op, kernel, stride, pad):
    """(kernel, stride, pad), each an int or an (h, w) pair -> three (h, w) pairs.

    stride=None means stride = kernel (the pooling default)."""
    kernel = pair(kernel, "kernel_size", op)
    stride = kernel if stride is None else pair(stride, "stride", op)
    return kernel, stride, pair(pad, "pad", op)


def conv_output_size(size, kernel, stride, pad):
    """The one formula for a sliding window's output length: (H + 2*pad - K) // stride + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def window(op, hw, kernel, stride, pad, max_pool=False):
    """Validate a 2-D sliding window over an (H, W) input; return (OH, OW).

    kernel, stride, pad are (h, w) pairs. For max pooling the padding may be at most half the
    kernel (as in PyTorch), so every window holds at least one real pixel.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: expected a kernel of at least 1x1, got {kh}x{kw}")
    if sh < 1 or sw < 1:
        raise ValueError(f"{op}: expected a positive stride, got ({sh}, {sw})")
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: expected a non-negative padding, got ({ph}, {pw})")
    if max_pool and (2 * ph > kh or 2 * pw > kw):
        raise ValueError(
            f"{op}: padding ({ph}, {pw}) must be at most half the kernel {kh}x{kw}")
    h, w = hw
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(
            f"{op}: kernel {kh}x{kw} is larger than the padded input "
            f"{h + 2 * ph}x{w + 2 * pw} (input {h}x{w}, padding ({ph}, {pw}))")
    return conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


_DEVICE_TYPES = {}  # type -> whether its instances are CUDA arrays


def is_device_array(a):
    """A CUDA array (Numba's, CuPy's, the simulator's), judged by its type once per type: no
    import, and never by evaluating a.__cuda_array_interface__, a property that builds a dict
    on every access (and every op checks its operands)."""
    kind = type(a)
    known = _DEVICE_TYPES.get(kind)
    if known is None:
        known = _DEVICE_TYPES[kind] = (
            hasattr(kind, "__cuda_array_interface__")
            or kind.__module__.startswith(("numba.cuda", "numba_cuda")))
    return known


def is_c_contiguous(a):
    if isinstance(a, np.ndarray):
        return a.flags.c_contiguous
    return a.is_c_contiguous()


def _kind_error(op, name, a, device):
    if device:
        return TypeError(f"{op}: expected {name} as a CUDA device array, got "
                         f"{type(a).__module__}.{type(a).__name__}")
    return TypeError(f"{op}: expected {name} as a numpy.ndarray, got {type(a).__name__}")


def array(op, name, a, ndim, dtypes=FLOAT_DTYPES, layout=None, device=None):
    """Check that `a` is a C-contiguous array of `ndim` dims (None: any) and one of `dtypes`.

    device: True wants a CUDA array, False a numpy array, None either (a backend's front
    passes its own, so that a host array handed to the GPU is named as such)."""
    if type(a) is np.ndarray or isinstance(a, np.ndarray):
        if device:
            raise _kind_error(op, name, a, True)
        contiguous = a.flags.c_contiguous
    elif (_DEVICE_TYPES.get(type(a)) or is_device_array(a)) and device is not False:
        contiguous = None  # asked below, after the cheaper checks
    else:
        raise _kind_error(op, name, a, device)
    if ndim is not None and a.ndim != ndim:
        what = layout or f"{ndim}-D"
        raise ValueError(f"{op}: expected {name} as a {what} array, got shape {a.shape}")
    if a.dtype not in dtypes:
        names = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{op}: expected {name} of dtype {names}, got {a.dtype}")
    if not (contiguous if contiguous is not None else a.is_c_contiguous()):
        raise ValueError(
            f"{op}: expected {name} C-contiguous, got a strided view of shape {a.shape} "
            f"(pass np.ascontiguousarray({name}))")
    return a


def writeable(op, name, a, why=""):
    """numpy arrays can be read-only (device arrays cannot): an op writing into one refuses."""
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        raise ValueError(f"{op}: expected {name} writeable{why}")


def channels(op, name, a, device=None):
    """A float (N, C) or (N, C, H, W) array -> (N, C, P), P = H*W (1 for (N, C))."""
    if getattr(a, "ndim", 0) not in (2, 4):
        raise ValueError(f"{op}: expected {name} as an (N, C) or (N, C, H, W) array, got "
                         f"{getattr(a, 'shape', type(a).__name__)}")
    array(op, name, a, a.ndim, device=device)
    n, c = a.shape[:2]
    return n, c, (a.shape[2] * a.shape[3] if a.ndim == 4 else 1)


def vector(op, name, b, length, dtype, device=None):
    """A contiguous (length,) array of dtype (a bias, a per-channel parameter)."""
    array(op, name, b, 1, (dtype,), None, device)
    if b.shape[0] != length:
        raise ValueError(f"{op}: expected {name} of shape {(length,)}, got {b.shape}")


def like(op, name, a, ref, device=None):
    """An operand of ref's shape and dtype (the second input of an elementwise op)."""
    array(op, name, a, ref.ndim, (ref.dtype,), None, device)
    if a.shape != ref.shape:
        raise ValueError(f"{op}: expected {name} of shape {tuple(ref.shape)}, got {a.shape}")


def image(op, name, x, device=None):
    """A float NCHW batch -> (N, C, H, W)."""
    array(op, name, x, 4, layout="4-D NCHW", device=device)
    n, c, h, w = x.shape
    if c < 1 or h < 1 or w < 1:
        raise ValueError(f"{op}: expected {name} with C, H, W >= 1, got shape {x.shape}")
    if h * w > _MAX_PLANE:
        raise ValueError(f"{op}: an image plane of {h}x{w} pixels is too large")
    return n, c, h, w


def conv_operands(op, x, W, b, stride, pad, device=None):
    """A convolution's operands: x (N, C, H, W), W (F, C, KH, KW) of x's dtype, b (F,) or
    None, stride and pad ints or (h, w) pairs -> (kernel, stride, pad) as (h, w) pairs and the
    output size (OH, OW)."""
    n, c, h, w = image(op, "x", x, device=device)
    array(op, "W", W, 4, layout="4-D (F, C, KH, KW)", device=device)
    same_dtype(op, "W", W, x.dtype)
    if W.shape[1] != c or min(W.shape) < 1:
        raise ValueError(f"{op}: expected W of shape (F, {c}, KH, KW) for x with {c} channels, "
                         f"got {W.shape}")
    if b is not None:
        array(op, "b", b, 1, dtypes=(x.dtype,), device=device)
        same_shape(op, "b", b, (W.shape[0],))
    kernel = (W.shape[2], W.shape[3])
    stride, pad = pair(stride, "stride", op), pair(pad, "pad", op)
    return kernel, stride, pad, window(op, (h, w), kernel, stride, pad)


def conv_rows(op, rows, shape, b, device=None):
    """A convolution's GEMM output rows (N*OH*OW, F) for its NCHW output `shape`, and its bias
    b (F,) or None -> (N, F, OH, OW)."""
    n, f, oh, ow = shape4(op, "shape", shape)
    array(op, "rows", rows, 2, device=device)
    same_shape(op, "rows", rows, (n * oh * ow, f))
    if b is not None:
        vector(op, "b", b, f, rows.dtype, device=device)
    return n, f, oh, ow


def shape4(op, name, shape):
    """An (N, C, H, W) tuple of ints given as a shape argument."""
    if type(shape) is tuple and len(shape) == 4 and type(shape[0]) is type(shape[1]) is \
            type(shape[2]) is type(shape[3]) is int:  # a shape as numpy gives it: fast path
        n, c, h, w = shape
    elif not (isinstance(shape, (tuple, list)) and len(shape) == 4 and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape)):
        raise TypeError(f"{op}: expected {name} as an (N, C, H, W) tuple of ints, got {shape!r}")
    else:
        n, c, h, w = (int(s) for s in shape)
    if n < 0 or c < 1 or h < 1 or w < 1:
        raise ValueError(f"{op}: expected {name} with N >= 0 and C, H, W >= 1, got {shape!r}")
    if h * w > _MAX_PLANE:
        raise ValueError(f"{op}: an image plane of {h}x{w} pixels is too large")
    return n, c, h, w


def same_shape(op, name, a, shape):
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{op}: expected {name} of shape {tuple(shape)}, got {a.shape}")


def same_dtype(op, name, a, dtype):
    if a.dtype != dtype:
        raise TypeError(f"{op}: expected {name} of dtype {dtype} (as the input), got {a.dtype}")


def out_array(op, out, shape, dtype, name="out", empty=None, device=None):
    """Return a fresh output array (from empty(shape, dtype), numpy's by default), or check a
    caller-given `out` and return it."""
    if out is None:
        return np.empty(shape, dtype=dtype) if empty is None else empty(shape, dtype)
    array(op, name, out, len(shape), (np.dtype(dtype),), None, device)
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{op}: expected {name} of shape {tuple(shape)}, got {out.shape}")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ValueError(f"{op}: expected {name} writeable, got a read-only array")
    return out


def take_operands(op, a, idx, device=None):
    """take_rows' operands: a C-contiguous array a (N, ...) and int64 indices idx (M,)."""
    for name, v in (("a", a), ("idx", idx)):
        on_host = isinstance(v, np.ndarray)
        if not (on_host or is_device_array(v)) or (device is not None and on_host == device):
            raise _kind_error(op, name, v, device)
    if a.ndim < 1 or not is_c_contiguous(a):
        raise ValueError(f"{op}: expected a as a C-contiguous array of at least 1 dim, got "
                         f"shape {a.shape}")
    if idx.ndim != 1 or np.dtype(idx.dtype) != np.int64:
        raise TypeError(f"{op}: expected idx as a 1-D int64 array, got {idx.ndim}-D {idx.dtype}")
    if not is_c_contiguous(idx):
        raise ValueError(f"{op}: expected idx contiguous, got a strided view")

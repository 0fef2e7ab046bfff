"""numpy-vectorised reference implementations in the style of the course material
("deep learning from scratch"): im2col by strided slicing over the KHxKW kernel positions, max
pooling through im2col + argmax, convolution through im2col + GEMM with numpy transposes.
These are the baselines fastnn's compiled kernels are measured against; they are not used by the
package. Unlike the course (which allocates float64), they keep the input's dtype, to be fair."""
import numpy as np


def _out(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def im2col(x, kh, kw, stride=1, pad=0):
    n, c, h, w = x.shape
    oh, ow = _out(h, kh, stride, pad), _out(w, kw, stride, pad)
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for y in range(kh):
        y_max = y + stride * oh
        for xx in range(kw):
            x_max = xx + stride * ow
            col[:, :, y, xx, :, :] = img[:, :, y:y_max:stride, xx:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def col2im(col, x_shape, kh, kw, stride=1, pad=0):
    n, c, h, w = x_shape
    oh, ow = _out(h, kh, stride, pad), _out(w, kw, stride, pad)
    col = col.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for y in range(kh):
        y_max = y + stride * oh
        for xx in range(kw):
            x_max = xx + stride * ow
            img[:, :, y:y_max:stride, xx:x_max:stride] += col[:, :, y, xx, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


def max_pool_forward(x, k, stride):
    n, c, h, w = x.shape
    oh, ow = _out(h, k, stride, 0), _out(w, k, stride, 0)
    col = im2col(x, k, k, stride, 0).reshape(-1, k * k)
    arg_max = np.argmax(col, axis=1)
    out = np.max(col, axis=1).reshape(n, oh, ow, c).transpose(0, 3, 1, 2)
    return out, arg_max


def max_pool_backward(dout, arg_max, x_shape, k, stride):
    dout = dout.transpose(0, 2, 3, 1)
    dmax = np.zeros((dout.size, k * k), dtype=dout.dtype)
    dmax[np.arange(arg_max.size), arg_max.flatten()] = dout.flatten()
    dmax = dmax.reshape(dout.shape + (k * k,))
    dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
    return col2im(dcol, x_shape, k, k, stride, 0)


def conv_forward(x, W, b, stride=1, pad=0):
    fn, c, fh, fw = W.shape
    n, _, h, w = x.shape
    oh, ow = _out(h, fh, stride, pad), _out(w, fw, stride, pad)
    col = im2col(x, fh, fw, stride, pad)
    col_W = W.reshape(fn, -1).T
    out = (col @ col_W + b).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
    return out, col


def conv_backward(dout, x, W, col, stride=1, pad=0):
    fn, c, fh, fw = W.shape
    dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
    db = np.sum(dout, axis=0)
    dW = (col.T @ dout).transpose(1, 0).reshape(fn, c, fh, fw)
    dcol = dout @ W.reshape(fn, -1)
    dx = col2im(dcol, x.shape, fh, fw, stride, pad)
    return dx, dW, db

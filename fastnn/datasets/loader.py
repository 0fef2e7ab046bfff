"""Minibatches and image transforms.

    loader = DataLoader(x, y, batch_size=100, shuffle=True, seed=0,
                        transform=Compose([RandomShift(2), RandomRotation(10)]))
    for xb, yb in loader: ...

A transform is a callable (batch, rng) -> batch on an (N, C, H, W) float batch (or (N, D) for
Normalize); the loader passes its own generator, so a seeded run augments reproducibly.
"""
import numbers

import numpy as np

from fastnn import init as initializers
from fastnn._checks import is_device_array
from fastnn.backend import backend_for_device


def class_labels(y):
    """Targets as an array, integer class labels as int64: what the losses take on a GPU
    (the host accepts any integer type). Targets already on a GPU stay there, as they are:
    integer ones must be int64 (no kernel converts them)."""
    if is_device_array(y):
        if np.dtype(y.dtype).kind in "iu" and y.dtype != np.int64:
            raise TypeError(f"expected integer labels on the GPU as int64, got {y.dtype}: "
                            "convert them on the host before moving them")
        return y
    y = np.asarray(y)
    return y.astype(np.int64) if y.dtype.kind in "iu" and y.dtype != np.int64 else y


def data_on_gpu(owner, x, y, what="x and y"):
    """Whether x and y are both already on the GPU (False: both on the host); one on each is
    refused."""
    x_gpu, y_gpu = is_device_array(x), is_device_array(y)
    if x_gpu != y_gpu:
        raise TypeError(f"{owner}: expected {what} both on the host or both on the GPU, got "
                        f"the first on the {'GPU' if x_gpu else 'host'} and the second on the "
                        f"{'GPU' if y_gpu else 'host'}")
    return x_gpu


# The most a device loader copies to gather a whole epoch at once (the copy doubles the data
# set's footprint on the device); a larger data set is gathered batch by batch.
EPOCH_GATHER_BYTES = 1 << 30


class DataLoader:
    """Iterate (x_batch, y_batch) minibatches over arrays x (N, ...) and y (N, ...).

    shuffle: a new order each epoch, drawn from this loader's generator `rng` (saved in
    checkpoints): seed= (an int, or a numpy Generator to share), else one drawn from fastnn's
    generator, so fastnn.seed(s) makes the order reproducible. drop_last: skip a final smaller batch.
    reuse_buffers: yield the same batch arrays every time (no allocation per batch; what the
    Trainer uses): in order (no shuffle, no transform) each batch is a view of the data set
    itself (writing into it writes into x). By default each batch is a fresh array.
    device: "cuda" copies x and y to the GPU once and cuts every batch there (the backend's
    take_rows gather, as on the host; the epoch's order goes over once per epoch): no host copy
    per step. With reuse_buffers the whole epoch is gathered at its start, one kernel per
    array (none without shuffle), and each batch is a view of it: no launch per step. The batches are the same as on
    the host for the same seed. Integer labels become int64 there (what the losses take).
    x and y already on the GPU (fastnn.gpu.to_device) are used where they are, no copy made
    (integer labels must then be int64). Transforms run on the host, so they need host data
    and device=None."""

    def __init__(self, x, y, batch_size, shuffle=True, seed=None, drop_last=False,
                 transform=None, reuse_buffers=False, device=None):
        on_gpu = data_on_gpu("DataLoader", x, y)
        if on_gpu:
            if device not in (None, "cuda"):
                raise ValueError(f"DataLoader: x and y are on the GPU: expected device='cuda' "
                                 f"(or None), got {device!r}")
            device = "cuda"
        else:
            x, y = np.asarray(x), np.asarray(y)
        if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
            raise ValueError(f"DataLoader: expected x and y with the same number of samples, got "
                             f"x {x.shape} and y {y.shape}")
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: expected batch_size as a positive int, got {batch_size!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: expected transform as a callable, got "
                            f"{type(transform).__name__}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.transform = transform
        self.rng = initializers.child_rng() if seed is None else np.random.default_rng(seed)
        self.reuse_buffers = reuse_buffers
        self._buffers = {}
        self._views = None  # (epoch buffers, batch size) key, [(x view, y view)] per batch
        B = self._backend = backend_for_device(device or "cpu")
        if B.name != "cpu" and transform is not None:
            raise ValueError(f"DataLoader: transforms run on the host: give device=None to "
                             f"augment, or no transform to keep the data on {device!r}")
        # the data set where the batches are cut (on the host: x itself when contiguous)
        # (data already on the GPU is used as it is: no copy)
        self._data = ((x, class_labels(y)) if on_gpu else
                      (B.from_host(x), B.from_host(class_labels(y) if B.name != "cpu" else y)))

    @property
    def backend(self):
        """The backend holding the data set, where the batches are cut (the CPU: on the host)."""
        return self._backend

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _buffer(self, key, shape, like):
        """The loader's array for key (an epoch's data in its order, or a batch), made once.
        No recorded step reads it (the step runner copies each batch into its own
        input buffers), so making it leaves the captured graphs valid (a new fit's loader
        does not drop them: Backend.empty_cached)."""
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = self._backend.empty_cached(shape, like.dtype)
        return buf

    def __iter__(self):
        B, bs, n = self._backend, self.batch_size, len(self.x)
        epoch = None  # the epoch's samples in order, when the batches are views of them
        gather_epoch = self.reuse_buffers and B.name != "cpu"
        if self.reuse_buffers and not self.shuffle and self.transform is None:
            epoch = self._data  # in order, the data set is the epoch: batches are its views
        else:
            order = self.rng.permutation(n) if self.shuffle else np.arange(n)
            order = B.from_host(order.astype(np.int64, copy=False))  # once per epoch
            if gather_epoch and self.x.nbytes + self.y.nbytes <= EPOCH_GATHER_BYTES:
                # on a GPU a launch costs more than the copy: gather the whole epoch at once
                epoch = [B.take_rows(a, order, out=self._buffer(("epoch", key), a.shape, a))
                         for key, a in zip("xy", self._data)]
        if epoch is not None:  # the same buffers every epoch: their batch views made once
            key = (id(epoch[0]), id(epoch[1]), bs, len(self))  # (drop_last may change)
            if self._views is None or self._views[0] != key:
                self._views = (key, [(epoch[0][lo:lo + bs], epoch[1][lo:lo + bs])
                                     for lo in range(0, len(self) * bs, bs)])
            yield from self._views[1]
            return
        if self.reuse_buffers and len(self):
            # every batch size's arrays made before the first batch, none between two steps
            for size in {min(bs, n), min(bs, n - (len(self) - 1) * bs)}:
                for key, a in zip("xy", self._data):
                    self._buffer((key, size), (size,) + a.shape[1:], a)
        for i in range(len(self)):
            lo, hi = i * bs, min((i + 1) * bs, n)
            xb, yb = (B.take_rows(a, order[lo:hi], out=self._buffers.get((key, hi - lo)))
                      for key, a in zip("xy", self._data))
            if self.transform is not None:
                xb = self.transform(xb, self.rng)
            yield xb, yb


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x, rng):
        for t in self.transforms:
            x = t(x, rng)
        return x


def _images(name, x):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected an image batch (N, C, H, W), got {x.shape}")


class RandomShift:
    """Shift each image by up to max_shift pixels in each direction, filling with zeros."""

    def __init__(self, max_shift=2):
        if not isinstance(max_shift, numbers.Integral) or max_shift < 0:
            raise ValueError(f"RandomShift: expected max_shift as an int >= 0, got {max_shift!r}")
        self.max_shift = int(max_shift)

    def __call__(self, x, rng):
        _images("RandomShift", x)
        s = self.max_shift
        if s == 0:
            return x
        n, _, h, w = x.shape
        padded = np.zeros(x.shape[:2] + (h + 2 * s, w + 2 * s), x.dtype)
        padded[:, :, s:s + h, s:s + w] = x
        dy, dx = rng.integers(0, 2 * s + 1, n), rng.integers(0, 2 * s + 1, n)
        out = np.empty_like(x)
        for i in range(n):
            out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        return out


class RandomRotation:
    """Rotate each image about its centre by an angle drawn from [-max_degrees, max_degrees],
    with bilinear interpolation and zeros outside the image."""

    def __init__(self, max_degrees=10.0):
        if not isinstance(max_degrees, numbers.Real) or max_degrees < 0:
            raise ValueError(f"RandomRotation: expected max_degrees >= 0, got {max_degrees!r}")
        self.max_degrees = float(max_degrees)

    def __call__(self, x, rng):
        _images("RandomRotation", x)
        n, c, h, w = x.shape
        theta = np.deg2rad(rng.uniform(-self.max_degrees, self.max_degrees, n))[:, None, None]
        cy, cx = (h - 1) / 2, (w - 1) / 2
        yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
        # inverse mapping: the source pixel of each output pixel
        src_y = np.cos(theta) * yy - np.sin(theta) * xx + cy
        src_x = np.sin(theta) * yy + np.cos(theta) * xx + cx
        y0, x0 = np.floor(src_y).astype(np.int64), np.floor(src_x).astype(np.int64)
        fy, fx = (src_y - y0).astype(x.dtype), (src_x - x0).astype(x.dtype)
        out = np.zeros_like(x)
        batch = np.arange(n)[:, None, None]
        for oy, ox, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                            (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            py, px = y0 + oy, x0 + ox
            inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
            pyc, pxc = np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)
            for ch in range(c):
                out[:, ch] += np.where(inside, x[batch, ch, pyc, pxc], 0) * wgt
        return out


class Normalize:
    """(x - mean) / std, with mean and std given or computed once from data via fit(x): scalars
    over the whole dataset (the MNIST convention: mean 0, variance 1 overall)."""

    def __init__(self, mean=None, std=None):
        self.mean, self.std = mean, std

    def fit(self, x):
        self.mean, self.std = float(np.mean(x)), float(np.std(x))
        if not self.std > 0:
            raise ValueError("Normalize.fit: the data has zero variance")
        return self

    def __call__(self, x, rng=None):
        if self.mean is None or self.std is None:
            raise RuntimeError("Normalize: call fit(x_train) first, or give mean and std")
        out = (x - x.dtype.type(self.mean)) / x.dtype.type(self.std)
        return out.astype(x.dtype, copy=False)

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


__all__ = ["Compose", "DataLoader", "Normalize", "RandomRotation", "RandomShift"]

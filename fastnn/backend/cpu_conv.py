"""The CPU backend's convolution kernels (fastnn.convolution's "direct" and "winograd"
algorithms: csrc/conv_direct.c through fastnn._cpu_conv), and which instruction set they run.

The entries of fastnn._cpu_conv are raw: every argument is checked once, here. The public ops
(conv_direct_forward, ...) check everything; the run_* entries check only what the engine
(fastnn.convolution) does not, so that a call through the engine is checked once as well:
the operands, window and caller's outputs by the engine (_checks.conv_operands,
_checks.out_array), then here the sizes the C index arithmetic can hold, outputs apart from
the inputs, the work arrays, and what only the direct kernels need (dx: stride 1 and pad <=
kernel - 1).
"""
import numpy as np

from fastnn import _checks
from fastnn.backend import _native, cpu_conv_checks as cc

try:  # csrc/conv_direct.c needs GCC or Clang: an MSVC build has only im2col + GEMM
    from fastnn import _cpu_conv
except ImportError:
    _cpu_conv = None
try:
    from fastnn import _cpu_threads
except ImportError:  # a source checkout that was never built
    _cpu_threads = None


def cpu_info():
    """Which CPU kernels fastnn runs: the instruction set of its convolution kernels ("avx512",
    "avx2" or "generic": the widest this CPU runs, or $FASTNN_CPU_ISA; select_isa changes it),
    every variant compiled in and whether this CPU runs it, the module of each other kernel
    family (built per instruction set too, chosen once at import), the float32 lanes of a
    vector, the threads, and the BLAS libraries numpy loaded (threadpoolctl) with the kernel
    each picked."""
    info = {"isa": None, "isas": {}, "kernels": dict(_native.loaded), "conv_lanes_float32": 1,
            "threads": _cpu_threads.get_num_threads() if _cpu_threads else 1,
            "openmp": bool(_cpu_threads and _cpu_threads.HAVE_OPENMP), "blas": []}
    if _cpu_conv is not None:
        info.update(isa=_cpu_conv.selected(), isas=_cpu_conv.variants(),
                    conv_lanes_float32=_cpu_conv.lanes())
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [f"{i['internal_api']} {i.get('version')} {i.get('architecture')}, "
                        f"{i.get('num_threads')} threads"
                        for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        pass
    return info


def select_isa(name):
    """Run the direct convolution kernels compiled for `name` ("avx512", "avx2", "generic")
    from now on; a name this CPU cannot run is refused."""
    if _cpu_conv is None:
        raise RuntimeError("select_isa: fastnn was built without its direct convolution kernels")
    _cpu_conv.select(name)


class ConvKernels:
    """The convolution ops of CPUBackend (a mixin: it uses the backend's scratch buffers)."""

    @property
    def conv_algorithms(self):
        return ("direct", "winograd", "im2col") if _cpu_conv is not None else ("im2col",)

    @property
    def conv_isa(self):
        return _cpu_conv.selected() if _cpu_conv is not None else None

    @property
    def conv_lanes(self):
        return _cpu_conv.lanes() if _cpu_conv is not None else 1

    def _work(self, op, work, dtype, others):
        """What the raw entry calls with the size the variant it runs needs: the reused
        scratch vector (work None: every layer's is a view of one buffer, the largest's); or
        the caller's array (or what the caller's callable returns), checked."""
        if work is None:
            return lambda size: self.scratch("conv_direct_work", (size,), dtype)
        if callable(work):
            return lambda size: cc.long_enough(op, cc.caller_work(op, work(size), dtype, others),
                                             size)
        cc.caller_work(op, work, dtype, others)
        return lambda size: cc.long_enough(op, work, size)

    def _partial(self, op, partial, x, W, others):
        """The per-image bias sums, (N, F) float64: scratch, or the caller's, checked."""
        shape = (x.shape[0], W.shape[0])
        if partial is None:
            return self.scratch("conv_direct_part", shape, np.float64)
        part = _checks.out_array(op, partial, shape, np.float64, name="partial", device=False)
        cc.apart(op, "partial", part, others)
        return part

    # -- the public ops: every argument checked here, once --------------------------------
    def _operands(self, op, x, W, b, stride, pad, winograd=False):
        kernel, stride, pad, out_hw = _checks.conv_operands(op, x, W, b, stride, pad,
                                                            device=False)
        if winograd:
            cc.winograd_geometry(op, kernel, pad)
        return stride, pad, out_hw

    def _dy(self, op, dy, x, W, out_hw):
        _checks.array(op, "dy", dy, 4, dtypes=(x.dtype,), layout="4-D NCHW", device=False)
        _checks.same_shape(op, "dy", dy, (x.shape[0], W.shape[0], *out_hw))

    def conv_direct_forward(self, x, W, b, stride, pad, relu=False, out=None, work=None):
        """y (N, F, OH, OW) = the cross-correlation of x (N, C, H, W) with W (F, C, KH, KW),
        + b (F,) or nothing; relu=True returns max(y, 0) (NaN passes through). out: y to
        write into; work: a 1-D array of conv_direct_forward_work_size(...) elements, or a
        callable giving one for a size, or None (the backend's scratch); the same below."""
        op = "conv_direct_forward"
        stride, pad, out_hw = self._operands(op, x, W, b, stride, pad)
        if out is not None:
            _checks.out_array(op, out, (x.shape[0], W.shape[0], *out_hw), x.dtype, device=False)
        return self.run_conv_direct_forward(op, x, W, b, stride, pad, out_hw, relu, out, work)

    def conv_direct_backward(self, dy, x, W, stride, pad, need_dx=True, need_dW=True,
                             dx_out=None, dW_out=None, db_out=None, work=None, partial=None):
        """Gradients of conv_direct_forward -> (dx or None, dW or None, db or None). dx needs
        stride 1 and pad <= kernel - 1 (on each axis). partial: an (N, F) float64 array for
        the per-image bias sums (None: the backend's scratch)."""
        op = "conv_direct_backward"
        stride, pad, out_hw = self._operands(op, x, W, None, stride, pad)
        self._dy(op, dy, x, W, out_hw)
        self._outputs(op, x, W, dx_out if need_dx else None, dW_out if need_dW else None,
                      db_out if need_dW else None)
        return self.run_conv_direct_backward(op, dy, x, W, stride, pad, need_dx, need_dW,
                                             dx_out, dW_out, db_out, work, partial)

    def _outputs(self, op, x, W, dx_out, dW_out, db_out):
        for name, a, shape in (("dx_out", dx_out, x.shape), ("dW_out", dW_out, W.shape),
                               ("db_out", db_out, W.shape[:1])):
            if a is not None:
                _checks.out_array(op, a, shape, x.dtype, name=name, device=False)

    def conv_winograd_forward(self, x, W, b, pad, relu=False, out=None, work=None):
        """As conv_direct_forward, by Winograd F(2x2, 3x3): W (F, C, 3, 3), stride 1,
        pad <= 2."""
        op = "winograd_forward"
        stride, pad, out_hw = self._operands(op, x, W, b, 1, pad, winograd=True)
        if out is not None:
            _checks.out_array(op, out, (x.shape[0], W.shape[0], *out_hw), x.dtype, device=False)
        return self.run_conv_winograd_forward(op, x, W, b, pad, out_hw, relu, out, work)

    def conv_winograd_backward_data(self, dy, x, W, pad, dx_out=None, work=None):
        """The gradient dx of conv_winograd_forward (x gives the shape and dtype only)."""
        op = "winograd_backward_data"
        stride, pad, out_hw = self._operands(op, x, W, None, 1, pad, winograd=True)
        self._dy(op, dy, x, W, out_hw)
        self._outputs(op, x, W, dx_out, None, None)
        return self.run_conv_winograd_backward_data(op, dy, x, W, pad, out_hw, dx_out, work)

    def conv_winograd_backward_weights(self, dy, x, W, pad, dW_out=None, db_out=None,
                                       work=None, partial=None):
        """The weight and bias gradients (dW, db) of conv_winograd_forward (W gives the shape
        only). partial: an (N, F) float64 array for the per-image bias sums."""
        op = "winograd_backward_weights"
        stride, pad, out_hw = self._operands(op, x, W, None, 1, pad, winograd=True)
        self._dy(op, dy, x, W, out_hw)
        self._outputs(op, x, W, None, dW_out, db_out)
        return self.run_conv_winograd_backward_weights(op, dy, x, W, pad, out_hw, dW_out,
                                                       db_out, work, partial)

    def conv_direct_forward_work_size(self, x, W, stride, pad):
        """Elements of x.dtype conv_direct_forward's work array needs (the variant in use)."""
        stride, pad, out_hw = self._operands("conv_direct_forward", x, W, None, stride, pad)
        cc.fits("conv_direct_forward", x, W, stride, pad, out_hw)
        return _cpu_conv.forward_work_size(cc.geometry(x, W, stride, pad), x.dtype == np.float64)

    def conv_direct_backward_work_size(self, x, W, stride, pad, need_dx=True, need_dW=True):
        """Elements of x.dtype conv_direct_backward's work array needs."""
        stride, pad, out_hw = self._operands("conv_direct_backward", x, W, None, stride, pad)
        cc.fits("conv_direct_backward", x, W, stride, pad, out_hw)
        return _cpu_conv.backward_work_size(cc.geometry(x, W, stride, pad),
                                            x.dtype == np.float64, need_dx, need_dW)

    def conv_winograd_work_size(self, x, W, pad, data=False):
        """Elements of x.dtype the Winograd forward's (data=False) or backward-data's work
        array needs."""
        stride, pad, out_hw = self._operands("winograd", x, W, None, 1, pad, winograd=True)
        cc.fits("winograd", x, W, stride, pad, out_hw)
        return _cpu_conv.winograd_work_size(cc.geometry(x, W, stride, pad),
                                            x.dtype == np.float64, data)

    def conv_winograd_weights_work_size(self, x, W, pad):
        """Elements of x.dtype the Winograd weight gradient's work array needs."""
        stride, pad, out_hw = self._operands("winograd", x, W, None, 1, pad, winograd=True)
        cc.fits("winograd", x, W, stride, pad, out_hw)
        return _cpu_conv.winograd_weights_work_size(cc.geometry(x, W, stride, pad),
                                                    x.dtype == np.float64)

    # -- after the engine's checks (or the public op's): the rest, then the raw kernel ------
    # stride, pad, out_hw: (h, w) pairs of ints; the operands, the window and any caller's
    # output (shape, dtype, layout, writeable) have been checked.
    def run_conv_direct_forward(self, op, x, W, b, stride, pad, out_hw, relu, out, work=None):
        cc.fits(op, x, W, stride, pad, out_hw)
        inputs = (("x", x), ("W", W), ("b", b))
        y = cc.output(op, out, (x.shape[0], W.shape[0], *out_hw), x.dtype, "out", inputs)
        if x.shape[0]:
            _cpu_conv.forward(x, W, b, y, *stride, *pad, relu,
                              self._work(op, work, x.dtype, inputs + (("out", y),)))
        return y

    def run_conv_direct_backward(self, op, dy, x, W, stride, pad, need_dx, need_dW, dx_out,
                                 dW_out, db_out, work=None, partial=None):
        (sh, sw), (ph, pw), (kh, kw) = stride, pad, W.shape[2:]
        cc.fits(op, x, W, stride, pad, dy.shape[2:])
        if need_dx and (sh != 1 or sw != 1 or ph > kh - 1 or pw > kw - 1):
            raise ValueError(f"{op}: dx needs stride 1 and pad <= kernel - 1, got stride "
                             f"({sh}, {sw}), pad ({ph}, {pw}), kernel {kh}x{kw}")
        inputs = (("dy", dy), ("x", x), ("W", W))
        dx = cc.output(op, dx_out, x.shape, x.dtype, "dx_out", inputs) if need_dx else None
        dW = cc.output(op, dW_out, W.shape, x.dtype, "dW_out", inputs + (("dx_out", dx),)) \
            if need_dW else None
        db = cc.output(op, db_out, W.shape[:1], x.dtype, "db_out",
                     inputs + (("dx_out", dx), ("dW_out", dW))) if need_dW else None
        if not (need_dx or need_dW):
            return None, None, None
        if x.shape[0] == 0:
            for a in (dx, dW, db):
                if a is not None:
                    a[...] = 0
            return dx, dW, db
        arrays = inputs + (("dx_out", dx), ("dW_out", dW), ("db_out", db))
        part = self._partial(op, partial, x, W, arrays) if need_dW else None
        _cpu_conv.backward(dy, x, W, dx, dW, db, sh, sw, ph, pw,
                           self._work(op, work, x.dtype, arrays + (("partial", part),)), part)
        return dx, dW, db

    def run_conv_winograd_forward(self, op, x, W, b, pad, out_hw, relu, out, work=None):
        cc.fits(op, x, W, (1, 1), pad, out_hw)
        inputs = (("x", x), ("W", W), ("b", b))
        y = cc.output(op, out, (x.shape[0], W.shape[0], *out_hw), x.dtype, "out", inputs)
        if x.shape[0]:
            _cpu_conv.winograd_forward(x, W, b, y, *pad, relu, self._work(
                op, work, x.dtype, (("the input", x), ("W", W), ("b", b), ("the output", y))))
        return y

    def run_conv_winograd_backward_data(self, op, dy, x, W, pad, out_hw, dx_out, work=None):
        cc.fits(op, x, W, (1, 1), pad, out_hw)
        dx = cc.output(op, dx_out, x.shape, x.dtype, "dx_out", (("dy", dy), ("W", W)))
        if x.shape[0]:
            _cpu_conv.winograd_backward_data(dy, W, dx, *pad, self._work(
                op, work, x.dtype, (("the input", dy), ("W", W), ("the output", dx))))
        return dx

    def run_conv_winograd_backward_weights(self, op, dy, x, W, pad, out_hw, dW_out, db_out,
                                           work=None, partial=None):
        cc.fits(op, x, W, (1, 1), pad, out_hw)
        inputs = (("dy", dy), ("x", x))
        dW = cc.output(op, dW_out, W.shape, x.dtype, "dW_out", inputs)
        db = cc.output(op, db_out, W.shape[:1], x.dtype, "db_out", inputs + (("dW_out", dW),))
        if x.shape[0] == 0:
            dW[...] = 0
            db[...] = 0
            return dW, db
        arrays = inputs + (("dW_out", dW), ("db_out", db))
        part = self._partial(op, partial, x, W, arrays)
        _cpu_conv.winograd_backward_weights(
            dy, x, dW, db, *pad, self._work(op, work, x.dtype, arrays + (("partial", part),)),
            part)
        return dW, db

"""The argument types of the CUDA kernel launches the tests make, held against SIGNATURES, the
list that test_cuda.py::test_kernels_compile_to_ptx_in_the_types_they_are_launched_with
compiles for a GPU.

Numba's simulator runs a kernel as Python: a typing error, or float64 arithmetic in a float32
kernel, shows only when a GPU compiles the kernel for the types of its arguments. So
conftest.py watches every test's launches in the simulator (watch()) and fails a test that
launches a kernel with types SIGNATURES does not list, and the PTX test compiles each listed
signature for a Hopper GPU. A signature first launched while a step is recorded (a CUDA
graph's capture, the stand-in of graph_standin.py here) would compile inside the capture:
`first_launched_while_recorded` names them.

A signature is the kernel's Python name and one type per argument, as Numba's dispatcher types
them: "F" is the kernel's float type (the same one throughout: float32 or float64),
"F[2d]" a C-contiguous 2-d array of it, "int32[4d]" one of int32; "int64" a Python int,
"bool" a Python bool; a numpy scalar is its own type ("uint64").
"""
import numpy as np

_R = ("int64", "int64", "int64", "int64", "int64", "int64")  # a window's kh, kw, sh, sw, ph, pw
SIGNATURES = {
    "im2col": [("F[4d]", "F[2d]") + _R + ("int64", "int64", "F")],
    "col2im": [("F[2d]", "F[4d]", "bool", "F[4d]") + _R + ("int64", "int64", "F")],
    "take_rows": [("F[1d]", "int64[1d]", "F[1d]", "int64"),
                  ("int64[1d]", "int64[1d]", "int64[1d]", "int64")],
    "rows_to_nchw": [("F[2d]", "F[1d]", "bool", "bool", "F[4d]", "F")],
    "nchw_to_rows": [("F[4d]", "F[2d]")],
    "gemm": [("F[2d]", "F[2d]", "F[2d]", "bool", "bool", "bool", "F")],
    "max_pool_forward": [("F[4d]", "F[4d]", "int32[4d]") + _R],
    "max_pool_backward": [("F[4d]", "int32[4d]", "F[4d]", "bool", "F[4d]") + _R + ("F",)],
    "max_pool_backward_overlapping": [("F[4d]", "int32[4d]", "F[4d]", "bool", "F[4d]") + _R
                                      + ("F",)],
    "rows_max_pool": [("F[2d]", "F[1d]", "bool", "bool", "F[4d]", "int32[4d]", "int64", "int64")
                      + _R + ("F",)],
    "max_pool_backward_rows": [("F[4d]", "int32[4d]", "F[4d]", "bool", "F[2d]", "int64", "int64")
                               + _R + ("bool", "F")],
    "avg_pool_forward": [("F[4d]", "F[4d]") + _R + ("F", "F")],
    "avg_pool_backward": [("F[4d]", "F[4d]") + _R + ("F", "F")],
    "maxout_forward": [("F[4d]", "F[3d]", "int32[3d]")],
    "maxout_backward": [("F[3d]", "int32[3d]", "F[4d]", "F")],
    "bias_add": [("F[3d]", "F[1d]", "bool", "F")],
    "bias_grad": [("F[3d]", "F[3d]", "bool", "bool", "F[3d]", "F[1d]", "F[2d]", "int32[1d]",
                   "int64", "F")],
    "fill": [("F[1d]", "F"), ("int32[1d]", "int32")],
    "add": [("F[1d]", "F[1d]", "F[1d]")],
    "subtract": [("F[1d]", "F[1d]", "F[1d]")],
    "multiply": [("F[1d]", "F[1d]", "F[1d]")],
    "scale": [("F[1d]", "F", "F[1d]")],
    "sqrt": [("F[1d]", "F[1d]")],
    "safe_divide": [("F[1d]", "F[1d]", "F[1d]", "F")],
    "relu_forward": [("F[1d]", "F[1d]", "F")],
    "relu_backward": [("F[1d]", "F[1d]", "F[1d]", "F")],
    "activation_forward": [("int64", "F[1d]", "F[1d]", "F", "F", "F", "F")],
    "activation_backward": [("int64", "F[1d]", "F[1d]", "F[1d]", "F", "F", "F")],
    "dropout_mask": [("F[1d]", "uint64[1d]", "bool", "uint64", "F", "F", "F", "F", "bool",
                      "F[1d]", "F[1d]")],
    "sum_of": [("int64", "F[1d]", "F[1d]", "F")],
    "softmax_forward": [("F[3d]", "F[3d]", "F")],
    "softmax_backward": [("F[3d]", "F[3d]", "F[3d]", "F")],
    "softmax_cross_entropy_forward": [("F[2d]", "int64[1d]", "F[2d]", "F[1d]", "F[1d]", "bool",
                                       "F[2d]", "bool", "F", "F", "F")],
    "softmax_cross_entropy_backward": [("F[2d]", "int64[1d]", "F[2d]", "F")],
    "mean_squared_error_forward": [("F[2d]", "F[2d]", "F[2d]", "F[1d]", "bool", "F", "F",
                                    "F")],
    "bn_statistics": [("F[3d]", "F[1d]", "F[1d]", "F[1d]", "F[1d]", "F", "F", "F", "F")],
    "bn_inv_std": [("F[1d]", "F[1d]", "F", "F")],
    "bn_normalize": [("F[3d]", "F[1d]", "F[1d]", "F[1d]", "F[1d]", "F[3d]", "F[3d]")],
    "bn_grad_sums": [("F[3d]", "F[3d]", "F[1d]", "F[1d]", "F")],
    "bn_input_grad": [("F[3d]", "F[3d]", "F[1d]", "F[1d]", "F[1d]", "F[1d]", "bool", "F", "F",
                       "F[3d]")],
    "sgd": [("F[1d]", "F[1d]", "F", "F[1d]", "bool")],
    "momentum": [("F[1d]", "F[1d]", "F[1d]", "F", "F[1d]", "bool", "F", "bool")],
    "scaled_step": [("F[1d]", "F[1d]", "F[1d]", "F", "F[1d]", "bool", "F", "F", "F")],
    "adam": [("F[1d]",) * 4 + ("F",) * 3 + ("F[1d]", "bool") + ("F",) * 4],
    "add_l2": [("F[1d]", "F[1d]", "F")],
    "add_l1": [("F[1d]", "F[1d]", "F", "F")],
}
FLOATS = ("float32", "float64")


def type_name(arg):
    """An argument's type in SIGNATURES' notation (before "F" stands in for the float type)."""
    if isinstance(arg, bool):  # (a numpy bool is an np.generic, below)
        return "bool"
    if isinstance(arg, int):
        return "int64"
    if isinstance(arg, float):
        return "float64"
    if isinstance(arg, np.generic):
        return arg.dtype.name
    flags = arg.flags  # a device array (the simulator's, or a real one)
    layout = "" if flags["C_CONTIGUOUS"] else (",F" if flags["F_CONTIGUOUS"] else ",A")
    return f"{np.dtype(arg.dtype).name}[{arg.ndim}d{layout}]"


def listed(name, types):
    """Whether kernel `name` launched with these argument types is in SIGNATURES."""
    for sig in SIGNATURES.get(name, ()):
        if any(concrete(sig, f) == tuple(types) for f in FLOATS):
            return True
    return False


def concrete(sig, float_type):
    return tuple(t.replace("F", float_type, 1) if t.startswith("F") else t for t in sig)


class Launches:
    """What watch() saw: `first_phase`, (name, types) -> the phase of its first launch
    ("launched", or "recorded" inside a stand-in capture), in order; `phase`, the current one."""

    def __init__(self):
        self.first_phase, self.phase = {}, "launched"

    def see(self, name, args):
        self.first_phase.setdefault((name, tuple(type_name(a) for a in args)), self.phase)

    @property
    def unlisted(self):
        """The launches whose types SIGNATURES lacks, in the order first seen."""
        return [k for k in self.first_phase if not listed(*k)]

    @property
    def first_launched_while_recorded(self):
        return sorted(k for k, phase in self.first_phase.items() if phase == "recorded")


def watch(monkeypatch):
    """Record the types of every kernel launch of the CUDA backend, and whether a stand-in
    recording (graph_standin.Recording's first replay: what a capture records) made it."""
    import graph_standin
    from fastnn.backend.cuda.context import CUDAContext
    from fastnn.backend.cuda.profile import kernel_name
    launches = Launches()
    launch = CUDAContext.launch_grid

    def launch_grid(self, kernel, grid, block, *args):
        launches.see(kernel_name(kernel), args)
        return launch(self, kernel, grid, block, *args)

    replay = graph_standin.Recording.replay

    def recorded_replay(recording):
        if recording.replays:
            return replay(recording)
        launches.phase = "recorded"
        try:
            return replay(recording)
        finally:
            launches.phase = "launched"
    monkeypatch.setattr(CUDAContext, "launch_grid", launch_grid)
    monkeypatch.setattr(graph_standin.Recording, "replay", recorded_replay)
    return launches


def numba_types(sig, float_type):
    """A signature as the Numba types a GPU compiles it for (float_type standing in for F)."""
    import numba
    from numba.core import types
    out = []
    for t in concrete(sig, float_type):
        if "[" in t:
            dtype, rest = t.split("[")
            dims, _, layout = rest.rstrip("]").partition(",")
            out.append(types.Array(numba.from_dtype(np.dtype(dtype)), int(dims[:-1]),
                                   layout or "C"))
        else:
            out.append(types.boolean if t == "bool" else numba.from_dtype(np.dtype(t)))
    return tuple(out)


def python_function(kernels, name, float_type):
    """The Python function of kernel `name` in fastnn.backend.cuda.kernels (a kernel compiled
    per element type is made by its `<name>_kernel` factory)."""
    factory = getattr(kernels, f"{name}_kernel", None)
    kernel = getattr(kernels, name) if factory is None else factory(np.dtype(float_type))
    return kernel.py_func

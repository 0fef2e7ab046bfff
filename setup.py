"""Build the Cython kernels in csrc/ into extension modules inside the fastnn package.

csrc/NAME.pyx becomes fastnn._cpu_NAME. OpenMP (-fopenmp) is used when the compiler accepts it;
otherwise the kernels build serial (Cython's prange then runs as a plain loop). On x86-64 with
GCC or Clang the kernels of MULTI_ISA are built twice more, for AVX2+FMA and for AVX-512, as
fastnn._cpu_NAME_avx2 / _avx512; fastnn/backend/_native.py imports the one the CPU runs.
"""
import glob
import os
import platform
import runpy
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _openmp_flags(compiler):
    """(compile flags, link flags) for OpenMP, or ([], []) if a test program does not build."""
    if os.environ.get("FASTNN_NO_OPENMP"):
        return [], []
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "omp_check.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, os.path.join(tmp, "omp_check"),
                                     extra_postargs=["-fopenmp"])
        except Exception:  # noqa: BLE001 - any failure means: build without OpenMP
            print("fastnn: the compiler does not support OpenMP; building serial kernels",
                  file=sys.stderr)
            return [], []
    return ["-fopenmp"], ["-fopenmp"]


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # the variants triple the C to compile: use every core
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":  # conv_direct.c needs GCC or Clang
            self.extensions = [e for e in self.extensions if e.name != "fastnn._cpu_conv"]
        compile_flags, link_flags = _openmp_flags(self.compiler)
        # -fno-math-errno: sqrt need not set errno, so the compiler can vectorise it (the
        # optimizer kernels); nothing in fastnn reads errno
        optimise = [] if self.compiler.compiler_type == "msvc" else ["-O3", "-fno-math-errno"]
        for ext in self.extensions:
            ext.extra_compile_args += optimise + compile_flags
            ext.extra_link_args += link_flags
        super().build_extensions()


# C sources compiled into a module beside its .pyx (the direct convolution's micro-kernels)
C_SOURCES = {"conv": ["csrc/conv_direct.c"]}

# The kernels built once per instruction set. Not conv (its C kernels carry every variant and
# choose at run time) nor threads (the OpenMP team's settings: one module for all). Measured
# with -march=native against the baseline: the Adam update and bias_add 2x faster, max pooling
# 6%. -ffp-contract=off: no multiply-add is fused that the baseline computes in two roundings,
# so every variant's results are the baseline's bit for bit.
MULTI_ISA = ("elementwise", "im2col", "loss", "optim", "pool")
# -m<feature> for each feature the loader checks the CPU for (fastnn/_isa_features.py)
ISA_FLAGS = {isa: ["-m" + f for f in features] for isa, features in
             runpy.run_path(os.path.join("fastnn", "_isa_features.py"))["FEATURES"].items()}
HAVE_VARIANTS = platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32"


def _extension(module, source, flags=()):
    name = os.path.splitext(os.path.basename(source))[0]
    return Extension(
        "fastnn." + module, [source] + C_SOURCES.get(name, []),
        include_dirs=[np.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=list(flags))


def _variant_source(name, isa):
    """csrc/NAME.pyx copied to build/isa/_cpu_NAME_ISA.pyx: Cython names a module after its
    file, so each variant needs its own copy."""
    path = os.path.join("build", "isa", f"_cpu_{name}_{isa}.pyx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.path.join("csrc", f"{name}.pyx")) as f:
        text = f.read()
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)
    return path


extensions = []
for path in sorted(glob.glob("csrc/*.pyx")):  # csrc/common.pxd is cimported by them all
    name = os.path.splitext(os.path.basename(path))[0]
    extensions.append(_extension(f"_cpu_{name}", path))
    if HAVE_VARIANTS and name in MULTI_ISA:
        for isa, flags in ISA_FLAGS.items():
            extensions.append(_extension(f"_cpu_{name}_{isa}", _variant_source(name, isa),
                                         flags + ["-ffp-contract=off"]))

setup(
    ext_modules=cythonize(extensions, include_path=["csrc"], nthreads=os.cpu_count() or 1,
                          compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildExt},
)

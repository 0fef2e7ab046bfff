"""Build the Cython kernels in csrc/ into extension modules inside the fastnn package.

csrc/NAME.pyx becomes fastnn._cpu_NAME. OpenMP (-fopenmp) is used when the compiler accepts it;
otherwise the kernels build serial (Cython's prange then runs as a plain loop).
"""
import glob
import os
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
    def build_extensions(self):
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

extensions = [
    Extension(
        "fastnn._cpu_" + os.path.splitext(os.path.basename(path))[0],
        [path] + C_SOURCES.get(os.path.splitext(os.path.basename(path))[0], []),
        include_dirs=[np.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob.glob("csrc/*.pyx"))  # csrc/common.pxd is cimported by them all
]

setup(
    ext_modules=cythonize(extensions, include_path=["csrc"],
                          compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildExt},
)

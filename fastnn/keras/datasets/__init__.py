"""keras.datasets: mnist.load_data(), from fastnn's verified, cached loader."""
from fastnn.keras.datasets import mnist

__all__ = ["mnist"]

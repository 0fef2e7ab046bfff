"""keras.datasets.mnist.load_data(), from fastnn's MNIST loader (found in data_dir, else
$FASTNN_DATA, else ~/.cache/fastnn; checksums verified; fetched when missing)."""
import numpy as np

from fastnn.datasets import load_mnist


def load_data(data_dir=None):
    """-> (x_train, y_train), (x_test, y_test) as Keras gives them: uint8 images (60000, 28, 28)
    and (10000, 28, 28), uint8 labels (60000,) and (10000,)."""
    (x_train, y_train), (x_test, y_test) = load_mnist(data_dir, normalize=False, flatten=False)
    return ((x_train.reshape(-1, 28, 28), y_train.astype(np.uint8)),
            (x_test.reshape(-1, 28, 28), y_test.astype(np.uint8)))


__all__ = ["load_data"]

"""Pictures of a training run, saved as PNG (matplotlib: pip install "fastnn[plot]").

- learning_curves(history, path): loss and accuracy per epoch, train vs validation
- conv_filters(layer_or_weights, path): a grid of a convolution layer's filters (the first
  input channel of each), as grey images
"""
import numpy as np


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: works without a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("fastnn.plots needs matplotlib: pip install 'fastnn[plot]'") from None
    return plt


def learning_curves(history, path, title=None):
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    epochs = h["epoch"]
    panels = [k for k in ("loss", "accuracy") if k in h]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, key in zip(axes[0], panels):
        ax.plot(epochs, h[key], "o-", label="train")
        if f"val_{key}" in h:
            ax.plot(epochs, h[f"val_{key}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def conv_filters(layer_or_weights, path, columns=10):
    plt = _pyplot()
    W = getattr(layer_or_weights, "params", {}).get("W", layer_or_weights)
    W = np.asarray(W)
    if W.ndim != 4:
        raise ValueError(f"conv_filters: expected conv weights (F, C, KH, KW), got {W.shape}")
    f = W.shape[0]
    rows = -(-f // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 0.9), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < f:
            ax.imshow(W[i, 0], cmap="gray_r", interpolation="nearest")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

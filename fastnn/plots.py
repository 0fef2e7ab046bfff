"""Pictures of a training run, saved as PNG (matplotlib: pip install "fastnn[plot]").

- learning_curves(history, path, val_label="validation"): loss and accuracy per epoch,
  train vs the val_* curves (val_label="test" when they were computed on the test set)
- conv_filters(layer_or_weights, path, title=None): a grid of a convolution layer's filters
  (the first input channel of each), as grey images, under a title
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


def learning_curves(history, path, title=None, val_label="validation"):
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    epochs = h["epoch"]
    panels = [k for k in ("loss", "accuracy") if k in h]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, key in zip(axes[0], panels):
        ax.plot(epochs, h[key], "o-", label="train")
        if f"val_{key}" in h:
            ax.plot(epochs, h[f"val_{key}"], "s-", label=val_label)
        ax.set_xlabel("epoch")
        # whole epochs only, even for one (the default wants two integers in view, and
        # otherwise falls back to ticks like 0.96, 0.98)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def conv_filters(layer_or_weights, path, columns=10, title=None):
    """title: by default what the grid shows, e.g. "conv1: 30 filters 5x5 (input channel 0)"."""
    plt = _pyplot()
    W = getattr(layer_or_weights, "params", {}).get("W", layer_or_weights)
    W = np.asarray(W)
    if W.ndim != 4:
        raise ValueError(f"conv_filters: expected conv weights (F, C, KH, KW), got {W.shape}")
    f, c, kh, kw = W.shape
    if title is None:
        name = getattr(layer_or_weights, "name", None)
        title = (f"{name + ': ' if name else ''}{f} filters {kh}x{kw}"
                 + (f" (input channel 0 of {c})" if c > 1 else ""))
    rows = -(-f // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 0.9 + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < f:
            ax.imshow(W[i, 0], cmap="gray_r", interpolation="nearest")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

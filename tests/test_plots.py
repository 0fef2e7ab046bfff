"""The pictures of a run (fastnn.plots): what they show, read back from the figures (the
`figures` fixture of conftest.py)."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")
from fastnn import plots  # noqa: E402


def visible_ticks(ax):
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_learning_curves_of_one_epoch_have_whole_epoch_ticks(figures, tmp_path):
    history = {"epoch": [1], "loss": [0.5], "accuracy": [0.9], "val_loss": [0.4],
               "val_accuracy": [0.92]}
    plots.learning_curves(history, tmp_path / "c.png")
    for ax in figures[0].axes:
        assert visible_ticks(ax) == [1.0]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation"]
    long = {"epoch": list(range(1, 8)), "loss": list(np.linspace(1, 0.1, 7))}
    plots.learning_curves(long, tmp_path / "d.png")
    ticks = visible_ticks(figures[1].axes[0])
    assert len(ticks) >= 2 and all(t == int(t) for t in ticks)


def test_curves_on_the_test_set_are_labelled_test(figures, tmp_path):
    history = {"epoch": [1, 2], "loss": [0.5, 0.3], "val_loss": [0.4, 0.35]}
    plots.learning_curves(history, tmp_path / "c.png", val_label="test")
    labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert labels == ["train", "test"]


def test_the_filter_picture_has_a_title(figures, tmp_path):
    from fastnn.layers import Conv2D
    conv = Conv2D(3, 12, 5, name="conv1")
    plots.conv_filters(conv, tmp_path / "f.png")
    assert figures[0]._suptitle.get_text() == "conv1: 12 filters 5x5 (input channel 0 of 3)"
    plots.conv_filters(conv.params["W"][:, :1], tmp_path / "g.png", title="after 3 epochs")
    assert figures[1]._suptitle.get_text() == "after 3 epochs"

"""Hypothesis strategies for random, valid window configurations (see the issue's ranges):
batch 1..4, channels 1..5, sizes 1..12, kernel 1..5, stride 1..3, padding 0..2, non-square."""
from hypothesis import assume
from hypothesis import strategies as st

from fastnn._checks import conv_output_size


@st.composite
def window_configs(draw, max_pool=False):
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if max_pool:  # padding at most half the kernel
        ph, pw = draw(st.integers(0, min(2, kh // 2))), draw(st.integers(0, min(2, kw // 2)))
    else:
        ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    assume(kh <= h + 2 * ph and kw <= w + 2 * pw)
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    return dict(shape=(n, c, h, w), kernel=(kh, kw), stride=(sh, sw), pad=(ph, pw),
                out=(oh, ow))


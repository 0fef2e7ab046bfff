"""im2col / col2im, the GEMM output <-> NCHW layouts, and minibatch rows cut from a dataset."""
from fastnn.backend.cuda._numba import SIMULATOR
from fastnn.backend.cuda.kernels._common import cuda, per_dtype, unravel4, window_at


@cuda.jit(cache=True)
def im2col(x, cols, kh, kw, sh, sw, ph, pw, oh, ow, zero):
    """A thread per element of one image's (OH*OW, C*KH*KW) block of cols (grid x), copying
    that element for every image the grid's y walks: the index math (five divisions) is done
    once per thread, not once per element (at batch 1000 a thread per element took 0.27 ms
    for SimpleConvNet, several times what the memory traffic needs)."""
    k = cols.shape[1]
    positions = oh * ow
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if j >= positions * k:
        return
    r, col = j // k, j % k
    oy, ox = r // ow, r % ow
    c, kk = col // (kh * kw), col % (kh * kw)
    iy = oy * sh - ph + kk // kw
    ix = ox * sw - pw + kk % kw
    inside = 0 <= iy < x.shape[2] and 0 <= ix < x.shape[3]
    for n in range(cuda.blockIdx.y, x.shape[0], cuda.gridDim.y):
        cols[n * positions + r, col] = x[n, c, iy, ix] if inside else zero


@cuda.jit(cache=True)
def col2im(cols, gate, gated, x, kh, kw, sh, sw, ph, pw, oh, ow, zero):
    """A thread per pixel of x, summing what its windows' columns hold. gated: x is the data
    gradient of a convolution whose input `gate` was a ReLU's output, and the ReLU's backward
    is taken as it is written (0 where gate <= 0, without reading cols for that pixel)."""
    i = cuda.grid(1)
    if i >= x.size:
        return
    n, c, iy, ix = unravel4(i, x.shape)
    acc = zero
    if gated and not gate[n, c, iy, ix] > zero:
        x[n, c, iy, ix] = zero
        return
    for ky in range(kh):
        oy = window_at(iy, ky, sh, ph, oh)
        if oy < 0:
            continue
        for kx in range(kw):
            ox = window_at(ix, kx, sw, pw, ow)
            if ox >= 0:
                acc += cols[(n * oh + oy) * ow + ox, (c * kh + ky) * kw + kx]
    x[n, c, iy, ix] = acc


# The GEMM output <-> NCHW layouts transpose each image's (OH*OW, F) block of rows into its
# (F, OH*OW) plane and back. A thread per element either reads or writes with a stride of F
# elements, a memory sector per element (0.21-0.27 ms each for SimpleConvNet at batch 1000), so
# a block moves a SQ x SQ square through shared memory: read along one layout, written along
# the other, both in order. Blocks are SQ x SQ_ROWS threads; grid x runs over (image, square of
# positions), y over squares of channels. The simulator gets small squares (each syncthreads
# there costs milliseconds per thread).
SQ, SQ_ROWS = (4, 4) if SIMULATOR else (32, 8)
SQ_PAD = SQ + 1  # a shared square's row length: no bank conflicts when read by column


def square_grid(n, f, positions):
    """(grid, block) of the layout kernels below for n images of f channels x positions."""
    return (n * -(-positions // SQ), -(-f // SQ)), (SQ, SQ_ROWS)


def _make_rows_to_nchw(dtype):
    @cuda.jit
    def rows_to_nchw(rows, b, has_bias, relu, y, zero):
        """rows (N*P, F) -> y (N, F, OH, OW) with b[f] added and, with relu, max(v, 0) taken
        as v is written (the bias and a following ReLU fused in)."""
        tile = cuda.shared.array((SQ, SQ_PAD), dtype)
        n, p0, f0, f_all, p_all = _square(y)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for j in range(ty, SQ, SQ_ROWS):  # read: positions p0+j, channels in order
            if p0 + j < p_all and f0 + tx < f_all:
                tile[j, tx] = rows[n * p_all + p0 + j, f0 + tx]
        cuda.syncthreads()
        p = p0 + tx  # write: channels f0+j, positions in order
        oy, ox = p // y.shape[3], p % y.shape[3]
        for j in range(ty, SQ, SQ_ROWS):
            f = f0 + j
            if f < f_all and p < p_all:
                v = tile[tx, j]
                if has_bias:
                    v += b[f]
                if relu and v < zero:
                    v = zero
                y[n, f, oy, ox] = v
    return rows_to_nchw


rows_to_nchw_kernel = per_dtype(_make_rows_to_nchw)


def _make_nchw_to_rows(dtype):
    @cuda.jit
    def nchw_to_rows(y, rows):
        """y (N, F, OH, OW) -> rows (N*P, F)."""
        tile = cuda.shared.array((SQ, SQ_PAD), dtype)
        n, p0, f0, f_all, p_all = _square(y)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        p = p0 + tx  # read: channels f0+j, positions in order
        oy, ox = p // y.shape[3], p % y.shape[3]
        for j in range(ty, SQ, SQ_ROWS):
            if f0 + j < f_all and p < p_all:
                tile[j, tx] = y[n, f0 + j, oy, ox]
        cuda.syncthreads()
        for j in range(ty, SQ, SQ_ROWS):  # write: positions p0+j, channels in order
            if p0 + j < p_all and f0 + tx < f_all:
                rows[n * p_all + p0 + j, f0 + tx] = tile[tx, j]
    return nchw_to_rows


nchw_to_rows_kernel = per_dtype(_make_nchw_to_rows)


@cuda.jit(device=True, inline=True)
def _square(y):
    """The block's square: its image, first position and first channel, and y's channel and
    position counts."""
    p_all = y.shape[2] * y.shape[3]
    squares = (p_all + SQ - 1) // SQ
    n = cuda.blockIdx.x // squares
    return n, (cuda.blockIdx.x - n * squares) * SQ, cuda.blockIdx.y * SQ, y.shape[1], p_all


@cuda.jit(cache=True)
def take_rows(src, idx, dst, row):
    """dst[r, :] = src[idx[r], :] on flat views, row elements per row: one thread each."""
    i = cuda.grid(1)
    if i < dst.size:
        r = i // row
        dst[i] = src[idx[r] * row + i % row]

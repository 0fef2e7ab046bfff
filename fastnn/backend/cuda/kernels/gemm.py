"""GEMM: a tiled shared-memory kernel (cuBLAS through CuPy replaces it when present)."""
from fastnn.backend.cuda.kernels._common import cuda, per_dtype


TILE = 16


def _make_gemm(dtype):
    """The tiled GEMM for one element type (shared arrays need their type at compile time)."""
    @cuda.jit(cache=True)
    def gemm(a, b, out, trans_a, trans_b, accumulate, zero):
        """out = op(a) @ op(b), or out += with accumulate: one thread per output, TILE x TILE
        tiles in shared memory."""
        sa = cuda.shared.array((TILE, TILE), dtype=dtype)
        sb = cuda.shared.array((TILE, TILE), dtype=dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        acc = zero
        for t in range((k + TILE - 1) // TILE):
            kk = t * TILE + tx
            if row < m and kk < k:
                sa[ty, tx] = a[kk, row] if trans_a else a[row, kk]
            else:
                sa[ty, tx] = zero
            kk = t * TILE + ty
            if col < n and kk < k:
                sb[ty, tx] = b[col, kk] if trans_b else b[kk, col]
            else:
                sb[ty, tx] = zero
            cuda.syncthreads()
            for j in range(TILE):
                acc += sa[ty, j] * sb[j, tx]
            cuda.syncthreads()
        if row < m and col < n:
            out[row, col] = out[row, col] + acc if accumulate else acc
    return gemm


gemm_kernel = per_dtype(_make_gemm)

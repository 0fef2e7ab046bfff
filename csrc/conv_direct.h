/* Direct convolution kernels: one instantiation per (instruction set, float type).
 *
 * csrc/conv_direct.c includes this file once for each combination, after defining
 *   T      the float type (float or double)
 *   VL     lanes per vector (512, 256 or 128 bits of T)
 *   NAME   NAME(x) pastes the variant's suffix onto x (x_f32_avx512, ...)
 *   FWD_TILES, BWW_TILES  the register tiles this instruction set affords (see below; the
 *          backward-weights tiles are in conv_direct_bww.h)
 *   XPOSE(b), STORE_FIRST(p, v, n), LOAD_FIRST(p, n), SUM_ROWS(s, b, n)  optional
 *          (conv_simd.h): an in-register VL x VL transpose, a store and a load of a vector's
 *          first n lanes, and float64 row sums
 * inside a `#pragma GCC target` region, so the vector types compile to that width.
 *
 * The layouts (the public API stays NCHW; these live only inside one call):
 * - an image padded into NHWC: xp[(Hp) rows][(Wp) columns][C channels], zero borders.
 *   For a fixed window row ky, the KW*C inputs of a window are one contiguous run:
 *   xp[(oy*SH + ky)*Wp + ox*SW][0 .. KW*C). That makes the convolution, per window row, a
 *   product of runs: out[pixel][f] += sum_j run(pixel)[j] * w[ky][j][f].
 * - weights packed as w[ky][j = kx*C + c][Fp], output channels innermost, padded to Fp, a
 *   multiple of VL (zeros beyond F).
 * - a register tile holds P output pixels x V vectors of VL output channels (forward), or
 *   RB window rows x TJ run positions x V vectors (backward-weights). Inputs are broadcast
 *   from memory, one per FMA group; weights (or gradients) are loaded V vectors at a time.
 */

typedef T NAME(vec) __attribute__((vector_size(VL * sizeof(T))));
/* the same vector type, read from addresses aligned only to T */
typedef T NAME(uvec) __attribute__((vector_size(VL * sizeof(T)), aligned(sizeof(T))));

#define VEC NAME(vec)
#ifdef XPOSE  /* float32 only: the lanes' bits as int32, for the ReLU's select */
typedef int NAME(ivec) __attribute__((vector_size(VL * sizeof(T))));
#define IVEC NAME(ivec)
#endif
/* the tile loops run a constant number of times: unroll them all, so that the accumulators
 * are registers (GCC peels at most 16 iterations by itself) */
#define UNROLL _Pragma("GCC unroll 32")
#define LOADV(p) (*(const NAME(uvec) *)(p))
#define STOREV(p, v) (*(NAME(uvec) *)(p) = (v))

/* ---- layout conversions ------------------------------------------------------------------ */

/* One NCHW image x (C, H, W) -> xp (Hp, Wp, Cs), the image at row PT, column PL (>= 0):
 * padding rows and columns and the channels [C, Cs) are zero. sums (C doubles, or NULL): each
 * plane's sum, added in pixel order in float64 (the bias gradient, bit for bit the plain loop).
 * With XPOSE, blocks of VL channels x VL pixels go through an in-register transpose. */
static void NAME(pad_nhwc)(const T *restrict x, T *restrict xp, ptrdiff_t C, ptrdiff_t H,
                           ptrdiff_t W, ptrdiff_t Hp, ptrdiff_t Wp, ptrdiff_t Cs,
                           ptrdiff_t PT, ptrdiff_t PL, double *restrict sums)
{
    if (sums)
        for (ptrdiff_t c = 0; c < C; c++)
            sums[c] = 0;
    ptrdiff_t c_vec = 0;  /* channels [0, c_vec) go in vector blocks */
#ifdef XPOSE
    /* a last, partial block too when the channel stride leaves room for its zero lanes */
    c_vec = Cs >= (C + VL - 1) / VL * VL ? (C + VL - 1) / VL * VL : C / VL * VL;
#endif
    /* zero what the copy below leaves: the padding rows, the padding columns of the image's
     * rows, and the channels [max(C, c_vec), Cs) of its pixels (memset of the whole buffer
     * was 4% of a SimpleConvNet step) */
    size_t row = (size_t)(Wp * Cs) * sizeof(T);
    memset(xp, 0, (size_t)PT * row);
    memset(xp + (PT + H) * Wp * Cs, 0, (size_t)(Hp - PT - H) * row);
    ptrdiff_t c_end = C > c_vec ? C : c_vec;
    for (ptrdiff_t iy = 0; iy < H; iy++) {
        T *r = xp + (iy + PT) * Wp * Cs;
        memset(r, 0, (size_t)(PL * Cs) * sizeof(T));
        memset(r + (PL + W) * Cs, 0, (size_t)((Wp - PL - W) * Cs) * sizeof(T));
        if (c_end < Cs)
            for (ptrdiff_t ix = 0; ix < W; ix++)
                for (ptrdiff_t c = c_end; c < Cs; c++)
                    r[(PL + ix) * Cs + c] = 0;
    }
    for (ptrdiff_t iy = 0; iy < H; iy++) {
        T *dst = xp + ((iy + PT) * Wp + PL) * Cs;
#ifdef XPOSE
        for (ptrdiff_t c0 = 0; c0 < c_vec; c0 += VL) {
            const T *src = x + (c0 * H + iy) * W;
            int nc = C - c0 < VL ? (int)(C - c0) : VL;  /* real channels in the block */
            double part[VL], *s = sums ? (nc == VL ? sums + c0 : part) : NULL;
            if (s == part)
                for (int i = 0; i < VL; i++)
                    part[i] = i < nc ? sums[c0 + i] : 0;
            for (ptrdiff_t ix = 0; ix < W; ix += VL) {
                int nw = W - ix < VL ? (int)(W - ix) : VL;  /* real pixels in the block */
                VEC b[VL];
                for (int i = 0; i < VL; i++)
                    b[i] = i >= nc ? (VEC){0} : nw == VL ? LOADV(src + i * H * W + ix)
                                                          : (VEC)LOAD_FIRST(src + i * H * W + ix, nw);
                XPOSE(b);  /* b[j]: channels c0 .. c0+VL-1 of pixel ix + j */
                for (int j = 0; j < nw; j++)
                    STOREV(dst + (ix + j) * Cs + c0, b[j]);
                if (s)
                    SUM_ROWS(s, b, nw);
            }
            if (s == part)
                for (int i = 0; i < nc; i++)
                    sums[c0 + i] = part[i];
        }
#endif
        for (ptrdiff_t c = c_vec; c < C; c++) {  /* the rest, one channel at a time */
            const T *src = x + (c * H + iy) * W;
            for (ptrdiff_t ix = 0; ix < W; ix++)
                dst[ix * Cs + c] = src[ix];
            if (sums)
                for (ptrdiff_t ix = 0; ix < W; ix++)
                    sums[c] += src[ix];
        }
    }
}

/* ---- the forward tile: P output pixels of one row x V channel vectors --------------------- */

/* acc[p][v] = sum over ky < KH, j < KWC of x[ky*rstep + p*pstep + j] * w[(ky*KWC + j)*Fp + v*VL]
 * stored at out[p*ostride + v*VL]. P and V are constants after inlining: the loops unroll and
 * acc lives in registers. (With KH = 1 this is a GEMM tile: Winograd's products use it.) */
static inline __attribute__((always_inline)) void NAME(fwd_tile)(
    const int P, const int V, const T *restrict x, ptrdiff_t pstep, ptrdiff_t rstep,
    ptrdiff_t KH, ptrdiff_t KWC, const T *restrict w, ptrdiff_t Fp, T *restrict out,
    ptrdiff_t ostride)
{
    VEC acc[P_MAX][V_MAX];
    UNROLL
    for (int p = 0; p < P; p++)
        UNROLL
        for (int v = 0; v < V; v++)
            acc[p][v] = (VEC){0};
    for (ptrdiff_t ky = 0; ky < KH; ky++) {
        const T *xr = x + ky * rstep;
        const T *wr = w + ky * KWC * Fp;
        for (ptrdiff_t j = 0; j < KWC; j++) {
            VEC wv[V_MAX];
            UNROLL
            for (int v = 0; v < V; v++)
                wv[v] = LOADV(wr + j * Fp + v * VL);
            UNROLL
            for (int p = 0; p < P; p++) {
                T xs = xr[p * pstep + j];  /* a scalar operand is broadcast: no zero-add */
                UNROLL
                for (int v = 0; v < V; v++)
                    acc[p][v] += xs * wv[v];
            }
        }
    }
    UNROLL
    for (int p = 0; p < P; p++)
        UNROLL
        for (int v = 0; v < V; v++)
            STOREV(out + p * ostride + v * VL, acc[p][v]);
}

typedef void (*NAME(fwd_fn))(const T *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, const T *,
                              ptrdiff_t, T *, ptrdiff_t);

#define FWD_TILE(P, V)                                                                        \
    static void NAME(fwd_##P##_##V)(const T *x, ptrdiff_t ps, ptrdiff_t rs, ptrdiff_t KH,     \
                                    ptrdiff_t KWC, const T *w, ptrdiff_t Fp, T *out,         \
                                    ptrdiff_t os)                                             \
    {                                                                                         \
        NAME(fwd_tile)(P, V, x, ps, rs, KH, KWC, w, Fp, out, os);                             \
    }
FWD_TILES
#undef FWD_TILE

/* fwd_table[V-1][P-1]: the tile kernels, NULL where P x V does not fit the registers */
static NAME(fwd_fn) NAME(fwd_table)[V_MAX][P_MAX];

static void NAME(fwd_table_init)(void)
{
#define FWD_TILE(P, V) NAME(fwd_table)[(V) - 1][(P) - 1] = NAME(fwd_##P##_##V);
    FWD_TILES
#undef FWD_TILE
}

/* The largest P with a V-vector kernel. */
static int NAME(fwd_pmax)(int V)
{
    int p = 0;
    while (p < P_MAX && NAME(fwd_table)[V - 1][p])
        p++;
    return p;
}

/* A finished forward tile out[p][v*VL + l] (P pixels of a row, V*VL channels from f0) ->
 * y[f*plane + p] for the channels f0 <= f < fend, + bias, then max(., 0) with relu (NaN
 * passes through: s < 0 ? 0 : s). */
static inline void NAME(store_tile)(const T *restrict out, int P, int V, ptrdiff_t f0,
                                    ptrdiff_t fend, const T *restrict bias, int relu,
                                    T *restrict y, ptrdiff_t plane)
{
#ifdef XPOSE
    for (int v = 0; v < V && f0 + v * VL < fend; v++)
        for (int p0 = 0; p0 < P; p0 += VL) {
            int n = P - p0 < VL ? P - p0 : VL;
            VEC b[VL];
            for (int i = 0; i < VL; i++)
                b[i] = i < n ? LOADV(out + ((p0 + i) * V + v) * VL) : (VEC){0};
            XPOSE(b);  /* b[l]: channel f0 + v*VL + l of pixels p0 .. p0+n-1 */
            for (int l = 0; l < VL; l++) {
                ptrdiff_t f = f0 + v * VL + l;
                if (f >= fend)
                    break;
                VEC s = b[l] + (bias ? bias[f] : (T)0);
                if (relu)
                    s = (VEC)((IVEC)s & ~(IVEC)(s < (VEC){0}));
                STORE_FIRST(y + f * plane + p0, s, n);
            }
        }
#else
    for (ptrdiff_t f = f0; f < fend; f++) {
        T b = bias ? bias[f] : (T)0;
        T *yr = y + f * plane;
        const T *o = out + (f - f0);
        if (relu)
            for (int p = 0; p < P; p++) {
                T s = o[p * V * VL] + b;
                yr[p] = s < 0 ? (T)0 : s;
            }
        else
            for (int p = 0; p < P; p++)
                yr[p] = o[p * V * VL] + b;
    }
#endif
}

/* One image, one convolution: xp (Hp, Wp, C) padded NHWC -> y (F, OH, OW) NCHW, + bias,
 * then max(., 0) with relu. w: packed (KH, KW*C, Fp). Tiles walk each output row. */
static void NAME(conv_image)(const T *restrict xp, ptrdiff_t Wp, ptrdiff_t C, ptrdiff_t KH,
                             ptrdiff_t KW, ptrdiff_t SH, ptrdiff_t SW, const T *restrict w,
                             ptrdiff_t F, ptrdiff_t Fp, const T *restrict bias, int relu,
                             T *restrict y, ptrdiff_t OH, ptrdiff_t OW, int vmax)
{
    T out[P_MAX * V_MAX * VL] __attribute__((aligned(64)));
    ptrdiff_t KWC = KW * C, pstep = SW * C, rstep = Wp * C;
    for (ptrdiff_t f0 = 0; f0 < Fp; f0 += vmax * VL) {
        int V = (int)((Fp - f0) / VL < vmax ? (Fp - f0) / VL : vmax);
        int pmax = NAME(fwd_pmax)(V);
        ptrdiff_t ntiles = (OW + pmax - 1) / pmax;   /* near-equal tiles along a row */
        ptrdiff_t fend = F < f0 + V * VL ? F : f0 + V * VL;
        for (ptrdiff_t oy = 0; oy < OH; oy++) {
            for (ptrdiff_t t = 0; t < ntiles; t++) {
                ptrdiff_t ox0 = OW * t / ntiles, ox1 = OW * (t + 1) / ntiles;
                int P = (int)(ox1 - ox0);
                NAME(fwd_table)[V - 1][P - 1](xp + (oy * SH * Wp + ox0 * SW) * C, pstep, rstep,
                                              KH, KWC, w + f0, Fp, out, V * VL);
                NAME(store_tile)(out, P, V, f0, fend, bias, relu, y + oy * OW + ox0, OH * OW);
            }
        }
    }
}

/* ---- weight packing ----------------------------------------------------------------------- */

/* W (F, C, KH, KW) -> wp (KH, KW*C, Fp) for the forward; with flip, the backward-data
 * weights: wp (KH, KW*Cs, Cp)[ky][kx*Cs + f][c] = W[f, c, KH-1-ky, KW-1-kx] (rows f >= F
 * and lanes c >= C zero). */
static void NAME(pack_forward)(const T *restrict W, ptrdiff_t F, ptrdiff_t C, ptrdiff_t KH,
                               ptrdiff_t KW, ptrdiff_t Fp, T *restrict wp)
{
    memset(wp, 0, (size_t)(KH * KW * C * Fp) * sizeof(T));
    for (ptrdiff_t f = 0; f < F; f++)
        for (ptrdiff_t c = 0; c < C; c++)
            for (ptrdiff_t ky = 0; ky < KH; ky++)
                for (ptrdiff_t kx = 0; kx < KW; kx++)
                    wp[(ky * KW * C + kx * C + c) * Fp + f] = W[((f * C + c) * KH + ky) * KW + kx];
}

static void NAME(pack_backward_data)(const T *restrict W, ptrdiff_t F, ptrdiff_t C,
                                     ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t Fs, ptrdiff_t Cp,
                                     T *restrict wp)
{
    memset(wp, 0, (size_t)(KH * KW * Fs * Cp) * sizeof(T));
    for (ptrdiff_t f = 0; f < F; f++)
        for (ptrdiff_t c = 0; c < C; c++)
            for (ptrdiff_t ky = 0; ky < KH; ky++)
                for (ptrdiff_t kx = 0; kx < KW; kx++)
                    wp[(ky * KW * Fs + kx * Fs + f) * Cp + c] =
                        W[((f * C + c) * KH + (KH - 1 - ky)) * KW + (KW - 1 - kx)];
}

/* VEC, IVEC, LOADV, STOREV and UNROLL stay defined for conv_winograd.h, which undefines them */

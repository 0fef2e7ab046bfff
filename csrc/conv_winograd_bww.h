/* Winograd F(2x2, 3x3)'s weight gradient: one instantiation per (instruction set, float type),
 * included by csrc/conv_direct.c after conv_winograd.h (its transforms) and conv_direct_bww.h
 * (the tile kernels its GEMMs run on), with the same macros.
 */

/* ---- the weight gradient ------------------------------------------------------------------
 * Y = A^T (U . V) A is linear in U, so dL/dU = sum over tiles of (A dY A^T) . V, and the
 * weight gradient is dW = G^T (dL/dU) G: 16 GEMMs over the tiles, dU[xi] (C x F) += V[xi]^T
 * (C x tiles) @ M[xi] (tiles x F), M = A dY A^T the 2x2 gradient block of each tile spread to
 * 4x4. The weight-gradient tile kernel computes them (conv_direct_bww.h) over groups of
 * WINO_GROUP tiles, summed per thread. */
#define WINO_GROUP 64

/* M = A g A^T for a 2x2 block g (rows at p and p + rs, columns cs apart): 16 results at m + xi*ms.
 * A = [[1, 0], [1, 1], [1, -1], [0, -1]]. */
static inline void NAME(wino_grad)(const T *p, ptrdiff_t rs, ptrdiff_t cs, T *m, ptrdiff_t ms)
{
    VEC g00 = LOADV(p), g01 = LOADV(p + cs), g10 = LOADV(p + rs), g11 = LOADV(p + rs + cs);
    VEC r[4][2] = {{g00, g01}, {g00 + g10, g01 + g11}, {g00 - g10, g01 - g11}, {-g10, -g11}};
    for (int i = 0; i < 4; i++) {
        STOREV(m + (i * 4 + 0) * ms, r[i][0]);
        STOREV(m + (i * 4 + 1) * ms, r[i][0] + r[i][1]);
        STOREV(m + (i * 4 + 2) * ms, r[i][0] - r[i][1]);
        STOREV(m + (i * 4 + 3) * ms, -r[i][1]);
    }
}

/* Transform one image's tiles into the group buffers from position k on; each time the group
 * fills up, du (16, C, Fp) += V[xi]^T M[xi] over it and the group starts again. Returns the
 * position after the image's last tile: a group spans images (an 8x8 output has 16 tiles,
 * and GEMMs that short spent a quarter of their time starting and storing accumulators).
 * xp: the padded input (Hw, Ww, C) as the forward's; gp: the gradient (2*TH, 2*TW, Fp), zero
 * past OH x OW; flush: run the GEMMs on the first k entries and return 0. */
static ptrdiff_t NAME(wino_bww_tiles)(const T *restrict xp, ptrdiff_t Ww, ptrdiff_t C,
                                      const T *restrict gp, ptrdiff_t Fp, ptrdiff_t TH,
                                      ptrdiff_t TW, T *restrict du, T *restrict vbuf,
                                      T *restrict mbuf, ptrdiff_t k, int flush, int vmax)
{
    ptrdiff_t NT = flush ? 0 : TH * TW, c_vec = C / VL * VL;
    for (ptrdiff_t t = 0; t <= NT; t++) {
        if (k == WINO_GROUP || (t == NT && flush && k > 0)) {
            for (int xi = 0; xi < 16; xi++)
                for (ptrdiff_t f0 = 0; f0 < Fp; f0 += vmax * VL) {
                    int V = (int)((Fp - f0) / VL < vmax ? (Fp - f0) / VL : vmax);
                    int tjm = NAME(bww_tjmax)(1, V);
                    ptrdiff_t nc = (C + tjm - 1) / tjm;
                    for (ptrdiff_t j = 0; j < nc; j++) {
                        ptrdiff_t c0 = C * j / nc, c1 = C * (j + 1) / nc;
                        /* one "row" of k "pixels", the tiles: x = V[xi][.][c0..],
                         * g = M[xi][.][f0..] */
                        NAME(bww_table)[V - 1][0][c1 - c0 - 1](
                            vbuf + xi * WINO_GROUP * C + c0, C, 0, 1,
                            mbuf + xi * WINO_GROUP * Fp + f0, 0, Fp, 1, k,
                            du + (xi * C + c0) * Fp + f0, 0);
                    }
                }
            k = 0;
        }
        if (t == NT)
            break;
        ptrdiff_t ty = t / TW, tx = t % TW;
        const T *p = xp + (2 * ty * Ww + 2 * tx) * C;
        for (ptrdiff_t c = 0; c < c_vec; c += VL)
            WINO_INPUT(VEC, LOADV, STOREV, p + c, Ww, C, vbuf + k * C + c, WINO_GROUP * C);
        for (ptrdiff_t c = c_vec; c < C; c++)
            WINO_INPUT(T, LOAD_T, STORE_T, p + c, Ww, C, vbuf + k * C + c, WINO_GROUP * C);
        const T *q = gp + (2 * ty * 2 * TW + 2 * tx) * Fp;
        for (ptrdiff_t f = 0; f < Fp; f += VL)
            NAME(wino_grad)(q + f, 2 * TW * Fp, Fp, mbuf + k * Fp + f, WINO_GROUP * Fp);
        k++;
    }
    return k;
}

static ptrdiff_t NAME(wino_bww_per_thread)(const fastnn_conv_geom *g)
{
    ptrdiff_t Fp = (g->F + VL - 1) / VL * VL, TH = (g->OH + 1) / 2, TW = (g->OW + 1) / 2;
    return (2 * TH + 2) * (2 * TW + 2) * g->C + 4 * TH * TW * Fp + 16 * g->C * Fp
           + WINO_GROUP * 16 * (g->C + Fp);
}

/* dW (F, C, 3, 3) and db (F,) of a 3x3 stride-1 convolution by Winograd. work:
 * NAME(wino_bww_work)(g, threads) elements; part: N*F doubles (the per-image bias sums). */
static void NAME(wino_bww_run)(const T *dy, const T *x, T *dW, T *db, const fastnn_conv_geom *g,
                               T *work, double *part, int threads)
{
    ptrdiff_t N = g->N, C = g->C, F = g->F, Fp = (F + VL - 1) / VL * VL;
    ptrdiff_t TH = (g->OH + 1) / 2, TW = (g->OW + 1) / 2, Hw = 2 * TH + 2, Ww = 2 * TW + 2;
    ptrdiff_t per_thread = NAME(wino_bww_per_thread)(g), K = 16 * C * Fp;
    int nt = NAME(threads)(threads, N);
    for (int t = 0; t < nt; t++)  /* each thread's dU: after its padded input and gradient */
        memset(work + t * per_thread + Hw * Ww * C + 4 * TH * TW * Fp, 0, (size_t)K * sizeof(T));
#pragma omp parallel num_threads(nt)
    {
        /* each thread its own run of images, so that a group of tiles can span them */
        int t = NAME(tid)(), team = NAME(team_size)();
        T *xp = work + t * per_thread, *gp = xp + Hw * Ww * C;
        T *du = gp + 4 * TH * TW * Fp, *vbuf = du + K, *mbuf = vbuf + WINO_GROUP * 16 * C;
        ptrdiff_t k = 0;
        for (ptrdiff_t n = N * t / team; n < N * (t + 1) / team; n++) {
            NAME(pad_nhwc)(x + n * C * g->H * g->W, xp, C, g->H, g->W, Hw, Ww, C, g->PH, g->PW,
                           NULL);
            NAME(pad_nhwc)(dy + n * F * g->OH * g->OW, gp, F, g->OH, g->OW, 2 * TH, 2 * TW, Fp,
                           0, 0, part + n * F);
            k = NAME(wino_bww_tiles)(xp, Ww, C, gp, Fp, TH, TW, du, vbuf, mbuf, k, 0, V_DEFAULT);
        }
        NAME(wino_bww_tiles)(xp, Ww, C, gp, Fp, TH, TW, du, vbuf, mbuf, k, 1, V_DEFAULT);
    }
    /* dW[f, c] = G^T (the threads' dU summed in thread order) G, in float64 */
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    for (ptrdiff_t f = 0; f < F; f++)
        for (ptrdiff_t c = 0; c < C; c++) {
            double u[4][4], t[3][4];
            for (int xi = 0; xi < 16; xi++) {
                double s = 0;
                for (int th = 0; th < nt; th++)
                    s += work[th * per_thread + Hw * Ww * C + 4 * TH * TW * Fp + (xi * C + c) * Fp + f];
                u[xi / 4][xi % 4] = s;
            }
            for (int a = 0; a < 3; a++)  /* G^T u */
                for (int j = 0; j < 4; j++)
                    t[a][j] = G[0][a] * u[0][j] + G[1][a] * u[1][j] + G[2][a] * u[2][j]
                              + G[3][a] * u[3][j];
            for (int a = 0; a < 3; a++)  /* (G^T u) G */
                for (int b = 0; b < 3; b++)
                    dW[(f * C + c) * 9 + a * 3 + b] =
                        (T)(t[a][0] * G[0][b] + t[a][1] * G[1][b] + t[a][2] * G[2][b]
                            + t[a][3] * G[3][b]);
        }
    NAME(bias_from_partials)(part, N, F, db);
}

static ptrdiff_t NAME(wino_bww_work)(const fastnn_conv_geom *g, int threads)
{
    return NAME(threads)(threads, g->N) * NAME(wino_bww_per_thread)(g);
}

#undef LOAD_T
#undef STORE_T
#undef WINO_INPUT
#undef VEC
#undef IVEC
#undef UNROLL
#undef LOADV
#undef STOREV

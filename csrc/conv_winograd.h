/* Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions: one instantiation per (instruction set,
 * float type), included by csrc/conv_direct.c after conv_direct.h (whose layouts, tile kernels
 * and stores it uses), with the same macros.
 *
 * A 2x2 block of outputs is Y = A^T [ U (.) V ] A, with U = G g G^T the 4x4 transform of a
 * 3x3 kernel g and V = B^T d B that of the 4x4 input patch d under the block: 16 products per
 * 4 outputs where the direct sum takes 36, 2.25x fewer. Summed over input channels, each of
 * the 16 positions xi of the 4x4 transforms is a GEMM, M[xi] (tiles x F) = V[xi] (tiles x C)
 * @ U[xi] (C x F), which the forward tile kernel computes with KH = 1 (conv_direct.h).
 *
 *   B^T = | 1  0 -1  0 |     G = |  1    0    0  |     A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |         | 1/2  1/2  1/2 |           | 0  1 -1 -1 |
 *         | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |         |  0    0    1  |
 *
 * Per image and thread: the input padded into NHWC (one spare zero row and column when an
 * output side is odd), then groups of G tiles transformed into V (L1-sized) and multiplied
 * into M (the whole image's, L2-sized), then every tile row transformed back into two output
 * rows (NHWC) that store_tile writes out as NCHW with the bias and the ReLU.
 * The oracle is fastnn.naive.winograd_conv2d (the same transforms in plain loops).
 */

/* u (16) = G g G^T for a 3x3 kernel g (row-major), in float64; flip: g rotated by 180 degrees
 * (the backward-data convolution's kernel). */
static void NAME(wino_kernel)(const T *g, int flip, double u[16])
{
    double k[3][3], t[4][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            k[i][j] = flip ? g[(2 - i) * 3 + (2 - j)] : g[i * 3 + j];
    for (int j = 0; j < 3; j++) {  /* G g */
        t[0][j] = k[0][j];
        t[1][j] = (k[0][j] + k[1][j] + k[2][j]) * 0.5;
        t[2][j] = (k[0][j] - k[1][j] + k[2][j]) * 0.5;
        t[3][j] = k[2][j];
    }
    for (int i = 0; i < 4; i++) {  /* (G g) G^T */
        u[i * 4 + 0] = t[i][0];
        u[i * 4 + 1] = (t[i][0] + t[i][1] + t[i][2]) * 0.5;
        u[i * 4 + 2] = (t[i][0] - t[i][1] + t[i][2]) * 0.5;
        u[i * 4 + 3] = t[i][2];
    }
}

/* U (16, Ci, Cop): forward, U[xi][c][f] from W[f, c] (Ci = C, Cop = Fp); backward-data
 * (data = 1), U[xi][f][c] from W[f, c] flipped (Ci = Fs, the gradient's channel stride, and
 * Cop = Cp). Rows and lanes beyond the real channels are zero. */
static void NAME(wino_pack)(const T *restrict W, ptrdiff_t F, ptrdiff_t C, int data,
                            ptrdiff_t Ci, ptrdiff_t Cop, T *restrict U)
{
    memset(U, 0, (size_t)(16 * Ci * Cop) * sizeof(T));
    for (ptrdiff_t f = 0; f < F; f++)
        for (ptrdiff_t c = 0; c < C; c++) {
            double u[16];
            NAME(wino_kernel)(W + (f * C + c) * 9, data, u);
            ptrdiff_t row = data ? f : c, lane = data ? c : f;
            for (int xi = 0; xi < 16; xi++)
                U[(xi * Ci + row) * Cop + lane] = (T)u[xi];
        }
}

/* V = B^T d B on one vector (or scalar) of channels: d[i][j] at p + (i*rs + j)*cs, each of
 * the 16 results stored at v + xi*vs. */
#define WINO_INPUT(TYPE, LOAD, STORE, p, rs, cs, v, vs)                                        \
    do {                                                                                      \
        TYPE d_[4][4], t_[4][4];                                                              \
        for (int i_ = 0; i_ < 4; i_++)                                                        \
            for (int j_ = 0; j_ < 4; j_++)                                                    \
                d_[i_][j_] = LOAD((p) + (i_ * (rs) + j_) * (cs));                             \
        for (int j_ = 0; j_ < 4; j_++) {                                                      \
            t_[0][j_] = d_[0][j_] - d_[2][j_];                                                \
            t_[1][j_] = d_[1][j_] + d_[2][j_];                                                \
            t_[2][j_] = d_[2][j_] - d_[1][j_];                                                \
            t_[3][j_] = d_[1][j_] - d_[3][j_];                                                \
        }                                                                                     \
        for (int i_ = 0; i_ < 4; i_++) {                                                      \
            STORE((v) + (i_ * 4 + 0) * (vs), t_[i_][0] - t_[i_][2]);                          \
            STORE((v) + (i_ * 4 + 1) * (vs), t_[i_][1] + t_[i_][2]);                          \
            STORE((v) + (i_ * 4 + 2) * (vs), t_[i_][2] - t_[i_][1]);                          \
            STORE((v) + (i_ * 4 + 3) * (vs), t_[i_][1] - t_[i_][3]);                          \
        }                                                                                     \
    } while (0)
#define LOAD_T(p) (*(p))
#define STORE_T(p, x) (*(p) = (x))

/* One image: xp (Hw, Ww, Ci) padded NHWC, Hw >= 2*ceil(OH/2) + 2 and Ww likewise, zero beyond
 * the image's padding -> y (Fo, OH, OW) NCHW + bias, ReLU optional. U: (16, Ci, Fop).
 * vbuf: 16 * P_MAX * Ci, mbuf: 16 * tiles * Fop, obuf: 2 * 2*ceil(OW/2) * Fop elements. */
static void NAME(wino_image)(const T *restrict xp, ptrdiff_t Ww, ptrdiff_t Ci,
                             const T *restrict U, ptrdiff_t Fo, ptrdiff_t Fop,
                             const T *restrict bias, int relu, T *restrict y, ptrdiff_t OH,
                             ptrdiff_t OW, T *restrict vbuf, T *restrict mbuf,
                             T *restrict obuf, int vmax)
{
    ptrdiff_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, NT = TH * TW;
    int v_first = (int)(Fop / VL < vmax ? Fop / VL : vmax);
    ptrdiff_t G = NAME(fwd_pmax)(v_first);  /* tiles per group: the GEMM tile's P */
    ptrdiff_t c_vec = Ci / VL * VL;
    for (ptrdiff_t t0 = 0; t0 < NT; t0 += G) {
        ptrdiff_t g = NT - t0 < G ? NT - t0 : G;
        for (ptrdiff_t k = 0; k < g; k++) {  /* V[xi][k][c], channels innermost */
            ptrdiff_t ty = (t0 + k) / TW, tx = (t0 + k) % TW;
            const T *p = xp + (2 * ty * Ww + 2 * tx) * Ci;
            for (ptrdiff_t c = 0; c < c_vec; c += VL)
                WINO_INPUT(VEC, LOADV, STOREV, p + c, Ww, Ci, vbuf + k * Ci + c, G * Ci);
            for (ptrdiff_t c = c_vec; c < Ci; c++)
                WINO_INPUT(T, LOAD_T, STORE_T, p + c, Ww, Ci, vbuf + k * Ci + c, G * Ci);
        }
        for (int xi = 0; xi < 16; xi++)  /* M[xi][t0 .. t0+g) = V[xi] @ U[xi] */
            for (ptrdiff_t f0 = 0; f0 < Fop; f0 += vmax * VL) {
                int V = (int)((Fop - f0) / VL < vmax ? (Fop - f0) / VL : vmax);
                NAME(fwd_table)[V - 1][g - 1](vbuf + xi * G * Ci, Ci, 0, 1, Ci,
                                              U + xi * Ci * Fop + f0, Fop,
                                              mbuf + (xi * NT + t0) * Fop + f0, Fop);
            }
    }
    ptrdiff_t ow2 = 2 * TW;
    for (ptrdiff_t ty = 0; ty < TH; ty++) {  /* Y = A^T M A, two output rows per tile row */
        for (ptrdiff_t tx = 0; tx < TW; tx++)
            for (ptrdiff_t f = 0; f < Fop; f += VL) {
                const T *m = mbuf + (ty * TW + tx) * Fop + f;
                VEC r[2][4];
                for (int j = 0; j < 4; j++) {
                    VEC m0 = LOADV(m + (0 * 4 + j) * NT * Fop), m1 = LOADV(m + (1 * 4 + j) * NT * Fop);
                    VEC m2 = LOADV(m + (2 * 4 + j) * NT * Fop), m3 = LOADV(m + (3 * 4 + j) * NT * Fop);
                    r[0][j] = m0 + m1 + m2;
                    r[1][j] = m1 - m2 - m3;
                }
                for (int i = 0; i < 2; i++) {
                    T *o = obuf + (i * ow2 + 2 * tx) * Fop + f;
                    STOREV(o, r[i][0] + r[i][1] + r[i][2]);
                    STOREV(o + Fop, r[i][1] - r[i][2] - r[i][3]);
                }
            }
        for (ptrdiff_t i = 0; i < 2 && 2 * ty + i < OH; i++)
            NAME(store_tile)(obuf + i * ow2 * Fop, (int)OW, (int)(Fop / VL), 0, Fo, bias, relu,
                             y + (2 * ty + i) * OW, OH * OW);
    }
}

/* Elements of T one thread's buffers take: the padded input, V, M and two output rows. */
static ptrdiff_t NAME(wino_per_thread)(ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t Ci, ptrdiff_t Fop)
{
    ptrdiff_t TH = (OH + 1) / 2, TW = (OW + 1) / 2;
    return (2 * TH + 2) * (2 * TW + 2) * Ci + 16 * P_MAX * Ci + 16 * TH * TW * Fop
           + 2 * 2 * TW * Fop;
}

/* data = 0: the forward, y = conv(x, W) + bias; data = 1: the backward-data, dx = the
 * gradient dy (padded by 2 - pad) convolved with the flipped weights. work:
 * NAME(wino_work)(g, data, threads) elements. */
static void NAME(wino_run)(const T *in, const T *W, const T *bias, T *out,
                           const fastnn_conv_geom *g, int data, int relu, T *work, int threads)
{
    ptrdiff_t F = g->F, C = g->C, Fp = (F + VL - 1) / VL * VL, Cp = (C + VL - 1) / VL * VL;
    /* the convolution this pass computes: in (Ci real channels, Hi x Wi) -> out (Fo, Ho x Wo) */
    ptrdiff_t Cin = data ? F : C, Ci = data ? Fp : C, Fo = data ? C : F, Fop = data ? Cp : Fp;
    ptrdiff_t Hi = data ? g->OH : g->H, Wi = data ? g->OW : g->W;
    ptrdiff_t Ho = data ? g->H : g->OH, Wo = data ? g->W : g->OW;
    ptrdiff_t pt = data ? 2 - g->PH : g->PH, pl = data ? 2 - g->PW : g->PW;
    ptrdiff_t TH = (Ho + 1) / 2, TW = (Wo + 1) / 2, Hw = 2 * TH + 2, Ww = 2 * TW + 2;
    T *U = work, *bufs = work + 16 * Ci * Fop;
    ptrdiff_t per_thread = NAME(wino_per_thread)(Ho, Wo, Ci, Fop);
    NAME(wino_pack)(W, F, C, data, Ci, Fop, U);
    int nt = NAME(threads)(threads, g->N);
    ptrdiff_t n;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (n = 0; n < g->N; n++) {
        T *xp = bufs + NAME(tid)() * per_thread;
        T *vbuf = xp + Hw * Ww * Ci, *mbuf = vbuf + 16 * P_MAX * Ci;
        T *obuf = mbuf + 16 * TH * TW * Fop;
        NAME(pad_nhwc)(in + n * Cin * Hi * Wi, xp, Cin, Hi, Wi, Hw, Ww, Ci, pt, pl, NULL);
        NAME(wino_image)(xp, Ww, Ci, U, Fo, Fop, bias, relu, out + n * Fo * Ho * Wo, Ho, Wo,
                         vbuf, mbuf, obuf, V_DEFAULT);
    }
}

static ptrdiff_t NAME(wino_work)(const fastnn_conv_geom *g, int data, int threads)
{
    ptrdiff_t Fp = (g->F + VL - 1) / VL * VL, Cp = (g->C + VL - 1) / VL * VL;
    ptrdiff_t Ci = data ? Fp : g->C, Fop = data ? Cp : Fp;
    ptrdiff_t Ho = data ? g->H : g->OH, Wo = data ? g->W : g->OW;
    return 16 * Ci * Fop + NAME(threads)(threads, g->N) * NAME(wino_per_thread)(Ho, Wo, Ci, Fop);
}

/* WINO_INPUT, LOAD_T, STORE_T (and conv_direct.h's VEC, LOADV, ...) stay defined for
 * conv_winograd_bww.h, which undefines them */

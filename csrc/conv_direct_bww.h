/* The direct convolution's weight gradient: one instantiation per (instruction set, float
 * type), included by csrc/conv_direct.c after conv_direct.h, with the same macros (BWW_TILES:
 * the register tiles). Layouts as in conv_direct.h: the image padded into NHWC, the gradient
 * as NHWC rows of Fp channels, the result packed (KH, KW*C, Fp) and summed per thread.
 */

/* ---- the backward-weights tile: RB window rows x TJ run positions x V gradient vectors ---- */

/* acc[r][t][v] = sum over the image's output pixels (oy, ox) of
 *     x[(r*rstep) + oy*SH*rstep + ox*pstep + t] * g[oy*grow + ox*Fp + v*VL]
 * then added into dw[(r*KWC + t)*Fp + v*VL] (the thread's partial sums). */
static inline __attribute__((always_inline)) void NAME(bww_tile)(
    const int RB, const int TJ, const int V, const T *restrict x, ptrdiff_t pstep,
    ptrdiff_t rstep, ptrdiff_t SH, const T *restrict g, ptrdiff_t grow, ptrdiff_t Fp,
    ptrdiff_t OH, ptrdiff_t OW, T *restrict dw, ptrdiff_t KWC)
{
    VEC acc[RB_MAX][TJ_MAX][V_MAX];
    UNROLL
    for (int r = 0; r < RB; r++)
        UNROLL
        for (int t = 0; t < TJ; t++)
            UNROLL
            for (int v = 0; v < V; v++)
                acc[r][t][v] = (VEC){0};
    for (ptrdiff_t oy = 0; oy < OH; oy++) {
        const T *xr = x + oy * SH * rstep;
        const T *gr = g + oy * grow;
        for (ptrdiff_t ox = 0; ox < OW; ox++) {
            VEC gv[V_MAX];
            UNROLL
            for (int v = 0; v < V; v++)
                gv[v] = LOADV(gr + ox * Fp + v * VL);
            const T *xq = xr + ox * pstep;
            UNROLL
            for (int r = 0; r < RB; r++)
                UNROLL
                for (int t = 0; t < TJ; t++) {
                    T xs = xq[r * rstep + t];
                    UNROLL
                    for (int v = 0; v < V; v++)
                        acc[r][t][v] += xs * gv[v];
                }
        }
    }
    UNROLL
    for (int r = 0; r < RB; r++)
        UNROLL
        for (int t = 0; t < TJ; t++)
            UNROLL
            for (int v = 0; v < V; v++) {
                T *d = dw + (r * KWC + t) * Fp + v * VL;
                STOREV(d, LOADV(d) + acc[r][t][v]);
            }
}

typedef void (*NAME(bww_fn))(const T *, ptrdiff_t, ptrdiff_t, ptrdiff_t, const T *, ptrdiff_t,
                              ptrdiff_t, ptrdiff_t, ptrdiff_t, T *, ptrdiff_t);

#define BWW_TILE(RB, TJ, V)                                                                   \
    static void NAME(bww_##RB##_##TJ##_##V)(const T *x, ptrdiff_t ps, ptrdiff_t rs,           \
                                            ptrdiff_t SH, const T *g, ptrdiff_t grow,         \
                                            ptrdiff_t Fp, ptrdiff_t OH, ptrdiff_t OW, T *dw,  \
                                            ptrdiff_t KWC)                                    \
    {                                                                                         \
        NAME(bww_tile)(RB, TJ, V, x, ps, rs, SH, g, grow, Fp, OH, OW, dw, KWC);               \
    }
BWW_TILES
#undef BWW_TILE

static NAME(bww_fn) NAME(bww_table)[V_MAX][RB_MAX][TJ_MAX];

static void NAME(bww_table_init)(void)
{
#define BWW_TILE(RB, TJ, V) NAME(bww_table)[(V) - 1][(RB) - 1][(TJ) - 1] = NAME(bww_##RB##_##TJ##_##V);
    BWW_TILES
#undef BWW_TILE
}

/* The largest TJ with an (RB, ., V) kernel. */
static int NAME(bww_tjmax)(int RB, int V)
{
    int t = 0;
    while (t < TJ_MAX && NAME(bww_table)[V - 1][RB - 1][t])
        t++;
    return t;
}

/* One image's contribution to the weight gradient: dw (KH, KW*C, Fp) += the correlation of
 * xp (Hp, Wp, C) with the gradient g (rows of OW pixels, `grow` apart, Fp channels each). */
static void NAME(bww_image)(const T *restrict xp, ptrdiff_t Wp, ptrdiff_t C, ptrdiff_t KH,
                            ptrdiff_t KW, ptrdiff_t SH, ptrdiff_t SW, const T *restrict g,
                            ptrdiff_t grow, ptrdiff_t Fp, ptrdiff_t OH, ptrdiff_t OW,
                            T *restrict dw, int vmax)
{
    ptrdiff_t KWC = KW * C, pstep = SW * C, rstep = Wp * C;
    for (ptrdiff_t f0 = 0; f0 < Fp; f0 += vmax * VL) {
        int V = (int)((Fp - f0) / VL < vmax ? (Fp - f0) / VL : vmax);
        /* a short run (few input channels): cover several window rows per tile */
        int tj1 = NAME(bww_tjmax)(1, V);
        int RB = 1;
        while (RB < RB_MAX && RB < KH && KWC <= NAME(bww_tjmax)(RB + 1, V))
            RB++;
        if (RB > 1 && KWC > NAME(bww_tjmax)(RB, V))
            RB = 1;
        int tjmax = RB > 1 ? (int)KWC : tj1;
        for (ptrdiff_t ky0 = 0; ky0 < KH; ky0 += RB) {
            int rb = (int)(KH - ky0 < RB ? KH - ky0 : RB);
            int tjm = rb == RB ? tjmax : NAME(bww_tjmax)(rb, V);
            ptrdiff_t nt = (KWC + tjm - 1) / tjm;
            for (ptrdiff_t t = 0; t < nt; t++) {
                ptrdiff_t j0 = KWC * t / nt, j1 = KWC * (t + 1) / nt;
                NAME(bww_table)[V - 1][rb - 1][j1 - j0 - 1](
                    xp + ky0 * rstep + j0, pstep, rstep, SH, g + f0, grow, Fp, OH, OW,
                    dw + (ky0 * KWC + j0) * Fp + f0, KWC);
            }
        }
    }
}

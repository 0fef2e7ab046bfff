/* The batch drivers of the direct convolution: one instantiation per (instruction set, float
 * type), included by csrc/conv_direct.c right after conv_direct.h with the same macros.
 *
 * Each image is one unit of work for one thread of the OpenMP team: its input (or gradient)
 * is padded into NHWC in the thread's own buffer, which stays in L2 while every tile of the
 * image reads it. The weight gradient is summed per thread, then over threads in a fixed
 * order; the bias gradient per image in float64, then over images in order.
 */

static int NAME(threads)(int threads, ptrdiff_t N)
{
    return (ptrdiff_t)threads < N ? threads : (int)(N > 0 ? N : 1);
}

/* db[f] = the per-image bias sums part (N, F) float64, summed over images in order: the bias
 * gradient of the direct and the Winograd weight gradients alike. */
static void NAME(bias_from_partials)(const double *part, ptrdiff_t N, ptrdiff_t F, T *db)
{
    for (ptrdiff_t f = 0; f < F; f++) {
        double s = 0;
        for (ptrdiff_t i = 0; i < N; i++)
            s += part[i * F + f];
        db[f] = (T)s;
    }
}

static int NAME(tid)(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int NAME(team_size)(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* y (N, F, OH, OW) = conv(x (N, C, H, W), W (F, C, KH, KW)) + bias, relu optional.
 * work: fastnn_conv_work_forward(...) elements of T. */
static void NAME(forward)(const T *x, const T *W, const T *bias, T *y,
                          const fastnn_conv_geom *g, int relu, T *work, int threads)
{
    ptrdiff_t N = g->N, C = g->C, H = g->H, Wd = g->W, F = g->F, KH = g->KH, KW = g->KW;
    ptrdiff_t Fp = (F + VL - 1) / VL * VL, Hp = H + 2 * g->PH, Wp = Wd + 2 * g->PW;
    T *wp = work, *xbuf = work + KH * KW * C * Fp;
    ptrdiff_t per_thread = Hp * Wp * C;
    NAME(pack_forward)(W, F, C, KH, KW, Fp, wp);
    int nt = NAME(threads)(threads, N);
    ptrdiff_t n;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (n = 0; n < N; n++) {
        T *xp = xbuf + NAME(tid)() * per_thread;
        NAME(pad_nhwc)(x + n * C * H * Wd, xp, C, H, Wd, Hp, Wp, C, g->PH, g->PW, NULL);
        NAME(conv_image)(xp, Wp, C, KH, KW, g->SH, g->SW, wp, F, Fp, bias, relu,
                         y + n * F * g->OH * g->OW, g->OH, g->OW, V_DEFAULT);
    }
}

/* The gradients of forward: dx (N, C, H, W) when dx is not NULL (stride 1 only: the
 * convolution of the gradient, padded by KH-1-PH >= 0, with the flipped weights), dW (F, C,
 * KH, KW) and db (F,) when dW is not NULL. work: fastnn_conv_work_backward(...) elements of T;
 * part: N*F doubles (the per-image bias sums). */
static void NAME(backward)(const T *dy, const T *x, const T *W, T *dx, T *dW, T *db,
                           const fastnn_conv_geom *g, T *work, double *part, int threads)
{
    ptrdiff_t N = g->N, C = g->C, H = g->H, Wd = g->W, F = g->F, KH = g->KH, KW = g->KW;
    ptrdiff_t OH = g->OH, OW = g->OW;
    ptrdiff_t Fp = (F + VL - 1) / VL * VL, Cp = (C + VL - 1) / VL * VL;
    ptrdiff_t Hp = H + 2 * g->PH, Wp = Wd + 2 * g->PW;
    /* the gradient, padded for the backward-data convolution (or not at all) */
    ptrdiff_t qt = dx ? KH - 1 - g->PH : 0, ql = dx ? KW - 1 - g->PW : 0;
    ptrdiff_t Hq = OH + 2 * qt, Wq = OW + 2 * ql;
    ptrdiff_t K = KH * KW * C * Fp;  /* one partial weight gradient, packed */
    T *wbd = work;                   /* the backward-data weights (KH, KW*Fp, Cp) */
    T *bufs = work + (dx ? KH * KW * Fp * Cp : 0);
    ptrdiff_t per_thread = Hq * Wq * Fp + (dW ? Hp * Wp * C + K : 0);
    int nt = NAME(threads)(threads, N);
    if (dx)
        NAME(pack_backward_data)(W, F, C, KH, KW, Fp, Cp, wbd);
    if (dW)
        for (int t = 0; t < nt; t++)
            memset(bufs + t * per_thread + Hq * Wq * Fp + Hp * Wp * C, 0, (size_t)K * sizeof(T));
    ptrdiff_t n;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (n = 0; n < N; n++) {
        T *dyp = bufs + NAME(tid)() * per_thread;
        NAME(pad_nhwc)(dy + n * F * OH * OW, dyp, F, OH, OW, Hq, Wq, Fp, qt, ql,
                       dW ? part + n * F : NULL);
        if (dx)
            NAME(conv_image)(dyp, Wq, Fp, KH, KW, 1, 1, wbd, C, Cp, NULL, 0,
                             dx + n * C * H * Wd, H, Wd, V_DEFAULT);
        if (dW) {
            T *xp = dyp + Hq * Wq * Fp, *dwp = xp + Hp * Wp * C;
            NAME(pad_nhwc)(x + n * C * H * Wd, xp, C, H, Wd, Hp, Wp, C, g->PH, g->PW, NULL);
            NAME(bww_image)(xp, Wp, C, KH, KW, g->SH, g->SW, dyp + (qt * Wq + ql) * Fp,
                            Wq * Fp, Fp, OH, OW, dwp, V_DEFAULT);
        }
    }
    if (!dW)
        return;
    /* dW[f, c, ky, kx] = the threads' partials [ky][kx*C + c][f], summed in thread order */
    for (ptrdiff_t f = 0; f < F; f++)
        for (ptrdiff_t c = 0; c < C; c++)
            for (ptrdiff_t ky = 0; ky < KH; ky++)
                for (ptrdiff_t kx = 0; kx < KW; kx++) {
                    ptrdiff_t at = (ky * KW * C + kx * C + c) * Fp + f;
                    T s = 0;
                    for (int t = 0; t < nt; t++)
                        s += bufs[t * per_thread + Hq * Wq * Fp + Hp * Wp * C + at];
                    dW[((f * C + c) * KH + ky) * KW + kx] = s;
                }
    NAME(bias_from_partials)(part, N, F, db);
}

/* Elements of T the work buffers take. */
static ptrdiff_t NAME(work_forward)(const fastnn_conv_geom *g, int threads)
{
    ptrdiff_t Fp = (g->F + VL - 1) / VL * VL;
    ptrdiff_t per_thread = (g->H + 2 * g->PH) * (g->W + 2 * g->PW) * g->C;
    return g->KH * g->KW * g->C * Fp + NAME(threads)(threads, g->N) * per_thread;
}

static ptrdiff_t NAME(work_backward)(const fastnn_conv_geom *g, int need_dx, int need_dw,
                                     int threads)
{
    ptrdiff_t Fp = (g->F + VL - 1) / VL * VL, Cp = (g->C + VL - 1) / VL * VL;
    ptrdiff_t qt = need_dx ? g->KH - 1 - g->PH : 0, ql = need_dx ? g->KW - 1 - g->PW : 0;
    ptrdiff_t Hq = g->OH + 2 * qt, Wq = g->OW + 2 * ql;
    ptrdiff_t per_thread = Hq * Wq * Fp;
    if (need_dw)
        per_thread += (g->H + 2 * g->PH) * (g->W + 2 * g->PW) * g->C + g->KH * g->KW * g->C * Fp;
    return (need_dx ? g->KH * g->KW * Fp * Cp : 0) + NAME(threads)(threads, g->N) * per_thread;
}

static void NAME(init)(void)
{
    NAME(fwd_table_init)();
    NAME(bww_table_init)();
}

/* The float32 FMA peak probe of one instruction set (bench/report.py quotes the convolutions
 * against it): included by conv_instances.h for the float32 instance only. */

/* The machine's float32 FMA peak in this variant's vectors: PEAK_CHAINS independent chains of
 * acc = acc * w + u per thread (enough to hide the FMA latency), `iters` rounds, on `threads`
 * threads at once. Returns the FLOPs done (2 per lane per FMA); the caller times the call. */
static double NAME(peak)(long iters, int threads)
{
    double sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        VEC acc[PEAK_CHAINS], w = (VEC){0} + (T)0.999, u = (VEC){0} + (T)0.001;
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = (VEC){0} + (T)i;
        for (long it = 0; it < iters; it++) {
            UNROLL
            for (int i = 0; i < PEAK_CHAINS; i++)
                acc[i] = acc[i] * w + u;
        }
        for (int i = 0; i < PEAK_CHAINS; i++)
            sink += acc[i][0];
    }
    /* the sum (near PEAK_CHAINS after convergence) keeps the loop from being optimised out */
    return sink > 0 ? 2.0 * VL * PEAK_CHAINS * (double)iters * threads : 0;
}

/* Direct convolution for the CPU, compiled for AVX-512, for AVX2+FMA and for the compiler's
 * baseline (SSE2 on x86-64, the native vectors elsewhere), in float32 and float64; one variant
 * is chosen at run time from the CPU's features (fastnn_conv_select), so a wheel built once
 * runs on any x86-64 and uses AVX-512 where the CPU has it.
 *
 * The kernels are in conv_direct.h (layouts, forward tiles), conv_direct_bww.h (weight-gradient
 * tiles) and conv_direct_driver.h (the batch loop on the OpenMP team); Winograd F(2x2, 3x3),
 * which reuses their tiles, in conv_winograd.h (forward, backward-data) and
 * conv_winograd_bww.h (the weight gradient). csrc/conv.pyx validates and allocates around
 * them; the oracles are fastnn.naive.conv2d_forward / conv2d_backward / winograd_conv2d, which
 * tests/test_conv_direct.py and tests/test_conv_winograd.py hold them to.
 * Needs GCC or Clang (vector extensions and per-function targets).
 */
#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "conv_direct_api.h"
#include "conv_simd.h"

/* Register tiles, as lists of TILE(P, V) / BWW(RB, TJ, V). The counts are what the register
 * file holds: P*V accumulators plus V weight vectors (plus one broadcast register on AVX2,
 * whose FMAs cannot broadcast from memory). 32 registers on AVX-512, 16 on AVX2 and SSE. */
#define S2(M, a, b) M(1, a, b) M(2, a, b)
#define S3(M, a, b) S2(M, a, b) M(3, a, b)
#define S4(M, a, b) S3(M, a, b) M(4, a, b)
#define S6(M, a, b) S4(M, a, b) M(5, a, b) M(6, a, b)
#define S8(M, a, b) S6(M, a, b) M(7, a, b) M(8, a, b)
#define S12(M, a, b) S8(M, a, b) M(9, a, b) M(10, a, b) M(11, a, b) M(12, a, b)
#define S24(M, a, b) S12(M, a, b) M(13, a, b) M(14, a, b) M(15, a, b) M(16, a, b) \
    M(17, a, b) M(18, a, b) M(19, a, b) M(20, a, b) M(21, a, b) M(22, a, b) M(23, a, b) M(24, a, b)
/* adapters: the sequence number becomes P (forward) or TJ (backward-weights) */
#define F_(i, V, unused) FWD_TILE(i, V)
#define B_(i, RB, V) BWW_TILE(RB, i, V)

#define TILES_WIDE                                                                            \
    /* forward: P pixels x V vectors */                                                       \
    S24(F_, 1, 0) S12(F_, 2, 0) S8(F_, 3, 0) S6(F_, 4, 0)
#define BWW_WIDE                                                                              \
    /* backward-weights: RB rows x TJ taps x V vectors */                                     \
    S24(B_, 1, 1) S12(B_, 2, 1) S8(B_, 3, 1)                                                  \
    S12(B_, 1, 2) S6(B_, 2, 2) S4(B_, 3, 2)                                                   \
    S8(B_, 1, 3) S4(B_, 2, 3) S2(B_, 3, 3)                                                    \
    S6(B_, 1, 4) S3(B_, 2, 4) S2(B_, 3, 4)
#define TILES_NARROW S12(F_, 1, 0) S6(F_, 2, 0) S3(F_, 3, 0) S2(F_, 4, 0)
#define BWW_NARROW                                                                            \
    S12(B_, 1, 1) S6(B_, 2, 1) S4(B_, 3, 1)                                                   \
    S6(B_, 1, 2) S3(B_, 2, 2) S2(B_, 3, 2)                                                    \
    S4(B_, 1, 3) S2(B_, 2, 3) M1(B_, 3, 3)                                                    \
    S2(B_, 1, 4) M1(B_, 2, 4) M1(B_, 3, 4)
#define M1(M, a, b) M(1, a, b)

#define P_MAX 24
#define V_MAX 4
#define RB_MAX 3
#define TJ_MAX 24

#define CAT2(a, b) a##_##b
#define XCAT2(a, b) CAT2(a, b)
#define CAT3(a, b, c) a##_##b##_##c
#define XCAT3(a, b, c) CAT3(a, b, c)

/* ---- baseline: SSE2 on x86-64 (no FMA), the native 128-bit vectors elsewhere ------------- */
#define FWD_TILES TILES_NARROW
#define BWW_TILES BWW_NARROW
#define V_DEFAULT 2
#define PEAK_CHAINS 12
#define ISA generic
#define LANES_F32 4
#include "conv_instances.h"
#undef ISA
#undef LANES_F32

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_VARIANTS 1

/* Compile what follows for an instruction set (every function until TARGET_END) */
#define PRAGMA(x) _Pragma(#x)
#ifdef __clang__
#define TARGET_BEGIN(isa) PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
#define TARGET_END PRAGMA(clang attribute pop)
#else
#define TARGET_BEGIN(isa) PRAGMA(GCC push_options) PRAGMA(GCC target(isa))
#define TARGET_END PRAGMA(GCC pop_options)
#endif

/* ---- AVX2 + FMA: 256-bit vectors, 16 registers --------------------------------------------- */
TARGET_BEGIN("avx2,fma")
#define ISA avx2
#define LANES_F32 8
#define SIMD_F32 avx2
#define SIMD_F32_TYPE __m256
#include "conv_instances.h"
#undef ISA
#undef LANES_F32
#undef SIMD_F32
#undef SIMD_F32_TYPE
TARGET_END
#undef FWD_TILES
#undef BWW_TILES
#undef V_DEFAULT
#undef PEAK_CHAINS

/* ---- AVX-512: 512-bit vectors, 32 registers, FMAs that broadcast from memory ---------------- */
#define FWD_TILES TILES_WIDE
#define BWW_TILES BWW_WIDE
#define V_DEFAULT 4
#define PEAK_CHAINS 24
TARGET_BEGIN("avx512f,fma")
#define ISA avx512
#define LANES_F32 16
#define SIMD_F32 avx512
#define SIMD_F32_TYPE __m512
#include "conv_instances.h"
#undef ISA
#undef LANES_F32
#undef SIMD_F32
#undef SIMD_F32_TYPE
TARGET_END
#endif /* x86-64 */

/* ---- dispatch ------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int lanes_f32;
    void (*forward_f32)(const float *, const float *, const float *, float *,
                        const fastnn_conv_geom *, int, float *, int);
    void (*forward_f64)(const double *, const double *, const double *, double *,
                        const fastnn_conv_geom *, int, double *, int);
    void (*backward_f32)(const float *, const float *, const float *, float *, float *,
                         float *, const fastnn_conv_geom *, float *, double *, int);
    void (*backward_f64)(const double *, const double *, const double *, double *, double *,
                         double *, const fastnn_conv_geom *, double *, double *, int);
    ptrdiff_t (*work_forward_f32)(const fastnn_conv_geom *, int);
    ptrdiff_t (*work_forward_f64)(const fastnn_conv_geom *, int);
    ptrdiff_t (*work_backward_f32)(const fastnn_conv_geom *, int, int, int);
    ptrdiff_t (*work_backward_f64)(const fastnn_conv_geom *, int, int, int);
    void (*winograd_f32)(const float *, const float *, const float *, float *,
                         const fastnn_conv_geom *, int, int, float *, int);
    void (*winograd_f64)(const double *, const double *, const double *, double *,
                         const fastnn_conv_geom *, int, int, double *, int);
    ptrdiff_t (*winograd_work_f32)(const fastnn_conv_geom *, int, int);
    ptrdiff_t (*winograd_work_f64)(const fastnn_conv_geom *, int, int);
    void (*winograd_weights_f32)(const float *, const float *, float *, float *,
                                 const fastnn_conv_geom *, float *, double *, int);
    void (*winograd_weights_f64)(const double *, const double *, double *, double *,
                                 const fastnn_conv_geom *, double *, double *, int);
    ptrdiff_t (*winograd_weights_work_f32)(const fastnn_conv_geom *, int);
    ptrdiff_t (*winograd_weights_work_f64)(const fastnn_conv_geom *, int);
    double (*peak)(long, int);
    void (*init_f32)(void);
    void (*init_f64)(void);
} variant;

#define VARIANT(isa, lanes)                                                                   \
    {#isa, lanes, forward_f32_##isa, forward_f64_##isa, backward_f32_##isa,                   \
     backward_f64_##isa, work_forward_f32_##isa, work_forward_f64_##isa,                      \
     work_backward_f32_##isa, work_backward_f64_##isa, wino_run_f32_##isa, wino_run_f64_##isa, \
     wino_work_f32_##isa, wino_work_f64_##isa, wino_bww_run_f32_##isa, wino_bww_run_f64_##isa, \
     wino_bww_work_f32_##isa, wino_bww_work_f64_##isa, peak_f32_##isa, init_f32_##isa,       \
     init_f64_##isa}

static const variant variants[] = {
#ifdef HAVE_X86_VARIANTS
    VARIANT(avx512, 16),
    VARIANT(avx2, 8),
#endif
    VARIANT(generic, 4),
};
enum { N_VARIANTS = sizeof(variants) / sizeof(variants[0]) };

/* The variant in use: an index into variants[]. Every call takes the index its caller read
 * once (fastnn_conv_current), for sizing its work and for running: a select() from another
 * thread in between cannot hand a kernel a work array sized for other tiles. */
static int current = N_VARIANTS - 1;
static int initialised[N_VARIANTS];

int fastnn_conv_supported(const char *name)
{
#ifdef HAVE_X86_VARIANTS
    __builtin_cpu_init();
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f");
    if (!strcmp(name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return !strcmp(name, "generic");
}

int fastnn_cpu_has(const char *feature)
{
#ifdef HAVE_X86_VARIANTS
    __builtin_cpu_init();
    /* __builtin_cpu_supports takes a string literal only: one test per feature */
#define FEATURE(name) if (!strcmp(feature, #name)) return __builtin_cpu_supports(#name);
    FEATURE(avx2) FEATURE(fma) FEATURE(avx512f) FEATURE(avx512cd) FEATURE(avx512vl)
    FEATURE(avx512bw) FEATURE(avx512dq)
#undef FEATURE
#endif
    (void)feature;
    return 0;
}

const char *fastnn_conv_variant(int i)
{
    return i >= 0 && i < N_VARIANTS ? variants[i].name : NULL;
}

int fastnn_conv_select(const char *name)
{
    for (int i = 0; i < N_VARIANTS; i++)
        if (!strcmp(variants[i].name, name)) {
            if (!fastnn_conv_supported(name))
                return -1;
            if (!initialised[i]) {  /* its tile tables, filled once (callers hold the GIL) */
                variants[i].init_f32();
                variants[i].init_f64();
                initialised[i] = 1;
            }
            current = i;
            return 0;
        }
    return -1;
}

int fastnn_conv_current(void) { return current; }
const char *fastnn_conv_selected(void) { return variants[current].name; }
int fastnn_conv_lanes_f32(void) { return variants[current].lanes_f32; }

#define V (&variants[v])

void fastnn_conv_forward_f32(int v, const float *x, const float *W, const float *b, float *y,
                             const fastnn_conv_geom *g, int relu, float *work, int threads)
{
    V->forward_f32(x, W, b, y, g, relu, work, threads);
}

void fastnn_conv_forward_f64(int v, const double *x, const double *W, const double *b,
                             double *y, const fastnn_conv_geom *g, int relu, double *work,
                             int threads)
{
    V->forward_f64(x, W, b, y, g, relu, work, threads);
}

void fastnn_conv_backward_f32(int v, const float *dy, const float *x, const float *W,
                              float *dx, float *dW, float *db, const fastnn_conv_geom *g,
                              float *work, double *part, int threads)
{
    V->backward_f32(dy, x, W, dx, dW, db, g, work, part, threads);
}

void fastnn_conv_backward_f64(int v, const double *dy, const double *x, const double *W,
                              double *dx, double *dW, double *db, const fastnn_conv_geom *g,
                              double *work, double *part, int threads)
{
    V->backward_f64(dy, x, W, dx, dW, db, g, work, part, threads);
}

ptrdiff_t fastnn_conv_work_forward(int v, const fastnn_conv_geom *g, int f64, int threads)
{
    return f64 ? V->work_forward_f64(g, threads) : V->work_forward_f32(g, threads);
}

ptrdiff_t fastnn_conv_work_backward(int v, const fastnn_conv_geom *g, int f64, int need_dx,
                                    int need_dw, int threads)
{
    return f64 ? V->work_backward_f64(g, need_dx, need_dw, threads)
               : V->work_backward_f32(g, need_dx, need_dw, threads);
}

void fastnn_winograd_f32(int v, const float *in, const float *W, const float *b, float *out,
                         const fastnn_conv_geom *g, int data, int relu, float *work, int threads)
{
    V->winograd_f32(in, W, b, out, g, data, relu, work, threads);
}

void fastnn_winograd_f64(int v, const double *in, const double *W, const double *b,
                         double *out, const fastnn_conv_geom *g, int data, int relu,
                         double *work, int threads)
{
    V->winograd_f64(in, W, b, out, g, data, relu, work, threads);
}

ptrdiff_t fastnn_winograd_work(int v, const fastnn_conv_geom *g, int f64, int data, int threads)
{
    return f64 ? V->winograd_work_f64(g, data, threads) : V->winograd_work_f32(g, data, threads);
}

void fastnn_winograd_weights_f32(int v, const float *dy, const float *x, float *dW, float *db,
                                 const fastnn_conv_geom *g, float *work, double *part,
                                 int threads)
{
    V->winograd_weights_f32(dy, x, dW, db, g, work, part, threads);
}

void fastnn_winograd_weights_f64(int v, const double *dy, const double *x, double *dW,
                                 double *db, const fastnn_conv_geom *g, double *work,
                                 double *part, int threads)
{
    V->winograd_weights_f64(dy, x, dW, db, g, work, part, threads);
}

ptrdiff_t fastnn_winograd_weights_work(int v, const fastnn_conv_geom *g, int f64, int threads)
{
    return f64 ? V->winograd_weights_work_f64(g, threads)
               : V->winograd_weights_work_f32(g, threads);
}

double fastnn_conv_peak_flops(int v, long iters, int threads)
{
    return V->peak(iters, threads);
}
#undef V

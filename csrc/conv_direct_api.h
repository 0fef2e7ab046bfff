/* The direct convolution's C interface (csrc/conv_direct.c), as csrc/conv.pyx sees it.
 *
 * Every kernel and work-size function takes `v`, the variant (instruction set) to use: the
 * caller reads fastnn_conv_current() once and passes the same v to the size and to the run.
 */
#ifndef FASTNN_CONV_DIRECT_API_H
#define FASTNN_CONV_DIRECT_API_H
#include <stddef.h>

/* One convolution's shape: x (N, C, H, W), W (F, C, KH, KW), y (N, F, OH, OW). */
typedef struct {
    ptrdiff_t N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW;
} fastnn_conv_geom;

int fastnn_conv_supported(const char *name);   /* can this CPU run variant `name`? */
int fastnn_cpu_has(const char *feature);       /* "avx2", "fma", "avx512f", "avx512vl", ... */
const char *fastnn_conv_variant(int i);        /* the i-th compiled variant, NULL past the end */
int fastnn_conv_select(const char *name);      /* 0, or -1: not compiled or not supported */
int fastnn_conv_current(void);                 /* the variant in use, as an index */
const char *fastnn_conv_selected(void);
int fastnn_conv_lanes_f32(void);

void fastnn_conv_forward_f32(int v, const float *x, const float *W, const float *b, float *y,
                             const fastnn_conv_geom *g, int relu, float *work, int threads);
void fastnn_conv_forward_f64(int v, const double *x, const double *W, const double *b,
                             double *y, const fastnn_conv_geom *g, int relu, double *work,
                             int threads);
void fastnn_conv_backward_f32(int v, const float *dy, const float *x, const float *W,
                              float *dx, float *dW, float *db, const fastnn_conv_geom *g,
                              float *work, double *part, int threads);
void fastnn_conv_backward_f64(int v, const double *dy, const double *x, const double *W,
                              double *dx, double *dW, double *db, const fastnn_conv_geom *g,
                              double *work, double *part, int threads);
ptrdiff_t fastnn_conv_work_forward(int v, const fastnn_conv_geom *g, int f64, int threads);
ptrdiff_t fastnn_conv_work_backward(int v, const fastnn_conv_geom *g, int f64, int need_dx,
                                    int need_dw, int threads);

/* FLOPs of a float32 FMA-peak loop of `iters` rounds on `threads` threads (time the call). */
double fastnn_conv_peak_flops(int v, long iters, int threads);

/* Winograd F(2x2, 3x3), stride 1, pad <= 2: data = 0, out = conv(in = x, W) + b (ReLU
 * optional); data = 1, out = dx from in = dy (b NULL, relu 0). */
void fastnn_winograd_f32(int v, const float *in, const float *W, const float *b, float *out,
                         const fastnn_conv_geom *g, int data, int relu, float *work,
                         int threads);
void fastnn_winograd_f64(int v, const double *in, const double *W, const double *b,
                         double *out, const fastnn_conv_geom *g, int data, int relu,
                         double *work, int threads);
ptrdiff_t fastnn_winograd_work(int v, const fastnn_conv_geom *g, int f64, int data, int threads);
/* The weight gradient dW (F, C, 3, 3) and db (F,) by Winograd F(2x2, 3x3); part: N*F doubles. */
void fastnn_winograd_weights_f32(int v, const float *dy, const float *x, float *dW, float *db,
                                 const fastnn_conv_geom *g, float *work, double *part,
                                 int threads);
void fastnn_winograd_weights_f64(int v, const double *dy, const double *x, double *dW,
                                 double *db, const fastnn_conv_geom *g, double *work,
                                 double *part, int threads);
ptrdiff_t fastnn_winograd_weights_work(int v, const fastnn_conv_geom *g, int f64, int threads);
#endif

/* Both float types of one instruction set's kernels. csrc/conv_direct.c includes this once per
 * instruction set, inside its target region, after defining ISA, LANES_F32 (float32 lanes per
 * vector), the register tiles (FWD_TILES, BWW_TILES, V_DEFAULT, PEAK_CHAINS) and, where
 * conv_simd.h has them, SIMD_F32 (the helpers' suffix) and SIMD_F32_TYPE (their vector type).
 */
#define SIMD_FN(f) XCAT2(fastnn_##f, SIMD_F32)
#define T float
#define VL LANES_F32
#define NAME(x) XCAT3(x, f32, ISA)
#ifdef SIMD_F32  /* the in-register transposes and masked loads/stores of float32 vectors */
#define XPOSE(b) SIMD_FN(transpose)((SIMD_F32_TYPE *)(b))
#define STORE_FIRST(p, v, n) SIMD_FN(store_first)(p, (SIMD_F32_TYPE)(v), n)
#define LOAD_FIRST(p, n) SIMD_FN(load_first)(p, n)
#define SUM_ROWS(s, b, n) SIMD_FN(sum_rows)(s, (const SIMD_F32_TYPE *)(b), n)
#endif
#include "conv_direct.h"
#include "conv_direct_bww.h"
#include "conv_direct_driver.h"
#include "conv_peak.h"
#include "conv_winograd.h"
#include "conv_winograd_bww.h"
#undef XPOSE
#undef STORE_FIRST
#undef LOAD_FIRST
#undef SUM_ROWS
#undef T
#undef VL
#undef NAME
#define T double
#define VL (LANES_F32 / 2)
#define NAME(x) XCAT3(x, f64, ISA)
#include "conv_direct.h"
#include "conv_direct_bww.h"
#include "conv_direct_driver.h"
#include "conv_winograd.h"
#include "conv_winograd_bww.h"
#undef T
#undef VL
#undef NAME
#undef SIMD_FN

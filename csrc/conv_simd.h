/* In-register transposes and partial stores for the direct convolution's layout changes
 * (NCHW <-> NHWC), float32 on AVX-512 and AVX2. The baseline variant and float64 use the
 * scalar loops in conv_direct.h. Each function carries its own target attribute, so this file
 * is included once, before the variants. */
#ifndef FASTNN_CONV_SIMD_H
#define FASTNN_CONV_SIMD_H
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* r[i] holds row i of a 16x16 block; afterwards r[j] holds column j. */
__attribute__((target("avx512f"))) static inline void fastnn_transpose_avx512(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}

/* Store the first n (1..16) lanes of v at p. */
__attribute__((target("avx512f"))) static inline void fastnn_store_first_avx512(float *p, __m512 v,
                                                                               int n)
{
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
}

/* The first n (1..16) floats at p, zeros after them: nothing past p + n is read. */
__attribute__((target("avx512f"))) static inline __m512 fastnn_load_first_avx512(const float *p,
                                                                               int n)
{
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}

/* s[0..16) += the float64 values of b[0], ..., b[n-1], lane by lane, in that order (the bias
 * gradient: each channel summed in pixel order, as a scalar loop would). */
__attribute__((target("avx512f"))) static inline void fastnn_sum_rows_avx512(double *s,
                                                                            const __m512 *b, int n)
{
    __m512d lo = _mm512_loadu_pd(s), hi = _mm512_loadu_pd(s + 8);
    for (int j = 0; j < n; j++) {
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(b[j])));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b[j]), 1))));
    }
    _mm512_storeu_pd(s, lo);
    _mm512_storeu_pd(s + 8, hi);
}

__attribute__((target("avx2"))) static inline void fastnn_transpose_avx2(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}

__attribute__((target("avx2"))) static inline void fastnn_store_first_avx2(float *p, __m256 v, int n)
{
    static const int ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    _mm256_maskstore_ps(p, _mm256_loadu_si256((const __m256i *)(ones + 8 - n)), v);
}

__attribute__((target("avx2"))) static inline __m256 fastnn_load_first_avx2(const float *p, int n)
{
    static const int ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_maskload_ps(p, _mm256_loadu_si256((const __m256i *)(ones + 8 - n)));
}

__attribute__((target("avx2"))) static inline void fastnn_sum_rows_avx2(double *s, const __m256 *b,
                                                                       int n)
{
    __m256d lo = _mm256_loadu_pd(s), hi = _mm256_loadu_pd(s + 4);
    for (int j = 0; j < n; j++) {
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(b[j])));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(b[j], 1)));
    }
    _mm256_storeu_pd(s, lo);
    _mm256_storeu_pd(s + 4, hi);
}
#endif
#endif

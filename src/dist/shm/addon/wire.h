/**
 * The 16-bit wire formats, element by element and in place. Included once, by shm_addon.cc.
 */
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace shm {

// ---------------------------------------------------------------------------------------------
// 16-bit wire formats, held bit for bit to src/dist/ring/wire-codec.ts's JS reference by the
// tests (the only native copy: the comm thread loads them from this addon). fp16 rounds to nearest even
// (F. Giesen's float_to_half_fast3_rtne); a NaN stays a quiet NaN with its top payload bits,
// as F16C does, which converts 8 at a time where the CPU has it.

inline uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t toFp16(uint32_t x) {
  const uint32_t sign = x & 0x80000000u;
  const uint32_t f = x ^ sign;
  const uint32_t denormMagic = ((127 - 15) + (23 - 10) + 1) << 23;
  const uint32_t subnormal = bitsOf(floatOf(f) + floatOf(denormMagic)) - denormMagic;
  const uint32_t normal = (f + (static_cast<uint32_t>(15 - 127) << 23) + 0xfff + ((f >> 13) & 1)) >> 13;
  const uint32_t big = f > (255u << 23) ? (0x7e00u | ((f >> 13) & 0x3ffu)) : 0x7c00u;
  const uint32_t h = f >= ((127u + 16) << 23) ? big : f < (113u << 23) ? subnormal : normal;
  return static_cast<uint16_t>(h | (sign >> 16));
}

inline float fromFp16(uint16_t h) {
  const uint32_t magnitude = static_cast<uint32_t>(h & 0x7fff) << 13;
  uint32_t bits = bitsOf(floatOf(magnitude) * floatOf((254u - 15) << 23));
  bits |= bits >= ((127u + 16) << 23) ? (255u << 23) : 0u;
  bits |= (h & 0x7fffu) > 0x7c00u ? 0x400000u : 0u;
  return floatOf(bits | (static_cast<uint32_t>(h & 0x8000) << 16));
}

inline uint16_t toBf16(uint32_t x) {
  const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
  const uint32_t nan = ((x >> 16) & 0x8000u) | 0x7fc0u;
  return static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

bool hasF16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}

__attribute__((target("avx,f16c"))) size_t encodeFp16F16c(const float *in, uint16_t *out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(out + i), h);
  }
  return i;
}

__attribute__((target("avx,f16c"))) size_t decodeFp16F16c(const uint16_t *in, float *out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(in + i))));
  return i;
}

/** Both directions at once: the value the wire delivers, in place. */
__attribute__((target("avx,f16c"))) size_t quantizeFp16F16c(float *v, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(v + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  return i;
}

enum Dtype : int { FP32 = 0, FP16 = 1, BF16 = 2 };

void encode(int dtype, const float *src, uint16_t *dst, size_t n) {
  const uint32_t *in = reinterpret_cast<const uint32_t *>(src);
  if (dtype == FP16) {
    const size_t done = hasF16c() ? encodeFp16F16c(src, dst, n) : 0;
    for (size_t i = done; i < n; i++) dst[i] = toFp16(in[i]);
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = toBf16(in[i]);
  }
}

void decode(int dtype, const uint16_t *src, float *dst, size_t n) {
  if (dtype == FP16) {
    const size_t done = hasF16c() ? decodeFp16F16c(src, dst, n) : 0;
    for (size_t i = done; i < n; i++) dst[i] = fromFp16(src[i]);
  } else {
    uint32_t *out = reinterpret_cast<uint32_t *>(dst);
    for (size_t i = 0; i < n; i++) out[i] = static_cast<uint32_t>(src[i]) << 16;
  }
}

void quantize(int dtype, float *v, size_t n) {
  if (dtype == FP32) return;
  if (dtype == FP16) {
    const size_t done = hasF16c() ? quantizeFp16F16c(v, n) : 0;
    for (size_t i = done; i < n; i++) v[i] = fromFp16(toFp16(bitsOf(v[i])));
  } else {
    uint32_t *u = reinterpret_cast<uint32_t *>(v);
    for (size_t i = 0; i < n; i++) u[i] = static_cast<uint32_t>(toBf16(u[i])) << 16;
  }
}

}  // namespace shm

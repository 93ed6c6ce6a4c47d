// FP8 weight dequantisation with a per-tensor scale: out = round(decode(q) * scale) computed in
// float with one rounding to the output type. `format` 0 = E4M3 (float8_e4m3fn: bias 7, no
// infinities, S.1111.111 = NaN), 1 = E5M2 (the upper byte of an IEEE half). Every FP8 value is
// exact in float; the host passes the scale already rounded to the output type when ComfyUI's
// eager backend is reproduced (then the product is exact and this rounding is the only one).
#include "common.cuh"

__device__ __forceinline__ float e4m3_to_f32(unsigned int byte) {
  const unsigned int sign = (byte & 0x80u) << 24;
  const unsigned int exponent = (byte >> 3) & 0x0fu;
  const unsigned int mantissa = byte & 0x07u;
  float magnitude;
  if (exponent == 0) {
    magnitude = (float)mantissa * 0.001953125f;  // m/8 * 2^-6
  } else if (exponent == 15 && mantissa == 7) {
    magnitude = __int_as_float(0x7fc00000);
  } else {
    magnitude = __int_as_float((int)(((exponent + 120u) << 23) | (mantissa << 20)));
  }
  return __int_as_float(__float_as_int(magnitude) | (int)sign);
}

__device__ __forceinline__ float e5m2_to_f32(unsigned int byte) {
  return __half2float(__ushort_as_half((unsigned short)(byte << 8)));
}

template <typename T>
__device__ void fp8_dequantize(const unsigned char* __restrict__ q, T* __restrict__ out,
                               long long n, float scale, int format) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const unsigned int byte = q[i];
    const float v = format == 0 ? e4m3_to_f32(byte) : e5m2_to_f32(byte);
    out[i] = from_f32<T>(v * scale);
  }
}

#define FP8(T, NAME)                                                                          \
  extern "C" __global__ void fp8_dequantize_##NAME(const unsigned char* q, T* out,            \
                                                   long long n, float scale, int format) {    \
    fp8_dequantize<T>(q, out, n, scale, format);                                              \
  }

FP8(float, f32)
FP8(__nv_bfloat16, bf16)
FP8(__half, f16)

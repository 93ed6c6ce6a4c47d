// Fused RMS norm (no weight) + AdaLN modulation of the LTX-2 transformer blocks:
//   y = x / sqrt(mean(x^2) + eps) * (1 + scale) + shift
// x is [rows, cols] contiguous with rows = batch * tokens; scale and shift are [batch, tokens,
// cols] views addressed by (batch stride, token stride) with unit column stride, so per-token,
// per-batch and broadcast modulations (stride 0) all work without a copy. One block per row,
// float accumulation, one rounding per output element.
#include "common.cuh"

template <typename T>
__device__ void rms_norm_modulate(const T* __restrict__ x, const T* __restrict__ scale,
                                  const T* __restrict__ shift, T* __restrict__ y, int cols,
                                  int tokens, long long scale_sb, long long scale_st,
                                  long long shift_sb, long long shift_st, float eps) {
  __shared__ float shared[32];
  const long long row = blockIdx.x;
  const long long b = row / tokens;
  const long long t = row % tokens;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  const T* sc = scale + b * scale_sb + t * scale_st;
  const T* sh = shift + b * shift_sb + t * shift_st;
  float sum = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = to_f32(xr[c]);
    sum += v * v;
  }
  sum = block_sum(sum, shared);
  const float m = sqrtf(sum / (float)cols + eps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float n = to_f32(xr[c]) / m;
    yr[c] = from_f32<T>(n * (to_f32(sc[c]) + 1.0f) + to_f32(sh[c]));
  }
}

#define RMS_NORM_MODULATE(T, NAME)                                                           \
  extern "C" __global__ void rms_norm_modulate_##NAME(                                       \
      const T* x, const T* scale, const T* shift, T* y, int cols, int tokens,                \
      long long scale_sb, long long scale_st, long long shift_sb, long long shift_st,        \
      float eps) {                                                                           \
    rms_norm_modulate<T>(x, scale, shift, y, cols, tokens, scale_sb, scale_st, shift_sb,     \
                         shift_st, eps);                                                     \
  }

RMS_NORM_MODULATE(float, f32)
RMS_NORM_MODULATE(__nv_bfloat16, bf16)
RMS_NORM_MODULATE(__half, f16)

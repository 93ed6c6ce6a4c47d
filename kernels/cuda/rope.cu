// Rotary position embedding application (ltx-core's apply_split_rotary_emb /
// apply_interleaved_rotary_emb) on x [batch, tokens, dim] contiguous. cos/sin are views
// addressed by (batch stride, token stride) with the per-token part contiguous; batch stride 0
// broadcasts one table over the batch. One thread per rotated pair, float math.
#include "common.cuh"

// Split pairing: dim = heads * 2 * half; channel j of a head pairs with channel j + half;
// cos/sin per token are [heads, half].
template <typename T>
__device__ void rope_split(const T* __restrict__ x, const T* __restrict__ cos,
                           const T* __restrict__ sin, T* __restrict__ y, long long pairs,
                           int tokens, int heads, int half, long long cos_sb, long long cos_st,
                           long long sin_sb, long long sin_st) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= pairs) return;
  const long long j = i % half;
  const long long h = (i / half) % heads;
  const long long bt = i / ((long long)half * heads);
  const long long b = bt / tokens;
  const long long t = bt % tokens;
  const long long xo = bt * heads * 2 * half + h * 2 * half + j;
  const long long f = h * half + j;
  const float c = to_f32(cos[b * cos_sb + t * cos_st + f]);
  const float s = to_f32(sin[b * sin_sb + t * sin_st + f]);
  const float x1 = to_f32(x[xo]);
  const float x2 = to_f32(x[xo + half]);
  y[xo] = from_f32<T>(x1 * c - x2 * s);
  y[xo + half] = from_f32<T>(x2 * c + x1 * s);
}

// Interleaved pairing: channels (2k, 2k+1) rotate together; cos/sin per token are [dim] (each
// angle repeated twice).
template <typename T>
__device__ void rope_interleaved(const T* __restrict__ x, const T* __restrict__ cos,
                                 const T* __restrict__ sin, T* __restrict__ y, long long pairs,
                                 int tokens, int dim, long long cos_sb, long long cos_st,
                                 long long sin_sb, long long sin_st) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= pairs) return;
  const int half_dim = dim / 2;
  const long long k = i % half_dim;
  const long long bt = i / half_dim;
  const long long b = bt / tokens;
  const long long t = bt % tokens;
  const long long xo = bt * dim + 2 * k;
  const T* cr = cos + b * cos_sb + t * cos_st + 2 * k;
  const T* sr = sin + b * sin_sb + t * sin_st + 2 * k;
  const float x0 = to_f32(x[xo]);
  const float x1 = to_f32(x[xo + 1]);
  y[xo] = from_f32<T>(x0 * to_f32(cr[0]) - x1 * to_f32(sr[0]));
  y[xo + 1] = from_f32<T>(x1 * to_f32(cr[1]) + x0 * to_f32(sr[1]));
}

#define ROPE(T, NAME)                                                                         \
  extern "C" __global__ void rope_split_##NAME(                                               \
      const T* x, const T* cos, const T* sin, T* y, long long pairs, int tokens, int heads,   \
      int half, long long cos_sb, long long cos_st, long long sin_sb, long long sin_st) {     \
    rope_split<T>(x, cos, sin, y, pairs, tokens, heads, half, cos_sb, cos_st, sin_sb,         \
                  sin_st);                                                                    \
  }                                                                                           \
  extern "C" __global__ void rope_interleaved_##NAME(                                         \
      const T* x, const T* cos, const T* sin, T* y, long long pairs, int tokens, int dim,     \
      long long cos_sb, long long cos_st, long long sin_sb, long long sin_st) {               \
    rope_interleaved<T>(x, cos, sin, y, pairs, tokens, dim, cos_sb, cos_st, sin_sb, sin_st);  \
  }

ROPE(float, f32)
ROPE(__nv_bfloat16, bf16)
ROPE(__half, f16)

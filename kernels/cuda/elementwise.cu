// Fused element-wise pieces of the LTX-2 transformer, each one pass over memory instead of two:
//  * bias_gelu: y = gelu_tanh(x + bias) (feed-forward `net.0.proj` + GELU),
//  * add_gated: out = x + y * gate (the gated residual of attention and feed-forward outputs).
// One thread per element, float math, one rounding.
#include "common.cuh"

// sqrt(2 / pi), as candle's gelu uses it.
#define SQRT_TWO_OVER_PI 0.79788456080286535587989211986876373f

// x [rows, cols] contiguous, bias [cols].
template <typename T>
__device__ void bias_gelu(const T* __restrict__ x, const T* __restrict__ bias,
                          T* __restrict__ y, long long n, int cols) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = to_f32(x[i]) + to_f32(bias[i % cols]);
  const float inner = SQRT_TWO_OVER_PI * v * (1.0f + 0.044715f * v * v);
  y[i] = from_f32<T>(0.5f * v * (1.0f + tanhf(inner)));
}

// x, y [batch, tokens, cols] contiguous; gate a view addressed by (batch stride, token stride)
// with unit column stride (stride 0 broadcasts).
template <typename T>
__device__ void add_gated(const T* __restrict__ x, const T* __restrict__ y,
                          const T* __restrict__ gate, T* __restrict__ out, long long n, int cols,
                          int tokens, long long gate_sb, long long gate_st) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const long long c = i % cols;
  const long long bt = i / cols;
  const long long b = bt / tokens;
  const long long t = bt % tokens;
  const float g = to_f32(gate[b * gate_sb + t * gate_st + c]);
  out[i] = from_f32<T>(to_f32(x[i]) + to_f32(y[i]) * g);
}

#define ELEMENTWISE(T, NAME)                                                                  \
  extern "C" __global__ void bias_gelu_##NAME(const T* x, const T* bias, T* y, long long n,   \
                                              int cols) {                                     \
    bias_gelu<T>(x, bias, y, n, cols);                                                        \
  }                                                                                           \
  extern "C" __global__ void add_gated_##NAME(const T* x, const T* y, const T* gate, T* out,  \
                                              long long n, int cols, int tokens,              \
                                              long long gate_sb, long long gate_st) {         \
    add_gated<T>(x, y, gate, out, n, cols, tokens, gate_sb, gate_st);                         \
  }

ELEMENTWISE(float, f32)
ELEMENTWISE(__nv_bfloat16, bf16)
ELEMENTWISE(__half, f16)

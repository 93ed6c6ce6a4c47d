//! Bit-exact emulation of PyTorch's CPU random generator for `torch.randn` (float32).
//!
//! `torch.manual_seed(seed)` / `torch.Generator().manual_seed(seed)` seed an MT19937 engine with
//! the low 32 bits of the seed and clear the cached normal sample. `torch.randn(shape)` into a
//! contiguous float32 tensor of `n` elements then draws:
//! * `n >= 16`: `n` uniforms `u = (next_u32 & 0xFFFFFF) * 2^-24`, then Box-Muller over blocks of
//!   16 (`u[j]` gives the radius, `u[j + 8]` the angle; outputs `j` (cos) and `j + 8` (sin)); when
//!   `n % 16 != 0` the last 16 outputs are recomputed from 16 fresh uniforms. The AVX2 kernel
//!   (x86-64 CPUs with AVX2 or AVX-512) evaluates log/sin/cos with the `avx_mathfun` polynomials in
//!   float; the default (scalar) kernel uses libm `logf`/`cosf`/`sinf` with the angle computed in
//!   double then rounded to float.
//! * `n < 16`: one double-precision Box-Muller normal per element from two 53-bit uniforms
//!   (`random64`), `r = sqrt(-2 log1p(-u2))`, `theta = 2 pi u1`, returning `r cos theta` and
//!   caching `r sin theta` in the generator for the next scalar draw (the cache survives across
//!   `randn` calls until the generator is re-seeded).

mod avx_math;
mod mt19937;

pub use mt19937::Mt19937;

/// Which CPU kernel of `normal_` to emulate (they differ in the last bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormalKernel {
    /// `normal_fill_AVX2`: x86-64 PyTorch on CPUs with AVX2 (also chosen on AVX-512 CPUs).
    #[default]
    Avx2,
    /// `normal_fill` (scalar): CPUs without AVX2 (and `ATEN_CPU_CAPABILITY=default`).
    Scalar,
}

/// PyTorch's CPU generator (`CPUGeneratorImpl`) as far as `randn` uses it.
#[derive(Debug, Clone)]
pub struct TorchGenerator {
    engine: Mt19937,
    next_double_normal: Option<f64>,
    kernel: NormalKernel,
}

const BLOCK: usize = 16;
const HALF_BLOCK: usize = 8;

impl TorchGenerator {
    /// A generator seeded like `torch.manual_seed(seed)` (AVX2 kernel).
    pub fn manual_seed(seed: u64) -> Self {
        Self::with_kernel(seed, NormalKernel::Avx2)
    }

    /// A generator seeded with `seed` that emulates the given `normal_` kernel.
    pub fn with_kernel(seed: u64, kernel: NormalKernel) -> Self {
        Self {
            engine: Mt19937::new(seed),
            next_double_normal: None,
            kernel,
        }
    }

    /// `torch.randn(n, dtype=float32, generator=self)` as a flat vector (row-major order of any
    /// contiguous shape with `n` elements).
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n < BLOCK {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for start in (0..=n - BLOCK).step_by(BLOCK) {
            self.box_muller_16(&mut data[start..start + BLOCK]);
        }
        if !n.is_multiple_of(BLOCK) {
            let tail = &mut data[n - BLOCK..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            self.box_muller_16(tail);
        }
        data
    }

    /// A float uniform in [0, 1) with 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (self.engine.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// A double uniform in [0, 1) with 53 random bits (from `random64`: first draw high word).
    fn uniform_f64(&mut self) -> f64 {
        let hi = self.engine.next_u32() as u64;
        let lo = self.engine.next_u32() as u64;
        let bits = ((hi << 32) | lo) & ((1u64 << 53) - 1);
        bits as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `at::normal_distribution<double>(0, 1)` with the generator's cached second sample.
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    fn box_muller_16(&self, block: &mut [f32]) {
        match self.kernel {
            NormalKernel::Avx2 => box_muller_16_avx2(block),
            NormalKernel::Scalar => box_muller_16_scalar(block),
        }
    }
}

/// `normal_fill_16_AVX2` with mean 0 and std 1.
fn box_muller_16_avx2(block: &mut [f32]) {
    let two_pi = (2.0f32 as f64 * std::f64::consts::PI) as f32;
    for j in 0..HALF_BLOCK {
        let u1 = 1.0 - block[j];
        let u2 = block[j + HALF_BLOCK];
        let radius = (-2.0 * avx_math::log(u1)).sqrt();
        let (sin, cos) = avx_math::sincos(two_pi * u2);
        block[j] = radius * cos;
        block[j + HALF_BLOCK] = radius * sin;
    }
}

/// `normal_fill_16<float>` with mean 0 and std 1.
fn box_muller_16_scalar(block: &mut [f32]) {
    for j in 0..HALF_BLOCK {
        let u1 = 1.0 - block[j];
        let u2 = block[j + HALF_BLOCK];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = (2.0f32 as f64 * std::f64::consts::PI * u2 as f64) as f32;
        block[j] = radius * theta.cos();
        block[j + HALF_BLOCK] = radius * theta.sin();
    }
}

#[cfg(test)]
pub(crate) mod tests;

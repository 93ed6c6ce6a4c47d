//! Scalar emulation of the `log256_ps` / `sincos256_ps` polynomials (Cephes-derived, from
//! `avx_mathfun.h`) that PyTorch's AVX2 normal kernel uses, lane by lane and bit for bit.
//!
//! The operation order follows the C source; multiplications whose only use is an addition are
//! fused (`f32::mul_add`) exactly where GCC contracts them when PyTorch's AVX2 kernels are
//! built with FMA enabled (each product fused into its first add/sub user, in source order).

// The constants are the C source's double literals rounded to float, as `_mm256_set1_ps` does.
const MIN_NORM_POS: f32 = f32::from_bits(0x0080_0000);
const SQRTHF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32;
const LOG_P: [f32; 9] = [
    7.037_683_629_2E-2_f64 as f32,
    -1.151_461_031_0E-1_f64 as f32,
    1.167_699_874_0E-1_f64 as f32,
    -1.242_014_084_6E-1_f64 as f32,
    1.424_932_278_7E-1_f64 as f32,
    -1.666_805_766_5E-1_f64 as f32,
    2.000_071_476_5E-1_f64 as f32,
    -2.499_999_399_3E-1_f64 as f32,
    3.333_333_117_4E-1_f64 as f32,
];
const LOG_Q1: f32 = -2.121_944_40e-4_f64 as f32;
const LOG_Q2: f32 = 0.693_359_375_f64 as f32;

const MINUS_DP1: f32 = -0.785_156_25_f64 as f32;
const MINUS_DP2: f32 = -2.418_756_484_985_351_6e-4_f64 as f32;
const MINUS_DP3: f32 = -3.774_894_977_445_941e-8_f64 as f32;
const SINCOF: [f32; 3] = [
    -1.951_529_589_1E-4_f64 as f32,
    8.332_160_873_6E-3_f64 as f32,
    -1.666_665_461_1E-1_f64 as f32,
];
const COSCOF: [f32; 3] = [
    2.443_315_711_809_948E-005_f64 as f32,
    -1.388_731_625_493_765E-003_f64 as f32,
    4.166_664_568_298_827E-002_f64 as f32,
];
const FOPI: f32 = 1.273_239_544_735_16_f64 as f32;

/// `log256_ps` for one lane (natural logarithm; NaN for `x <= 0`).
pub fn log(x: f32) -> f32 {
    let invalid = x <= 0.0;
    let x = x.max(MIN_NORM_POS);
    let exponent_bits = (x.to_bits() >> 23) as i32;
    // keep the mantissa, force the exponent of 0.5
    let mut x = f32::from_bits((x.to_bits() & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = (exponent_bits - 0x7f) as f32 + 1.0;
    let below = x < SQRTHF;
    let tmp = if below { x } else { 0.0 };
    x -= 1.0;
    e -= if below { 1.0 } else { 0.0 };
    x += tmp;

    let z = x * x;
    let mut y = LOG_P[0];
    for &p in &LOG_P[1..] {
        y = y.mul_add(x, p);
    }
    y *= x;
    y = y.mul_add(z, e * LOG_Q1);
    y -= z * 0.5;
    let x = e.mul_add(LOG_Q2, x + y);
    if invalid { f32::NAN } else { x }
}

/// `sincos256_ps` for one lane: `(sin x, cos x)`.
pub fn sincos(x: f32) -> (f32, f32) {
    let mut sign_sin = x.to_bits() & 0x8000_0000;
    let x = x.abs();
    let j = (((x * FOPI) as i32).wrapping_add(1)) & !1;
    let y = j as f32;
    let swap_sin = ((j & 4) as u32) << 29;
    let poly_mask = j & 2 == 0;
    let x = y.mul_add(MINUS_DP1, x);
    let x = y.mul_add(MINUS_DP2, x);
    let x = y.mul_add(MINUS_DP3, x);
    let sign_cos = ((!(j.wrapping_sub(2)) & 4) as u32) << 29;
    sign_sin ^= swap_sin;

    let z = x * x;
    let mut c = COSCOF[0].mul_add(z, COSCOF[1]);
    c = c.mul_add(z, COSCOF[2]);
    c *= z;
    c = c.mul_add(z, -(z * 0.5));
    c += 1.0;

    let mut s = SINCOF[0].mul_add(z, SINCOF[1]);
    s = s.mul_add(z, SINCOF[2]);
    s *= z;
    s = s.mul_add(x, x);

    // select with masks and adds, as the vector code does (this fixes the signs of zeros)
    let (sin_from_s, sin_from_c) = if poly_mask { (s, 0.0) } else { (0.0, c) };
    let sin = sin_from_c + sin_from_s;
    let cos = (c - sin_from_c) + (s - sin_from_s);
    (
        f32::from_bits(sin.to_bits() ^ sign_sin),
        f32::from_bits(cos.to_bits() ^ sign_cos),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_close_to_libm() {
        for i in 1..=1000 {
            let x = i as f32 / 1000.0;
            let (a, b) = (log(x), x.ln());
            assert!(
                (a - b).abs() <= 2e-7 * b.abs().max(1.0),
                "log({x}) = {a} vs {b}"
            );
        }
        assert!(log(0.0).is_nan());
    }

    #[test]
    fn sincos_is_close_to_libm() {
        for i in 0..=1000 {
            let x = i as f32 * std::f32::consts::TAU / 1000.0;
            let (s, c) = sincos(x);
            assert!((s - x.sin()).abs() < 1e-6, "sin({x}) = {s} vs {}", x.sin());
            assert!((c - x.cos()).abs() < 1e-6, "cos({x}) = {c} vs {}", x.cos());
        }
    }
}

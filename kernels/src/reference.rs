//! The CPU references of every kernel: plain Rust on `f32` values, written to compute exactly
//! what candle's op chains compute in `f32` (same formulas, same operation order, sequential
//! sums), so they are bit-exact oracles for the model's unfused path in `f32` and the
//! specification the CUDA kernels are tested against. Half-precision callers convert to `f32`
//! before and round once after, as the kernels do.

/// `sqrt(2/π)` as candle's tanh-GELU uses it.
pub const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;

/// One row of `x / sqrt(mean(x²) + eps) · (1 + scale) + shift` (RMS norm without weight, then
/// AdaLN modulation). All slices have the row's length.
pub fn rms_norm_modulate(x: &[f32], scale: &[f32], shift: &[f32], eps: f32, out: &mut [f32]) {
    let sum2: f32 = x.iter().map(|&v| v * v).sum();
    let m = (sum2 / x.len() as f32 + eps).sqrt();
    for (((o, &v), &s), &h) in out.iter_mut().zip(x).zip(scale).zip(shift) {
        *o = v / m * (s + 1.0) + h;
    }
}

/// Split RoPE of one head: `x` is `[x1 (half) | x2 (half)]`, `cos`/`sin` have `half` values;
/// `out1 = x1·cos − x2·sin`, `out2 = x2·cos + x1·sin`.
pub fn rope_split_head(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = cos.len();
    let (x1, x2) = x.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    for j in 0..half {
        o1[j] = x1[j] * cos[j] - x2[j] * sin[j];
        o2[j] = x2[j] * cos[j] + x1[j] * sin[j];
    }
}

/// Interleaved RoPE of one token: channels `(2k, 2k+1)` rotate together; `cos`/`sin` have one
/// value per channel. `out[2k] = x[2k]·cos[2k] − x[2k+1]·sin[2k]`,
/// `out[2k+1] = x[2k+1]·cos[2k+1] + x[2k]·sin[2k+1]`.
pub fn rope_interleaved_token(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    for k in 0..x.len() / 2 {
        let (a, b) = (x[2 * k], x[2 * k + 1]);
        out[2 * k] = a * cos[2 * k] - b * sin[2 * k];
        out[2 * k + 1] = b * cos[2 * k + 1] + a * sin[2 * k + 1];
    }
}

/// The tanh approximation of GELU, in candle's operation order.
pub fn gelu_tanh(v: f32) -> f32 {
    0.5 * v * (1.0 + f32::tanh(SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)))
}

/// `gelu_tanh(x + bias)`.
pub fn bias_gelu(x: f32, bias: f32) -> f32 {
    gelu_tanh(x + bias)
}

/// `x + y · gate`.
pub fn add_gated(x: f32, y: f32, gate: f32) -> f32 {
    x + y * gate
}

/// Decodes one OCP E4M3 byte (`float8_e4m3fn`): bias 7, no infinities, `S.1111.111` is NaN,
/// exponent 0 holds the subnormals `m/8 · 2⁻⁶`.
pub fn e4m3_to_f32(byte: u8) -> f32 {
    let negative = byte & 0x80 != 0;
    let exponent = u32::from((byte >> 3) & 0x0f);
    let mantissa = u32::from(byte & 0x07);
    let magnitude = match (exponent, mantissa) {
        (15, 7) => f32::NAN,
        (0, m) => m as f32 * 2f32.powi(-9),
        (e, m) => f32::from_bits(((e + 120) << 23) | (m << 20)),
    };
    if negative { -magnitude } else { magnitude }
}

/// Decodes one OCP E5M2 byte (`float8_e5m2`): the upper byte of an IEEE half.
pub fn e5m2_to_f32(byte: u8) -> f32 {
    half::f16::from_bits(u16::from(byte) << 8).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_landmarks() {
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(e4m3_to_f32(0x08), 2f32.powi(-6));
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(e4m3_to_f32(0xfe), -448.0);
        assert!(e4m3_to_f32(0x7f).is_nan() && e4m3_to_f32(0xff).is_nan());
        assert!(e4m3_to_f32(0x80) == 0.0 && e4m3_to_f32(0x80).is_sign_negative());
    }

    #[test]
    fn e5m2_landmarks() {
        assert_eq!(e5m2_to_f32(0x3c), 1.0);
        assert_eq!(e5m2_to_f32(0x7c), f32::INFINITY);
        assert!(e5m2_to_f32(0x7d).is_nan());
    }

    #[test]
    fn rms_norm_modulate_normalises_then_modulates() {
        let x = [3.0f32, 4.0];
        let mut out = [0.0; 2];
        rms_norm_modulate(&x, &[1.0, 0.0], &[0.5, -0.5], 0.0, &mut out);
        let m = 12.5f32.sqrt();
        assert_eq!(out, [3.0 / m * 2.0 + 0.5, 4.0 / m - 0.5]);
    }

    #[test]
    fn rope_rotates_by_the_angle() {
        let (c, s) = (0.6f32, 0.8f32);
        let mut out = [0.0; 2];
        rope_split_head(&[1.0, 0.0], &[c], &[s], &mut out);
        assert_eq!(out, [c, s]);
        rope_interleaved_token(&[1.0, 0.0], &[c, c], &[s, s], &mut out);
        assert_eq!(out, [c, s]);
    }

    #[test]
    fn gelu_tanh_landmarks() {
        assert_eq!(
            SQRT_TWO_OVER_PI,
            (2.0f64 / std::f64::consts::PI).sqrt() as f32
        );
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert!(gelu_tanh(-10.0).abs() < 1e-6);
        assert_eq!(bias_gelu(0.5, 0.5), gelu_tanh(1.0));
    }
}

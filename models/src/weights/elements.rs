//! Decoders for the narrow element types that quantised checkpoints store as single bytes.
//!
//! safetensors has no dtype for FP4, and ComfyUI's own reader does not accept `F8_E8M0`, so the
//! quantised formats keep E2M1 codes and E8M0 exponents in `U8` tensors (and sometimes E4M3 block
//! scales too); the loader reinterprets the bytes. Every value of these types is exact in F32,
//! so each decoder is a pure function of the byte and the 256-entry tables built from them
//! decode a whole tensor with one `index_select`.

/// Decodes one OCP E4M3 byte (torch `float8_e4m3fn`, safetensors `F8_E4M3`).
///
/// Bias 7, no infinities; `S.1111.111` is NaN; exponent 0 holds the subnormals `m/8 · 2^-6`.
pub fn e4m3_to_f32(byte: u8) -> f32 {
    let sign = if byte & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let exponent = i32::from((byte >> 3) & 0x0f);
    let mantissa = f32::from(byte & 0x07);
    match exponent {
        15 if mantissa == 7.0 => f32::NAN.copysign(sign),
        0 => sign * (mantissa / 8.0) * 2f32.powi(-6),
        _ => sign * (1.0 + mantissa / 8.0) * 2f32.powi(exponent - 7),
    }
}

/// Decodes one OCP E5M2 byte (torch `float8_e5m2`, safetensors `F8_E5M2`).
///
/// E5M2 is the upper byte of an IEEE half, infinities and NaN included.
pub fn e5m2_to_f32(byte: u8) -> f32 {
    half::f16::from_bits(u16::from(byte) << 8).to_f32()
}

/// Decodes one 4-bit E2M1 code (NVFP4 element); only the low nibble of `code` is read.
///
/// Magnitudes `0, 0.5, 1, 1.5, 2, 3, 4, 6`; bit 3 is the sign (code 8 is −0).
pub fn e2m1_to_f32(code: u8) -> f32 {
    const MAGNITUDES: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let magnitude = MAGNITUDES[usize::from(code & 0x07)];
    if code & 0x08 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Decodes one E8M0 scale byte (MXFP8 block scale) as comfy-kitchen does: `2^(e−127)`, with
/// `e = 0` read as 0.0 and `e = 255` as +inf (the byte shifted into an F32's exponent field).
pub fn e8m0_to_f32(byte: u8) -> f32 {
    f32::from_bits(u32::from(byte) << 23)
}

/// The value of every byte under `decode`, indexed by the byte.
pub fn byte_table(decode: impl Fn(u8) -> f32) -> Vec<f32> {
    (0..=255u8).map(decode).collect()
}

/// The E2M1 value of the high nibble of every byte (the even element of an NVFP4 pair).
pub fn high_nibble_table() -> Vec<f32> {
    byte_table(|byte| e2m1_to_f32(byte >> 4))
}

/// The E2M1 value of the low nibble of every byte (the odd element of an NVFP4 pair).
pub fn low_nibble_table() -> Vec<f32> {
    byte_table(|byte| e2m1_to_f32(byte & 0x0f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_landmarks() {
        assert_eq!(e4m3_to_f32(0x00), 0.0);
        assert!(e4m3_to_f32(0x80).is_sign_negative());
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(e4m3_to_f32(0x07), 7.0 * 2f32.powi(-9));
        assert_eq!(e4m3_to_f32(0x08), 2f32.powi(-6));
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(e4m3_to_f32(0xfe), -448.0);
        assert!(e4m3_to_f32(0x7f).is_nan());
        assert!(e4m3_to_f32(0xff).is_nan());
        assert_eq!(e4m3_to_f32(0x78), 256.0);
    }

    #[test]
    fn e5m2_landmarks() {
        assert_eq!(e5m2_to_f32(0x3c), 1.0);
        assert_eq!(e5m2_to_f32(0x7b), 57344.0);
        assert_eq!(e5m2_to_f32(0x7c), f32::INFINITY);
        assert_eq!(e5m2_to_f32(0xfc), f32::NEG_INFINITY);
        assert!(e5m2_to_f32(0x7d).is_nan());
        assert_eq!(e5m2_to_f32(0x01), 2f32.powi(-16));
    }

    #[test]
    fn e2m1_and_nibbles() {
        let values: Vec<f32> = (0..16).map(e2m1_to_f32).collect();
        assert_eq!(&values[..8], &[0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
        assert_eq!(&values[9..], &[-0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]);
        assert!(values[8] == 0.0 && values[8].is_sign_negative());
        assert_eq!(high_nibble_table()[0x71], 6.0);
        assert_eq!(low_nibble_table()[0x71], 0.5);
    }

    #[test]
    fn e8m0_extremes() {
        assert_eq!(e8m0_to_f32(0), 0.0);
        assert_eq!(e8m0_to_f32(1), 2f32.powi(-126));
        assert_eq!(e8m0_to_f32(127), 1.0);
        assert_eq!(e8m0_to_f32(254), 2f32.powi(127));
        assert_eq!(e8m0_to_f32(255), f32::INFINITY);
    }
}

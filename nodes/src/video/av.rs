//! The FFmpeg glue shared by the video encoder, decoder and remuxer: one-time library set-up,
//! FFmpeg errors as [`NodeError`]s, and the frame-rate arithmetic ComfyUI applies when saving.

use std::path::Path;
use std::sync::OnceLock;

use ffmpeg_next as ffmpeg;

use crate::error::NodeError;
use crate::value::FrameRate;

/// Initialises FFmpeg once per process (and keeps its logging to errors only: FFmpeg's info
/// lines go to stderr, which would interleave with the server's own logs).
pub fn init() -> Result<(), NodeError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        let result = ffmpeg::init().map_err(|e| e.to_string());
        ffmpeg::log::set_level(ffmpeg::log::Level::Error);
        result
    })
    .clone()
    .map_err(|e| NodeError::Runtime(format!("initialising FFmpeg: {e}")))
}

/// Maps an FFmpeg error to a [`NodeError::Runtime`] that says what was being done.
pub fn fail(context: impl Into<String>) -> impl FnOnce(ffmpeg::Error) -> NodeError {
    let context = context.into();
    move |e| NodeError::Runtime(format!("{context}: {e}"))
}

/// The error for a file FFmpeg cannot read as a video (missing, corrupt, not a media file).
pub fn unreadable(path: &Path) -> impl FnOnce(ffmpeg::Error) -> NodeError + '_ {
    move |e| NodeError::Value(format!("cannot read video file {}: {e}", path.display()))
}

/// The frame rate written to a file: `Fraction(round(frame_rate * 1000), 1000)` as ComfyUI's
/// `VideoFromComponents.save_to` does (Python rounds halves to even), reduced.
pub fn save_rate(rate: FrameRate) -> Result<ffmpeg::Rational, NodeError> {
    if rate.den == 0 {
        return Err(NodeError::Value("frame rate has a zero denominator".into()));
    }
    let scaled = rate.num as u128 * 1000;
    let den = rate.den as u128;
    let (quotient, remainder) = (scaled / den, scaled % den);
    let rounded = match (2 * remainder).cmp(&den) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal => quotient + (quotient % 2),
    };
    if rounded == 0 {
        return Err(NodeError::Value(format!(
            "frame rate {}/{} rounds to 0 fps",
            rate.num, rate.den
        )));
    }
    let num = i32::try_from(rounded).map_err(|_| {
        NodeError::Value(format!("frame rate {}/{} is too high", rate.num, rate.den))
    })?;
    Ok(reduce(num, 1000))
}

/// `num/den` in lowest terms.
pub fn reduce(num: i32, den: i32) -> ffmpeg::Rational {
    let g = gcd(num.unsigned_abs(), den.unsigned_abs()).max(1) as i32;
    ffmpeg::Rational::new(num / g, den / g)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A stream's average frame rate as ComfyUI reads it (`Fraction(average_rate)`, 1 when unknown).
pub fn frame_rate_of(rate: ffmpeg::Rational) -> FrameRate {
    match (
        u32::try_from(rate.numerator()),
        u32::try_from(rate.denominator()),
    ) {
        (Ok(num), Ok(den)) if num > 0 && den > 0 => {
            let r = reduce(num as i32, den as i32);
            FrameRate {
                num: r.numerator() as u32,
                den: r.denominator() as u32,
            }
        }
        _ => FrameRate { num: 1, den: 1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(num: u32, den: u32) -> FrameRate {
        FrameRate { num, den }
    }

    #[test]
    fn save_rate_rounds_to_thousandths_like_python() {
        assert_eq!(
            save_rate(rate(24, 1)).unwrap(),
            ffmpeg::Rational::new(24, 1)
        );
        assert_eq!(
            save_rate(rate(25, 1)).unwrap(),
            ffmpeg::Rational::new(25, 1)
        );
        assert_eq!(
            save_rate(rate(30000, 1001)).unwrap(),
            ffmpeg::Rational::new(2997, 100)
        );
        assert_eq!(
            save_rate(rate(23976, 1000)).unwrap(),
            ffmpeg::Rational::new(2997, 125)
        );
        // 1/2000 fps * 1000 = 0.5 -> rounds half to even (0) -> refused.
        assert!(save_rate(rate(1, 2000)).is_err());
        // 3/2000 * 1000 = 1.5 -> 2.
        assert_eq!(
            save_rate(rate(3, 2000)).unwrap(),
            ffmpeg::Rational::new(1, 500)
        );
    }

    #[test]
    fn frame_rates_are_reduced_and_default_to_one() {
        assert_eq!(frame_rate_of(ffmpeg::Rational::new(50, 2)), rate(25, 1));
        assert_eq!(frame_rate_of(ffmpeg::Rational::new(0, 1)), rate(1, 1));
        assert_eq!(
            frame_rate_of(ffmpeg::Rational::new(24000, 1001)),
            rate(24000, 1001)
        );
    }
}

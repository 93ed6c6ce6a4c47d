//! Pixel conversions between ComfyUI `IMAGE` frames (`[H, W, C]` f32 in 0..1) and FFmpeg video
//! frames, through swscale with explicit colour matrices (what PyAV's `VideoFrame.reformat` does).

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;

use super::av::fail;
use crate::error::NodeError;

/// swscale's colour-matrix index for an FFmpeg colour space (the `SWS_CS_*` table is indexed
/// by the `AVColorSpace` value; anything unknown selects swscale's default, BT.601).
fn sws_matrix(space: ffmpeg::color::Space) -> i32 {
    let raw: ffmpeg::ffi::AVColorSpace = space.into();
    let index = raw as i32;
    if (0..=10).contains(&index) && index != 8 {
        index
    } else {
        ffmpeg::ffi::SWS_CS_DEFAULT
    }
}

/// A swscale context with its colour matrices set (swscale ignores the range of RGB sides).
pub struct Scaler {
    ctx: scaling::Context,
}

impl Scaler {
    fn new(
        src: (Pixel, u32, u32),
        dst: (Pixel, u32, u32),
        src_matrix: i32,
        src_full_range: bool,
        dst_matrix: i32,
        dst_full_range: bool,
    ) -> Result<Self, NodeError> {
        let mut ctx = scaling::Context::get(
            src.0,
            src.1,
            src.2,
            dst.0,
            dst.1,
            dst.2,
            scaling::Flags::BILINEAR,
        )
        .map_err(fail(format!(
            "creating a {:?} -> {:?} pixel converter",
            src.0, dst.0
        )))?;
        // SAFETY: the context pointer is valid for the lifetime of `ctx`, and the coefficient
        // tables returned by `sws_getCoefficients` are static.
        let status = unsafe {
            ffmpeg::ffi::sws_setColorspaceDetails(
                ctx.as_mut_ptr(),
                ffmpeg::ffi::sws_getCoefficients(src_matrix),
                src_full_range as i32,
                ffmpeg::ffi::sws_getCoefficients(dst_matrix),
                dst_full_range as i32,
                0,
                1 << 16,
                1 << 16,
            )
        };
        if status < 0 {
            return Err(NodeError::Runtime(format!(
                "swscale cannot convert {:?} to {:?} with the requested colour matrices",
                src.0, dst.0
            )));
        }
        Ok(Self { ctx })
    }

    /// 8-bit RGB to limited-range BT.709 YUV 4:2:0, as ComfyUI's encoder does with
    /// `frame.reformat(format="yuv420p", dst_colorspace=BT709)`.
    pub fn rgb_to_bt709(width: u32, height: u32) -> Result<Self, NodeError> {
        Self::new(
            (Pixel::RGB24, width, height),
            (Pixel::YUV420P, width, height),
            ffmpeg::ffi::SWS_CS_DEFAULT,
            false,
            ffmpeg::ffi::SWS_CS_ITU709,
            false,
        )
    }

    /// A decoded frame's format to `dst` (RGB24 or RGB48), reading the frame's own colour
    /// matrix and range tags (untagged YUV is BT.601 limited range, swscale's default).
    pub fn decoded_to_rgb(frame: &VideoFrame, dst: Pixel) -> Result<Self, NodeError> {
        let full = frame.color_range() == ffmpeg::color::Range::JPEG;
        Self::new(
            (frame.format(), frame.width(), frame.height()),
            (dst, frame.width(), frame.height()),
            sws_matrix(frame.color_space()),
            full,
            ffmpeg::ffi::SWS_CS_DEFAULT,
            false,
        )
    }

    /// Whether this converter was built for frames like `frame`.
    pub fn accepts(&self, frame: &VideoFrame) -> bool {
        let input = self.ctx.input();
        (input.format, input.width, input.height) == (frame.format(), frame.width(), frame.height())
    }

    /// Converts `input` into `output` (allocated by swscale's own rules when empty).
    pub fn run(&mut self, input: &VideoFrame, output: &mut VideoFrame) -> Result<(), NodeError> {
        self.ctx
            .run(input, output)
            .map_err(fail("converting pixels"))
    }
}

/// Writes one `[H, W, C]` frame (row-major f32, `C >= 3`, first three channels used) into an
/// RGB24 frame of `width x height <= W x H` (the top-left part: odd sizes lose their last row
/// or column), quantising as ComfyUI does: `(x * 255).clamp(0, 255)` truncated to u8.
pub fn fill_rgb24(pixels: &[f32], src_width: usize, channels: usize, out: &mut VideoFrame) {
    let (width, height) = (out.width() as usize, out.height() as usize);
    let stride = out.stride(0);
    let data = out.data_mut(0);
    for y in 0..height {
        let row = &pixels[y * src_width * channels..];
        let dst = &mut data[y * stride..y * stride + width * 3];
        for x in 0..width {
            for c in 0..3 {
                dst[x * 3 + c] = (row[x * channels + c] * 255.0).clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Appends an RGB24 or RGB48 frame to `out` as f32 in 0..1 (`/255` or `/65535`), row by row.
pub fn append_rgb(frame: &VideoFrame, out: &mut Vec<f32>) {
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    let data = frame.data(0);
    match frame.format() {
        Pixel::RGB48LE => {
            for y in 0..height {
                let row = &data[y * stride..y * stride + width * 6];
                out.extend(
                    row.chunks_exact(2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]) as f32 / 65535.0),
                );
            }
        }
        _ => {
            for y in 0..height {
                let row = &data[y * stride..y * stride + width * 3];
                out.extend(row.iter().map(|&b| b as f32 / 255.0));
            }
        }
    }
}

/// Whether frames of `format` hold more than 8 bits per component (decoded as RGB48).
pub fn is_high_bit_depth(format: Pixel) -> bool {
    let Some(descriptor) = format.descriptor() else {
        return false;
    };
    let count = (descriptor.nb_components() as usize).min(4);
    // SAFETY: the descriptor points into FFmpeg's static pixel-format table, whose `comp`
    // array holds `nb_components` valid entries.
    let depths = unsafe { (*descriptor.as_ptr()).comp };
    depths[..count].iter().any(|c| c.depth > 8)
}

/// Rotates an interleaved `[H, W, 3]` image counter-clockwise by `quarter_turns * 90` degrees
/// (numpy's `rot90(img, k, axes=(0, 1))`); returns the new `(width, height)`.
pub fn rotate(
    image: &[f32],
    width: usize,
    height: usize,
    quarter_turns: u32,
) -> (Vec<f32>, usize, usize) {
    let k = quarter_turns % 4;
    let (out_w, out_h) = if k % 2 == 1 {
        (height, width)
    } else {
        (width, height)
    };
    let mut out = vec![0.0f32; image.len()];
    for y in 0..out_h {
        for x in 0..out_w {
            // Source pixel for output (y, x) under a counter-clockwise rotation.
            let (sy, sx) = match k {
                1 => (x, width - 1 - y),
                2 => (height - 1 - y, width - 1 - x),
                3 => (height - 1 - x, y),
                _ => (y, x),
            };
            let src = (sy * width + sx) * 3;
            let dst = (y * out_w + x) * 3;
            out[dst..dst + 3].copy_from_slice(&image[src..src + 3]);
        }
    }
    (out, out_w, out_h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(v: usize) -> [f32; 3] {
        [v as f32; 3]
    }

    #[test]
    fn rotation_matches_numpy_rot90() {
        // 2 rows x 3 columns: values 0..6 row-major.
        let image: Vec<f32> = (0..6).flat_map(px).collect();
        let firsts = |v: &[f32]| v.chunks(3).map(|c| c[0] as usize).collect::<Vec<_>>();
        // np.rot90([[0,1,2],[3,4,5]], 1) = [[2,5],[1,4],[0,3]]
        let (r, w, h) = rotate(&image, 3, 2, 1);
        assert_eq!((w, h), (2, 3));
        assert_eq!(firsts(&r), [2, 5, 1, 4, 0, 3]);
        // k=2: [[5,4,3],[2,1,0]]
        let (r, w, h) = rotate(&image, 3, 2, 2);
        assert_eq!((w, h), (3, 2));
        assert_eq!(firsts(&r), [5, 4, 3, 2, 1, 0]);
        // k=3: [[3,0],[4,1],[5,2]]
        let (r, _, _) = rotate(&image, 3, 2, 3);
        assert_eq!(firsts(&r), [3, 0, 4, 1, 5, 2]);
    }

    #[test]
    fn quantisation_truncates_and_clamps_like_torch_byte() {
        let mut frame = VideoFrame::new(Pixel::RGB24, 2, 1);
        let pixels = [0.999, 0.5, -1.0, 2.0, 0.25, f32::NAN];
        fill_rgb24(&pixels, 2, 3, &mut frame);
        assert_eq!(&frame.data(0)[..6], &[254, 127, 0, 255, 63, 0]);
    }
}

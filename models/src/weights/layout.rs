//! Padding and the cuBLAS "128×4" block-scale tile order shared by NVFP4 and MXFP8.
//!
//! Block scales are stored as a `[roundup(rows, 128), roundup(blocks, 4)]` tensor whose bytes
//! are in tile order, not row-major: 128-row × 4-column tiles, one after the other along the
//! columns, each tile laid out as 32 rows of 16 bytes (`(r % 32) * 16 + ((r % 128) / 32) * 4 +
//! c % 4`). See NVIDIA's cuBLAS docs, "1D block scaling factors layout", and comfy-kitchen's
//! `to_blocked`/`from_blocked`.

use crate::{Error, Result};

/// Rows of one scale tile.
pub const TILE_ROWS: usize = 128;
/// Block columns of one scale tile.
pub const TILE_COLS: usize = 4;

/// `value` rounded up to a multiple of `multiple`.
pub fn roundup(value: usize, multiple: usize) -> usize {
    value.div_ceil(multiple) * multiple
}

/// The `[rows, cols]` shape a tiled scale tensor has for `rows × blocks` scales.
pub fn tiled_scale_shape(rows: usize, blocks: usize) -> [usize; 2] {
    [roundup(rows, TILE_ROWS), roundup(blocks, TILE_COLS)]
}

/// Byte offset of the scale of `(row, block)` in a tiled tensor with `padded_blocks` columns.
pub fn tiled_offset(row: usize, block: usize, padded_blocks: usize) -> usize {
    let tiles_per_row_band = padded_blocks / TILE_COLS;
    let tile = (row / TILE_ROWS) * tiles_per_row_band + block / TILE_COLS;
    tile * TILE_ROWS * TILE_COLS
        + (row % 32) * 16
        + ((row % TILE_ROWS) / 32) * TILE_COLS
        + block % TILE_COLS
}

/// Reorders a tiled scale tensor into a row-major `rows × blocks` array, dropping the padding.
///
/// `tiled` must hold exactly `tiled_scale_shape(rows, blocks)` bytes; `what` names the tensor
/// in the error.
pub fn untile_scales(tiled: &[u8], rows: usize, blocks: usize, what: &str) -> Result<Vec<u8>> {
    let [padded_rows, padded_blocks] = tiled_scale_shape(rows, blocks);
    if tiled.len() != padded_rows * padded_blocks {
        return Err(Error::Checkpoint(format!(
            "{what}: {} scale bytes, expected {padded_rows}×{padded_blocks} for {rows} rows of \
             {blocks} blocks",
            tiled.len()
        )));
    }
    let mut out = Vec::with_capacity(rows * blocks);
    for row in 0..rows {
        for block in 0..blocks {
            out.push(tiled[tiled_offset(row, block, padded_blocks)]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse of `tiled_offset` written the way comfy-kitchen's `to_blocked` builds it:
    /// tiles in row-band-major order, inside a tile 4 bands of 32 rows interleaved.
    fn tile_row_major(scales: &[u8], rows: usize, blocks: usize) -> Vec<u8> {
        let [padded_rows, padded_blocks] = tiled_scale_shape(rows, blocks);
        let mut out = vec![0u8; padded_rows * padded_blocks];
        let mut pos = 0;
        for band in 0..padded_rows / TILE_ROWS {
            for tile_col in 0..padded_blocks / TILE_COLS {
                for r32 in 0..32 {
                    for quarter in 0..4 {
                        for c in 0..TILE_COLS {
                            let row = band * TILE_ROWS + quarter * 32 + r32;
                            let block = tile_col * TILE_COLS + c;
                            if row < rows && block < blocks {
                                out[pos] = scales[row * blocks + block];
                            }
                            pos += 1;
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn untiling_inverts_tiling_with_padding() {
        for (rows, blocks) in [(1, 1), (130, 3), (256, 10), (208, 4), (33, 2)] {
            let scales: Vec<u8> = (0..rows * blocks).map(|i| (i * 7 % 251) as u8).collect();
            let tiled = tile_row_major(&scales, rows, blocks);
            assert_eq!(untile_scales(&tiled, rows, blocks, "t").unwrap(), scales);
        }
    }

    #[test]
    fn offsets_of_the_first_tile() {
        assert_eq!(tiled_offset(0, 0, 4), 0);
        assert_eq!(tiled_offset(0, 3, 4), 3);
        assert_eq!(tiled_offset(1, 0, 4), 16);
        assert_eq!(tiled_offset(32, 0, 4), 4);
        assert_eq!(tiled_offset(127, 3, 4), 31 * 16 + 3 * 4 + 3);
        assert_eq!(tiled_offset(0, 4, 8), 512);
        assert_eq!(tiled_offset(128, 0, 8), 1024);
    }

    #[test]
    fn wrong_scale_size_is_an_error() {
        assert!(untile_scales(&[0u8; 100], 130, 3, "x.weight_scale").is_err());
    }
}

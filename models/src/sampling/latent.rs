//! Latent bookkeeping of ComfyUI's guider: packing the parts of a nested audio-video latent into
//! one flat tensor (`comfy.utils.pack_latents` / `unpack_latents`) and resizing `noise_mask`s to
//! a latent's shape (`comfy.utils.reshape_mask`).

use candle_core::{D, DType, Shape, Tensor};

use crate::{Error, Result};

/// Packs latent parts `[B, ...]` into `[B, 1, sum(numel_i / B)]` (each part flattened per batch
/// item, concatenated on the last axis) and returns their shapes for [`unpack_latents`].
pub fn pack_latents(parts: &[Tensor]) -> Result<(Tensor, Vec<Shape>)> {
    let first = parts
        .first()
        .ok_or_else(|| Error::Input("no latent parts to pack".into()))?;
    let batch = first.dim(0)?;
    let flat = parts
        .iter()
        .map(|p| {
            if p.dim(0)? != batch {
                return Err(Error::Input(format!(
                    "latent parts disagree on the batch size: {:?} vs {:?}",
                    first.dims(),
                    p.dims()
                )));
            }
            Ok(p.reshape((batch, 1, p.elem_count() / batch))?)
        })
        .collect::<Result<Vec<_>>>()?;
    let shapes = parts.iter().map(|p| p.shape().clone()).collect();
    Ok((Tensor::cat(&flat, D::Minus1)?, shapes))
}

/// Splits a packed `[B, 1, N]` tensor back into parts of the given shapes.
pub fn unpack_latents(packed: &Tensor, shapes: &[Shape]) -> Result<Vec<Tensor>> {
    let mut offset = 0;
    let mut parts = Vec::with_capacity(shapes.len());
    for shape in shapes {
        let per_item: usize = shape.dims().iter().skip(1).product();
        let part = packed.narrow(D::Minus1, offset, per_item)?;
        parts.push(part.contiguous()?.reshape(shape)?);
        offset += per_item;
    }
    if offset != packed.dim(D::Minus1)? {
        return Err(Error::Input(format!(
            "packed latent {:?} does not split into {shapes:?}",
            packed.dims()
        )));
    }
    Ok(parts)
}

/// Resizes a mask to `output` (`[B, C, *spatial]`), as ComfyUI prepares `noise_mask`s:
/// reshape to `[N, 1, ...]` (video masks of rank < 5 become `[1, 1, -1, H, W]`), linear
/// interpolation (`align_corners=False`) of the spatial axes to the output's, channels tiled up
/// to `C`, batch repeated or cut to `B`. Values stay fractional; the result is float32.
pub fn reshape_mask(mask: &Tensor, output: &Shape) -> Result<Tensor> {
    let out = output.dims();
    if out.len() < 3 {
        return Err(Error::Input(format!(
            "cannot reshape a mask to {out:?}: need [B, C, ...]"
        )));
    }
    let spatial = out.len() - 2;
    let mask = mask.to_dtype(DType::F32)?;
    let md = mask.dims();
    let mut mask = match spatial {
        1 => mask.clone(),
        2 => {
            let (h, w) = last_two(md)?;
            mask.reshape(((), 1, h, w))?
        }
        _ if md.len() < 5 => {
            let (h, w) = last_two(md)?;
            mask.reshape((1, 1, (), h, w))?
        }
        _ => mask.clone(),
    };
    if mask.rank() != out.len() {
        return Err(Error::Input(format!(
            "mask {md:?} cannot be resized to {out:?}"
        )));
    }
    for (axis, &size) in out.iter().enumerate().skip(2) {
        mask = interpolate_linear(&mask, axis, size)?;
    }
    let channels = mask.dim(1)?;
    if channels < out[1] {
        let times = out[1].div_ceil(channels);
        let mut reps = vec![1; out.len()];
        reps[1] = times;
        mask = mask.repeat(reps)?.narrow(1, 0, out[1])?;
    }
    repeat_to_batch_size(&mask, out[0])
}

fn last_two(dims: &[usize]) -> Result<(usize, usize)> {
    match dims {
        [.., h, w] => Ok((*h, *w)),
        _ => Err(Error::Input(format!("mask {dims:?} has fewer than 2 axes"))),
    }
}

/// ComfyUI's `repeat_to_batch_size` on axis 0.
pub fn repeat_to_batch_size(t: &Tensor, batch: usize) -> Result<Tensor> {
    let have = t.dim(0)?;
    if have > batch {
        Ok(t.narrow(0, 0, batch)?)
    } else if have < batch {
        let mut reps = vec![1; t.rank()];
        reps[0] = batch.div_ceil(have);
        Ok(t.repeat(reps)?.narrow(0, 0, batch)?)
    } else {
        Ok(t.clone())
    }
}

/// PyTorch's linear resampling of one axis (`align_corners=False`, float32 weights).
fn interpolate_linear(x: &Tensor, axis: usize, out_size: usize) -> Result<Tensor> {
    let in_size = x.dim(axis)?;
    if in_size == out_size {
        return Ok(x.clone());
    }
    let scale = in_size as f32 / out_size as f32;
    let mut i0 = Vec::with_capacity(out_size);
    let mut i1 = Vec::with_capacity(out_size);
    let mut w0 = Vec::with_capacity(out_size);
    let mut w1 = Vec::with_capacity(out_size);
    for dst in 0..out_size {
        let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
        let lo = (src as usize).min(in_size - 1);
        let lambda = (src - lo as f32).clamp(0.0, 1.0);
        i0.push(lo as u32);
        i1.push(if lo < in_size - 1 {
            lo as u32 + 1
        } else {
            lo as u32
        });
        w0.push(1.0 - lambda);
        w1.push(lambda);
    }
    let dev = x.device();
    let mut wshape = vec![1; x.rank()];
    wshape[axis] = out_size;
    let gather =
        |idx: Vec<u32>| -> Result<Tensor> { Ok(x.index_select(&Tensor::new(idx, dev)?, axis)?) };
    let weights =
        |w: Vec<f32>| -> Result<Tensor> { Ok(Tensor::new(w, dev)?.reshape(wshape.as_slice())?) };
    let a = gather(i0)?.broadcast_mul(&weights(w0)?)?;
    let b = gather(i1)?.broadcast_mul(&weights(w1)?)?;
    Ok((a + b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pack_and_unpack_round_trip() {
        let dev = Device::Cpu;
        let v = Tensor::arange(0f32, 24., &dev)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let a = Tensor::arange(100f32, 110., &dev)
            .unwrap()
            .reshape((2, 5))
            .unwrap();
        let (packed, shapes) = pack_latents(&[v.clone(), a.clone()]).unwrap();
        assert_eq!(packed.dims(), &[2, 1, 17]);
        let row1: Vec<f32> = packed
            .get(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(&row1[..3], &[12., 13., 14.]);
        assert_eq!(&row1[12..], &[105., 106., 107., 108., 109.]);
        let parts = unpack_latents(&packed, &shapes).unwrap();
        assert_eq!(
            parts[0].to_vec3::<f32>().unwrap(),
            v.to_vec3::<f32>().unwrap()
        );
        assert_eq!(
            parts[1].to_vec2::<f32>().unwrap(),
            a.to_vec2::<f32>().unwrap()
        );
    }

    #[test]
    fn per_frame_video_mask_is_broadcast_to_the_latent() {
        let dev = Device::Cpu;
        let mask = Tensor::new(&[0f32, 1., 0.5], &dev)
            .unwrap()
            .reshape((1, 1, 3, 1, 1))
            .unwrap();
        let out = reshape_mask(&mask, &Shape::from((2, 4, 3, 2, 5))).unwrap();
        assert_eq!(out.dims(), &[2, 4, 3, 2, 5]);
        let frame2: Vec<f32> = out
            .get(1)
            .unwrap()
            .get(3)
            .unwrap()
            .get(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(frame2.iter().all(|&v| v == 0.5));
        let frame0 = out
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(frame0.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn linear_resampling_follows_align_corners_false() {
        // torch.nn.functional.interpolate([0, 1] as [1,1,2], size=4, mode="linear")
        // = [0, 0.25, 0.75, 1]
        let dev = Device::Cpu;
        let x = Tensor::new(&[0f32, 1.], &dev)
            .unwrap()
            .reshape((1, 1, 2))
            .unwrap();
        let y: Vec<f32> = interpolate_linear(&x, 2, 4)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn audio_mask_uses_the_last_two_axes() {
        let dev = Device::Cpu;
        let mask = Tensor::ones((1, 1, 6, 16), DType::F32, &dev).unwrap();
        let out = reshape_mask(&mask, &Shape::from((1, 8, 6, 16))).unwrap();
        assert_eq!(out.dims(), &[1, 8, 6, 16]);
    }
}

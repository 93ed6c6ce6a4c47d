//! The audio VAE's front end: waveform -> log-mel spectrogram (ltx-core's `AudioProcessor`,
//! ComfyUI's `AudioPreprocessor`; both equal torchaudio's):
//!
//! * [`resample`]: band-limited sinc resampling with a Hann window (`lowpass_filter_width` 6,
//!   `rolloff` 0.99), the kernel built in float32 in PyTorch's operation order.
//! * [`MelFrontEnd`]: centred STFT (reflect padding, periodic Hann window, magnitude), a Slaney
//!   mel filterbank with Slaney area normalisation from 0 Hz to Nyquist, `log(max(mel, 1e-5))`.
//!
//! The STFT is computed in f64 (one FFT per frame) and rounded to f32, so results agree with
//! PyTorch's float32 FFT to its rounding.

use candle_core::{Device, Tensor};

use super::config::Config;
use crate::sampling::scheduler::linspace;
use crate::{Error, Result};

/// `lowpass_filter_width` of torchaudio's `resample`.
const LOWPASS_FILTER_WIDTH: f64 = 6.0;
/// `rolloff` of torchaudio's `resample`.
const ROLLOFF: f64 = 0.99;
/// Floor before the logarithm.
const LOG_FLOOR: f32 = 1e-5;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resamples one channel from `orig` Hz to `new` Hz (torchaudio `sinc_interp_hann`).
pub fn resample(wave: &[f32], orig: u32, new: u32) -> Result<Vec<f32>> {
    if orig == 0 || new == 0 {
        return Err(Error::Input("sample rates must be positive".into()));
    }
    if orig == new {
        return Ok(wave.to_vec());
    }
    let d = gcd(orig, new);
    let (orig, new) = ((orig / d) as usize, (new / d) as usize);
    let base_freq = orig.min(new) as f64 * ROLLOFF;
    let width = (LOWPASS_FILTER_WIDTH * orig as f64 / base_freq).ceil() as usize;
    let taps = 2 * width + orig;
    let kernel = sinc_kernel(orig, new, width, base_freq);
    let mut padded = vec![0f32; width + wave.len() + width + orig];
    padded[width..width + wave.len()].copy_from_slice(wave);
    let blocks = (padded.len() - taps) / orig + 1;
    let target = (new * wave.len()).div_ceil(orig);
    let mut out = Vec::with_capacity(blocks * new);
    for j in 0..blocks {
        let window = &padded[j * orig..j * orig + taps];
        for phase in kernel.chunks(taps) {
            out.push(window.iter().zip(phase).map(|(x, k)| x * k).sum());
        }
    }
    out.truncate(target);
    Ok(out)
}

/// The `[new, taps]` kernel of torchaudio's `_get_sinc_resample_kernel` (float32 arithmetic).
fn sinc_kernel(orig: usize, new: usize, width: usize, base_freq: f64) -> Vec<f32> {
    let pi = std::f64::consts::PI as f32;
    let lw = LOWPASS_FILTER_WIDTH as f32;
    let scale = (base_freq / orig as f64) as f32;
    let taps = 2 * width + orig;
    let mut kernel = Vec::with_capacity(new * taps);
    for i in 0..new {
        let offset = -(i as f32) / new as f32;
        for k in 0..taps {
            let idx = (k as f32 - width as f32) / orig as f32;
            let t = ((offset + idx) * base_freq as f32).clamp(-lw, lw);
            let window = (t * pi / lw / 2.0).cos().powi(2);
            let t = t * pi;
            let sinc = if t == 0.0 { 1.0 } else { t.sin() / t };
            kernel.push(sinc * (window * scale));
        }
    }
    kernel
}

/// Slaney's Hz -> mel (linear below 1 kHz, logarithmic above).
fn hz_to_mel(freq: f64) -> f64 {
    if freq >= 1000.0 {
        15.0 + (freq / 1000.0).ln() / (6.4f64.ln() / 27.0)
    } else {
        freq / (200.0 / 3.0)
    }
}

/// In-place radix-2 FFT of `re + i·im` (length a power of two).
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = -2.0 * std::f64::consts::PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (s, c) = (angle * k as f64).sin_cos();
                let (a, b) = (start + k, start + k + len / 2);
                let (xr, xi) = (re[b] * c - im[b] * s, re[b] * s + im[b] * c);
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
        len <<= 1;
    }
}

/// Magnitudes of the first `n/2 + 1` DFT bins of a real frame.
fn magnitudes(frame: &[f64]) -> Vec<f64> {
    let n = frame.len();
    let bins = n / 2 + 1;
    if n.is_power_of_two() {
        let mut re = frame.to_vec();
        let mut im = vec![0.0; n];
        fft(&mut re, &mut im);
        return (0..bins).map(|k| re[k].hypot(im[k])).collect();
    }
    (0..bins)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (t, x) in frame.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * t % n) as f64 / n as f64;
                re += x * a.cos();
                im += x * a.sin();
            }
            re.hypot(im)
        })
        .collect()
}

/// Waveform -> log-mel spectrogram, with the audio VAE's settings.
#[derive(Debug, Clone)]
pub struct MelFrontEnd {
    sample_rate: u32,
    n_fft: usize,
    hop: usize,
    n_mels: usize,
    window: Vec<f64>,
    /// `[n_fft/2 + 1, n_mels]`.
    filterbank: Vec<f32>,
}

impl MelFrontEnd {
    /// The front end of an audio VAE config (sample rate, FFT size, hop, mel bins).
    pub fn new(cfg: &Config) -> Result<Self> {
        let n_mels = cfg.mel_bins.unwrap_or(64);
        let n_fft = cfg.n_fft as usize;
        if n_fft < 2 || cfg.mel_hop_length == 0 {
            return Err(Error::Config(format!(
                "audio_vae: bad STFT settings (n_fft {n_fft}, hop {})",
                cfg.mel_hop_length
            )));
        }
        let window = (0..n_fft)
            .map(|i| {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n_fft as f64).cos();
                w as f32 as f64
            })
            .collect();
        Ok(Self {
            sample_rate: cfg.sample_rate,
            n_fft,
            hop: cfg.mel_hop_length as usize,
            n_mels,
            window,
            filterbank: slaney_filterbank(n_fft / 2 + 1, n_mels, cfg.sample_rate),
        })
    }

    /// The sample rate the spectrogram is computed at.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Log-mel frames `[T, n_mels]` (row-major) of one channel at [`Self::sample_rate`].
    pub fn log_mel(&self, wave: &[f32]) -> Result<Vec<f32>> {
        let pad = self.n_fft / 2;
        if wave.len() <= pad {
            return Err(Error::Input(format!(
                "audio of {} samples is too short for the {}-point STFT",
                wave.len(),
                self.n_fft
            )));
        }
        let n = wave.len();
        // Reflect padding (the edge sample is not repeated).
        let sample = |i: isize| -> f64 {
            let j = if i < 0 {
                -i
            } else if i >= n as isize {
                2 * (n as isize - 1) - i
            } else {
                i
            };
            wave[j as usize] as f64
        };
        let frames = 1 + n / self.hop;
        let bins = self.n_fft / 2 + 1;
        let mut out = Vec::with_capacity(frames * self.n_mels);
        let mut frame = vec![0f64; self.n_fft];
        for t in 0..frames {
            let start = (t * self.hop) as isize - pad as isize;
            for (k, v) in frame.iter_mut().enumerate() {
                *v = sample(start + k as isize) * self.window[k];
            }
            let mags: Vec<f32> = magnitudes(&frame).into_iter().map(|m| m as f32).collect();
            for m in 0..self.n_mels {
                let mut acc = 0f32;
                for (f, mag) in mags.iter().enumerate().take(bins) {
                    acc += mag * self.filterbank[f * self.n_mels + m];
                }
                out.push(acc.max(LOG_FLOOR).ln());
            }
        }
        Ok(out)
    }

    /// Waveform `[B, C, S]` at `rate` Hz -> log-mel `[B, C, T, n_mels]` (f32, on `device`).
    pub fn forward(&self, waveform: &Tensor, rate: u32, device: &Device) -> Result<Tensor> {
        let (b, c, _) = waveform.dims3()?;
        let rows: Vec<Vec<f32>> = waveform
            .to_device(&Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?
            .reshape((b * c, ()))?
            .to_vec2()?;
        let mut data = Vec::new();
        let mut frames = 0;
        for row in rows {
            let mel = self.log_mel(&resample(&row, rate, self.sample_rate)?)?;
            frames = mel.len() / self.n_mels;
            data.extend(mel);
        }
        Ok(Tensor::from_vec(data, (b, c, frames, self.n_mels), device)?)
    }
}

/// torchaudio's `melscale_fbanks(norm="slaney", mel_scale="slaney")` from 0 Hz to Nyquist,
/// `[n_freqs, n_mels]` in float32.
fn slaney_filterbank(n_freqs: usize, n_mels: usize, sample_rate: u32) -> Vec<f32> {
    let nyquist = (sample_rate / 2) as f32;
    let all_freqs = linspace(0.0, nyquist, n_freqs);
    let mels = linspace(
        hz_to_mel(0.0) as f32,
        hz_to_mel(sample_rate as f64 / 2.0) as f32,
        n_mels + 2,
    );
    let step = (6.4f64.ln() / 27.0) as f32;
    let freqs: Vec<f32> = mels
        .iter()
        .map(|&m| {
            if m >= 15.0 {
                1000.0 * (step * (m - 15.0)).exp()
            } else {
                (200.0f64 / 3.0) as f32 * m
            }
        })
        .collect();
    let diff: Vec<f32> = freqs.windows(2).map(|w| w[1] - w[0]).collect();
    let mut fb = vec![0f32; n_freqs * n_mels];
    for (f, &freq) in all_freqs.iter().enumerate() {
        for m in 0..n_mels {
            let down = -(freqs[m] - freq) / diff[m];
            let up = (freqs[m + 2] - freq) / diff[m + 1];
            let enorm = 2.0 / (freqs[m + 2] - freqs[m]);
            fb[f * n_mels + m] = down.min(up).max(0.0) * enorm;
        }
    }
    fb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_a_constant_and_the_length_rule() {
        let wave = vec![0.5f32; 441];
        let out = resample(&wave, 44100, 16000).unwrap();
        assert_eq!(out.len(), (16000 * 441usize).div_ceil(44100));
        // Away from the zero-padded edges a constant stays (nearly) constant.
        for v in &out[20..out.len() - 20] {
            assert!((v - 0.5).abs() < 5e-3, "{v}");
        }
        assert_eq!(resample(&wave, 16000, 16000).unwrap(), wave);
    }

    #[test]
    fn fft_matches_a_direct_dft() {
        let frame: Vec<f64> = (0..16).map(|i| ((i * 7 % 5) as f64) - 2.0).collect();
        let fast = magnitudes(&frame);
        let mut slow_frame = frame.clone();
        slow_frame.push(0.0); // 17 points: the direct DFT path
        let direct: Vec<f64> = (0..9)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (t, x) in frame.iter().enumerate() {
                    let a = -2.0 * std::f64::consts::PI * (k * t) as f64 / 16.0;
                    re += x * a.cos();
                    im += x * a.sin();
                }
                re.hypot(im)
            })
            .collect();
        for (a, b) in fast.iter().zip(&direct) {
            assert!((a - b).abs() < 1e-9);
        }
        assert_eq!(magnitudes(&slow_frame).len(), 9);
    }

    #[test]
    fn slaney_filters_are_triangles_with_unit_area_scaling() {
        let fb = slaney_filterbank(513, 64, 16000);
        for m in 0..64 {
            let column: Vec<f32> = (0..513).map(|f| fb[f * 64 + m]).collect();
            assert!(column.iter().all(|v| *v >= 0.0));
            assert!(column.iter().any(|v| *v > 0.0), "filter {m} is empty");
        }
    }
}

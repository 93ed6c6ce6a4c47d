//! Peak memory per stage: a sampler thread polls the device's used memory (CUDA: total − free
//! from the driver, as nvidia-smi reports it, so it includes the allocator's cached blocks and
//! other processes on the GPU; CPU: this process's resident set) every few milliseconds and
//! keeps the maximum since the last [`Sampler::take_peak`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use candle_core::Device;

/// A running sampler.
pub struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// What the figures are ("GPU used" or "process RSS").
    pub what: &'static str,
}

impl Sampler {
    /// Starts sampling `device`.
    pub fn start(device: &Device) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (probe, what) = probe(device);
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut probe = probe;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(bytes) = probe() {
                        peak.fetch_max(bytes, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self {
            peak,
            stop,
            thread: Some(thread),
            what,
        }
    }

    /// The peak since the previous call (or the start), in bytes; restarts the measurement.
    pub fn take_peak(&self) -> u64 {
        std::thread::sleep(Duration::from_millis(15));
        self.peak.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Probe = Box<dyn FnMut() -> Option<u64> + Send>;

fn probe(device: &Device) -> (Probe, &'static str) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        let context = dev.cuda_stream().context().clone();
        let probe = move || {
            let (free, total) = context.mem_get_info().ok()?;
            Some((total - free) as u64)
        };
        return (Box::new(probe), "GPU used");
    }
    let _ = device;
    (Box::new(resident_bytes), "process RSS")
}

/// This process's resident set (`VmRSS` of /proc/self/status).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

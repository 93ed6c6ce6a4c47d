//! Compute devices for workers: parsing `cpu` / `cuda:N` and reporting their memory (GPU memory
//! through `nvidia-smi`, refreshed in the background; for the CPU, this process's resident
//! memory and the machine's RAM).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use candle_core::Device;
use parking_lot::Mutex;
use queue::MemoryProbe;

/// How often GPU memory is re-read.
const GPU_REFRESH: Duration = Duration::from_secs(5);

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl DeviceName {
    /// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                let index = other
                    .strip_prefix("cuda:")
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("--device {other:?}: expected cpu or cuda:N"))?;
                Ok(Self::Cuda(index))
            }
        }
    }

    /// The candle device (fails for CUDA when this build has no CUDA support).
    pub fn open(self) -> anyhow::Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(index) => Device::new_cuda(index)
                .with_context(|| format!("opening cuda:{index} (is this build CUDA-enabled?)")),
        }
    }

    /// How this device's memory is measured.
    pub fn memory_probe(self) -> MemoryProbe {
        match self {
            Self::Cpu => MemoryProbe(Arc::new(cpu_memory)),
            Self::Cuda(index) => gpu_probe(index),
        }
    }
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kib| kib * 1024)
}

/// This process's resident memory and the machine's total RAM.
fn cpu_memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some((
        kib_field(&status, "VmRSS:")?,
        kib_field(&meminfo, "MemTotal:")?,
    ))
}

/// Parses `nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits`
/// output (MiB).
pub fn parse_nvidia_smi(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let (used, total) = line.split_once(',')?;
    let mib = |s: &str| s.trim().parse::<u64>().ok().map(|v| v << 20);
    Some((mib(used)?, mib(total)?))
}

fn query_gpu(index: usize) -> Option<(u64, u64)> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.used,memory.total",
            "--format=csv,noheader,nounits",
            "-i",
            &index.to_string(),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

/// A probe reading GPU memory that a background thread refreshes (so heartbeats never wait
/// for `nvidia-smi`).
fn gpu_probe(index: usize) -> MemoryProbe {
    let latest = Arc::new(Mutex::new(query_gpu(index)));
    let writer = Arc::downgrade(&latest);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(GPU_REFRESH);
            let Some(slot) = writer.upgrade() else { break };
            *slot.lock() = query_gpu(index);
        }
    });
    MemoryProbe(Arc::new(move || *latest.lock()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!(DeviceName::parse("cpu").unwrap(), DeviceName::Cpu);
        assert_eq!(DeviceName::parse("cuda").unwrap(), DeviceName::Cuda(0));
        assert_eq!(DeviceName::parse("cuda:3").unwrap(), DeviceName::Cuda(3));
        assert!(DeviceName::parse("gpu").is_err());
        assert!(DeviceName::parse("cuda:x").is_err());
    }

    #[test]
    fn nvidia_smi_output_parses() {
        assert_eq!(
            parse_nvidia_smi("1234, 81559\n"),
            Some((1234 << 20, 81559 << 20))
        );
        assert_eq!(parse_nvidia_smi("[N/A], 81559"), None);
    }

    #[test]
    fn cpu_memory_is_known_on_linux() {
        let (used, total) = cpu_memory().unwrap();
        assert!(used > 0 && total > used);
    }
}

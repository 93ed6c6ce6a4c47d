//! With the `cuda` feature, compiles every `cuda/*.cu` to PTX in `OUT_DIR` with nvcc (found
//! through `$NVCC`, `$CUDA_HOME/bin/nvcc` or `PATH`; cuda/setup-cuda.sh installs one). The PTX
//! targets `compute_$CUDA_COMPUTE_CAP` (default 90): the driver JIT-compiles it for the GPU it
//! runs on, H100/H200 (sm_90) or anything newer. Without the feature nothing is compiled.

use std::path::{Path, PathBuf};
use std::process::Command;

const KERNELS: [&str; 4] = ["norm", "rope", "elementwise", "fp8"];

fn main() {
    println!("cargo::rerun-if-changed=cuda");
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=CUDA_HOME");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = nvcc();
    let arch = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let arch = arch.trim_end_matches(['a', 'f']);
    for name in KERNELS {
        let src = Path::new("cuda").join(format!("{name}.cu"));
        let ptx = out.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["-ptx", "-O3", "-std=c++17", "-lineinfo"])
            .arg(format!("-arch=compute_{arch}"))
            .arg(&src)
            .arg("-o")
            .arg(&ptx)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
        assert!(
            status.success(),
            "nvcc failed on {} ({status})",
            src.display()
        );
    }
}

/// nvcc from `$NVCC`, `$CUDA_HOME/bin`, or `PATH`.
fn nvcc() -> PathBuf {
    if let Some(path) = std::env::var_os("NVCC") {
        return path.into();
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let path = Path::new(&home).join("bin/nvcc");
        if path.is_file() {
            return path;
        }
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nvcc"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the `cuda` feature needs nvcc: run cuda/setup-cuda.sh and source the env.sh it \
             writes (or set NVCC / CUDA_HOME)"
        )
    })
}

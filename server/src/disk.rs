//! The output disk's free space: the guard that refuses new prompts when it is nearly full, and
//! the figures `/health` reports.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Space on the file system holding a folder.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiskSpace {
    /// The folder measured.
    pub path: PathBuf,
    /// Bytes available to this process.
    pub free_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

/// Measures the file system holding `path` (the nearest existing ancestor when `path` does not
/// exist yet).
pub fn space(path: &Path) -> std::io::Result<DiskSpace> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("."));
    Ok(DiskSpace {
        path: path.to_path_buf(),
        free_bytes: fs2::available_space(existing)?,
        total_bytes: fs2::total_space(existing)?,
    })
}

/// Bytes in `gb` gigabytes (10^9 bytes, as `df -H` counts).
pub fn gb_to_bytes(gb: f64) -> u64 {
    (gb.max(0.0) * 1e9) as u64
}

/// `bytes` as gigabytes with two decimals.
pub fn format_gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// Why a new prompt is refused: the disk at `space.path` has less than `min_free` bytes free.
pub fn refusal(space: &DiskSpace, min_free: u64) -> Option<String> {
    (space.free_bytes < min_free).then(|| {
        format!(
            "The output disk is nearly full: {} free of {} at {}, and new jobs need at least {} \
             free (--min-free-disk-gb). Ask the instructor to free space.",
            format_gb(space.free_bytes),
            format_gb(space.total_bytes),
            space.path.display(),
            format_gb(min_free)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_real_folder_and_its_missing_children() {
        let dir = tempfile::tempdir().unwrap();
        let s = space(&dir.path().join("not/yet")).unwrap();
        assert!(s.total_bytes > 0 && s.free_bytes <= s.total_bytes);
    }

    #[test]
    fn refuses_below_the_threshold_only() {
        let s = DiskSpace {
            path: "/data/output".into(),
            free_bytes: 2_000_000_000,
            total_bytes: 10_000_000_000,
        };
        assert_eq!(refusal(&s, gb_to_bytes(1.0)), None);
        assert_eq!(refusal(&s, 2_000_000_000), None);
        let msg = refusal(&s, gb_to_bytes(5.0)).unwrap();
        assert!(msg.contains("2.00 GB free of 10.00 GB"), "{msg}");
        assert!(msg.contains("at least 5.00 GB"), "{msg}");
    }
}

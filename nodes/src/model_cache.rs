//! The model cache: loaded models kept between prompts, bounded by a memory budget.
//!
//! Loader nodes return light handles (a file and how to load it); the nodes that need the
//! weights ask the cache, which loads on first use and keeps the model until the budget forces
//! it out (least recently used first). This is how ComfyUI behaves from a user's point of view:
//! a second prompt with the same checkpoint does not read it again, and models that are not
//! needed right now (the text encoder during sampling) are dropped when memory is short.
//!
//! Entries are keyed by [`ModelKey`]: the kind of component, the files it was read from (path,
//! size and modification time, so a replaced file is reloaded), the dtype and the device. The
//! cache is a per-worker service (`env.services.get_or_init::<ModelCache>(..)`).

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device};
use parking_lot::Mutex;

use crate::env::Env;
use crate::error::NodeError;

/// Default budget when nothing else is configured: 75% of the machine's memory.
const DEFAULT_BUDGET_FRACTION: f64 = 0.75;
/// Budget used when the machine's memory cannot be read.
const FALLBACK_BUDGET_BYTES: usize = 16 << 30;
/// Environment variable overriding the budget (bytes).
pub const BUDGET_ENV: &str = "COMFYRS_MODEL_CACHE_BYTES";

/// One input file of a model, identified by path, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// The file's canonical path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch (0 when unknown).
    pub mtime_ns: u128,
}

impl FileStamp {
    /// Stats `path`.
    pub fn of(path: &Path) -> Result<Self, NodeError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| NodeError::io(format!("reading {}", path.display()), e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            path: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
            size: meta.len(),
            mtime_ns,
        })
    }
}

/// What identifies a loaded model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    /// Component kind (`"ltxav_transformer"`, `"video_vae"`, ...).
    pub kind: &'static str,
    /// The files it is read from, in order.
    pub files: Vec<FileStamp>,
    /// Working dtype.
    pub dtype: String,
    /// Device (`Cpu`, `Cuda { gpu_id: 0 }`, ...).
    pub device: String,
}

impl ModelKey {
    /// The key of a `kind` component read from `paths`, run in `dtype` on `device`.
    pub fn new(
        kind: &'static str,
        paths: &[&Path],
        dtype: DType,
        device: &Device,
    ) -> Result<Self, NodeError> {
        Ok(Self {
            kind,
            files: paths
                .iter()
                .map(|p| FileStamp::of(p))
                .collect::<Result<_, _>>()?,
            dtype: format!("{dtype:?}"),
            device: format!("{:?}", device.location()),
        })
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                f.path.file_name().map_or_else(
                    || f.path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                )
            })
            .collect();
        format!(
            "{} [{}] {} {}",
            self.kind,
            names.join(", "),
            self.dtype,
            self.device
        )
    }
}

struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    bytes: usize,
    last_used: u64,
}

/// Counters of what the cache did (for tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Models loaded from disk, per kind.
    pub loads: HashMap<&'static str, usize>,
    /// Requests served from memory.
    pub hits: usize,
    /// Models dropped to stay within the budget.
    pub evictions: usize,
}

impl CacheStats {
    /// Total loads of every kind.
    pub fn total_loads(&self) -> usize {
        self.loads.values().sum()
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<ModelKey, Entry>,
    stats: CacheStats,
}

/// Loaded models shared by every prompt a worker runs.
pub struct ModelCache {
    budget: AtomicU64,
    clock: AtomicU64,
    state: Mutex<State>,
}

impl Default for ModelCache {
    /// A cache with the default budget ([`default_budget`]).
    fn default() -> Self {
        Self::new(default_budget())
    }
}

impl ModelCache {
    /// A cache that keeps at most about `budget_bytes` of models.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget: AtomicU64::new(budget_bytes as u64),
            clock: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// The cache of `env`'s worker (created with the default budget on first use).
    pub fn of(env: &Env) -> Arc<ModelCache> {
        env.services.get_or_init(ModelCache::default)
    }

    /// The memory budget in bytes.
    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed) as usize
    }

    /// Changes the budget (takes effect at the next load).
    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes as u64, Ordering::Relaxed);
    }

    /// The model under `key`, loading it with `load` (which returns the model and its
    /// approximate size in bytes) when it is not in memory. Least recently used models are
    /// dropped first to make room for a new one.
    pub fn get_or_load<T: Any + Send + Sync>(
        &self,
        key: &ModelKey,
        load: impl FnOnce() -> Result<(T, usize), NodeError>,
    ) -> Result<Arc<T>, NodeError> {
        if let Some(hit) = self.lookup::<T>(key)? {
            return Ok(hit);
        }
        tracing::info!(model = %key.describe(), "loading model");
        let (model, bytes) = load()?;
        let model = Arc::new(model);
        let mut state = self.state.lock();
        self.make_room(&mut state, bytes, key);
        *state.stats.loads.entry(key.kind).or_default() += 1;
        let stamp = self.tick();
        state.entries.insert(
            key.clone(),
            Entry {
                value: model.clone(),
                bytes,
                last_used: stamp,
            },
        );
        Ok(model)
    }

    fn lookup<T: Any + Send + Sync>(&self, key: &ModelKey) -> Result<Option<Arc<T>>, NodeError> {
        let stamp = self.tick();
        let mut state = self.state.lock();
        let Some(entry) = state.entries.get_mut(key) else {
            return Ok(None);
        };
        entry.last_used = stamp;
        let value = entry.value.clone().downcast::<T>().map_err(|_| {
            NodeError::Runtime(format!(
                "model cache entry {} holds another type",
                key.describe()
            ))
        })?;
        state.stats.hits += 1;
        Ok(Some(value))
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Evicts least recently used entries until `incoming` more bytes fit the budget.
    fn make_room(&self, state: &mut State, incoming: usize, key: &ModelKey) {
        let budget = self.budget();
        loop {
            let resident: usize = state.entries.values().map(|e| e.bytes).sum();
            if resident + incoming <= budget {
                return;
            }
            let Some(victim) = state
                .entries
                .iter()
                .filter(|(k, _)| *k != key)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                tracing::warn!(
                    model = %key.describe(),
                    bytes = incoming,
                    budget,
                    "model is larger than the model cache budget"
                );
                return;
            };
            tracing::info!(model = %victim.describe(), "dropping model to stay within the budget");
            state.entries.remove(&victim);
            state.stats.evictions += 1;
        }
    }

    /// Drops every model (running nodes keep theirs until they finish).
    pub fn clear(&self) {
        self.state.lock().entries.clear();
    }

    /// Drops the models of `kind`.
    pub fn evict_kind(&self, kind: &str) {
        let mut state = self.state.lock();
        let before = state.entries.len();
        state.entries.retain(|k, _| k.kind != kind);
        let dropped = before - state.entries.len();
        state.stats.evictions += dropped;
    }

    /// Approximate bytes of the models in memory.
    pub fn resident_bytes(&self) -> usize {
        self.state.lock().entries.values().map(|e| e.bytes).sum()
    }

    /// Whether a model under `key` is in memory.
    pub fn contains(&self, key: &ModelKey) -> bool {
        self.state.lock().entries.contains_key(key)
    }

    /// Keys of the models in memory.
    pub fn keys(&self) -> Vec<ModelKey> {
        self.state.lock().entries.keys().cloned().collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        self.state.lock().stats.clone()
    }
}

/// The default budget: [`BUDGET_ENV`] if set, else 75% of the machine's memory.
pub fn default_budget() -> usize {
    if let Some(bytes) = std::env::var(BUDGET_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return bytes;
    }
    total_memory()
        .map(|total| (total as f64 * DEFAULT_BUDGET_FRACTION) as usize)
        .unwrap_or(FALLBACK_BUDGET_BYTES)
}

/// Physical memory from `/proc/meminfo` (Linux).
fn total_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The dtype models run in on `device`: f32 on the CPU (candle's CPU backend has no bf16
/// matmul), bf16 on GPUs.
pub fn working_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, name: &str, kind: &'static str) -> ModelKey {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(&path, name.as_bytes()).unwrap();
        }
        ModelKey::new(kind, &[&path], DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn loads_once_and_counts_hits() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(1000);
        let k = key(dir.path(), "a", "thing");
        let a = cache.get_or_load(&k, || Ok((7u32, 10))).unwrap();
        let b = cache
            .get_or_load::<u32>(&k, || panic!("must not load twice"))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let stats = cache.stats();
        assert_eq!(stats.loads["thing"], 1);
        assert_eq!(stats.hits, 1);
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(100);
        let (a, b, c) = (
            key(dir.path(), "a", "m"),
            key(dir.path(), "b", "m"),
            key(dir.path(), "c", "m"),
        );
        cache.get_or_load(&a, || Ok((1u8, 40))).unwrap();
        cache.get_or_load(&b, || Ok((2u8, 40))).unwrap();
        cache.get_or_load::<u8>(&a, || unreachable!()).unwrap(); // a is now the most recent
        cache.get_or_load(&c, || Ok((3u8, 40))).unwrap();
        assert!(cache.contains(&a));
        assert!(!cache.contains(&b));
        assert!(cache.contains(&c));
        assert_eq!(cache.stats().evictions, 1);
        assert_eq!(cache.resident_bytes(), 80);
    }

    #[test]
    fn a_changed_file_is_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = key(dir.path(), "f", "m");
        std::fs::write(dir.path().join("f"), b"longer contents").unwrap();
        let k2 = ModelKey::new("m", &[&dir.path().join("f")], DType::F32, &Device::Cpu).unwrap();
        assert_ne!(k1, k2);
    }

    #[test]
    fn wrong_type_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(100);
        let k = key(dir.path(), "x", "m");
        cache.get_or_load(&k, || Ok((1u8, 1))).unwrap();
        assert!(cache.get_or_load::<u16>(&k, || Ok((1, 1))).is_err());
    }

    #[test]
    fn oversized_models_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModelCache::new(10);
        let k = key(dir.path(), "big", "m");
        assert_eq!(*cache.get_or_load(&k, || Ok((5u8, 50))).unwrap(), 5);
        assert!(cache.contains(&k));
    }
}

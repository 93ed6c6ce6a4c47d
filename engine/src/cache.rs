//! The output cache between prompts: node outputs keyed by a signature of the node and all its
//! ancestors (ComfyUI's `CacheKeySetInputSignature`), so changing one input re-runs only the
//! nodes that depend on it. Bounded by entry count and by approximate bytes, evicting the least
//! recently used entries.

use std::collections::HashMap;
use std::sync::Arc;

use nodes::Value;
use serde_json::Value as Json;

/// A cache key: the BLAKE3 hash of a node's signature.
pub type CacheKey = [u8; 32];

/// What one node produced: values per output slot, and its UI entry (`{"output", "meta"}`).
#[derive(Clone)]
pub struct CachedOutput {
    /// One list of values per output slot.
    pub slots: Arc<Vec<Vec<Value>>>,
    /// The UI output dict the node produced, if any.
    pub ui: Option<Json>,
}

impl CachedOutput {
    fn bytes(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(Value::approx_bytes)
            .sum::<usize>()
            + 64
    }
}

/// How much the cache may keep between prompts.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Most entries kept (0 disables caching between prompts, like `--cache-none`).
    pub max_entries: usize,
    /// Most approximate bytes kept.
    pub max_bytes: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            max_entries: 256,
            max_bytes: 4 << 30,
        }
    }
}

struct Entry {
    output: CachedOutput,
    bytes: usize,
    last_used: u64,
}

/// A bounded LRU map from signature to node outputs.
pub struct OutputCache {
    policy: CachePolicy,
    entries: HashMap<CacheKey, Entry>,
    total_bytes: usize,
    clock: u64,
}

impl OutputCache {
    /// An empty cache with `policy`.
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
            total_bytes: 0,
            clock: 0,
        }
    }

    /// The entry for `key`, marking it recently used.
    pub fn get(&mut self, key: &CacheKey) -> Option<CachedOutput> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|e| {
            e.last_used = clock;
            e.output.clone()
        })
    }

    /// Whether `key` is cached (without touching its recency).
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Stores an entry, then evicts least recently used entries beyond the policy's bounds.
    pub fn insert(&mut self, key: CacheKey, output: CachedOutput) {
        if self.policy.max_entries == 0 {
            return;
        }
        self.clock += 1;
        let bytes = output.bytes();
        if let Some(old) = self.entries.insert(
            key,
            Entry {
                output,
                bytes,
                last_used: self.clock,
            },
        ) {
            self.total_bytes -= old.bytes;
        }
        self.total_bytes += bytes;
        self.evict();
    }

    fn evict(&mut self) {
        while self.entries.len() > self.policy.max_entries
            || self.total_bytes > self.policy.max_bytes
        {
            let Some((&oldest, _)) = self.entries.iter().min_by_key(|(_, e)| e.last_used) else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.total_bytes -= e.bytes;
            }
        }
    }

    /// Drops everything (`POST /free {"free_memory": true}`).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.total_bytes = 0;
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(n: i128) -> CachedOutput {
        CachedOutput {
            slots: Arc::new(vec![vec![Value::Int(n)]]),
            ui: None,
        }
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut c = OutputCache::new(CachePolicy {
            max_entries: 2,
            max_bytes: usize::MAX,
        });
        c.insert([1; 32], out(1));
        c.insert([2; 32], out(2));
        assert!(c.get(&[1; 32]).is_some());
        c.insert([3; 32], out(3));
        assert!(c.contains(&[1; 32]));
        assert!(!c.contains(&[2; 32]));
        assert!(c.contains(&[3; 32]));
    }

    #[test]
    fn zero_entries_disables_caching() {
        let mut c = OutputCache::new(CachePolicy {
            max_entries: 0,
            max_bytes: usize::MAX,
        });
        c.insert([1; 32], out(1));
        assert!(c.is_empty());
    }

    #[test]
    fn byte_budget_is_enforced() {
        let mut c = OutputCache::new(CachePolicy {
            max_entries: 100,
            max_bytes: 200,
        });
        for i in 0..10u8 {
            c.insert([i; 32], out(i as i128));
        }
        assert!(c.len() <= 2, "kept {}", c.len());
    }
}

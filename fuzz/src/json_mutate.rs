//! Structure-aware mutations for the JSON targets: byte flips mostly break the syntax and stop
//! at the parser, so these edit the parsed tree instead (replace a value with an extreme or
//! odd one, drop it, duplicate a node, point a link elsewhere, nest deeply) and serialize it
//! back, reaching the validator and the converter.

use serde_json::{Value, json};

/// A source of random numbers (the stable runner's generator).
pub trait Random {
    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize;
}

/// JSON pointers of the tree's values (at most `cap`, breadth first).
fn pointers(root: &Value, cap: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut i = 0;
    while i < out.len() && out.len() < cap {
        let here = out[i].clone();
        if let Some(v) = root.pointer(&here) {
            match v {
                Value::Object(map) => {
                    for key in map.keys() {
                        let escaped = key.replace('~', "~0").replace('/', "~1");
                        out.push(format!("{here}/{escaped}"));
                    }
                }
                Value::Array(items) => {
                    for k in 0..items.len() {
                        out.push(format!("{here}/{k}"));
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.truncate(cap);
    out
}

/// An odd value to put somewhere; `ids` are the top-level keys (node ids of a prompt).
fn odd_value(rng: &mut dyn Random, ids: &[String], sample: Option<Value>) -> Value {
    let id = || ids.first().cloned().unwrap_or_else(|| "1".into());
    let choices = 22;
    match rng.below(choices) {
        0 => json!(-1),
        1 => json!(0),
        2 => json!(2_147_483_648u64),
        3 => json!(9_007_199_254_740_993u64),
        4 => json!(1e308),
        5 => json!(-1e308),
        6 => json!(0.5),
        7 => json!(""),
        8 => json!(".."),
        9 => json!("../../etc/passwd"),
        10 => json!("x.png [output]"),
        11 => Value::Null,
        12 => json!(true),
        13 => json!([]),
        14 => json!({}),
        15 => json!([id(), 0]),
        16 => json!([id(), 99]),
        17 => json!(["999999", 0]),
        18 => {
            let pick = ids.get(rng.below(ids.len())).cloned().unwrap_or_else(id);
            json!([pick, rng.below(3)])
        }
        19 => {
            let mut v = json!(1);
            for _ in 0..(1 + rng.below(120)) {
                v = json!([v]);
            }
            v
        }
        20 => json!(u64::MAX),
        _ => sample.unwrap_or(Value::Null),
    }
}

/// Applies one to three tree edits to `doc`.
pub fn mutate(rng: &mut dyn Random, doc: &mut Value) {
    let ids: Vec<String> = doc
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for _ in 0..(1 + rng.below(3)) {
        let all = pointers(doc, 4096);
        let target = all[rng.below(all.len())].clone();
        let sample = doc.pointer(&all[rng.below(all.len())]).cloned();
        match rng.below(4) {
            0 => remove(doc, &target),
            1 => duplicate(rng, doc, &target),
            _ => {
                let value = odd_value(rng, &ids, sample);
                if let Some(slot) = doc.pointer_mut(&target) {
                    *slot = value;
                }
            }
        }
    }
}

fn parent_of(pointer: &str) -> Option<(&str, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    Some((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn remove(doc: &mut Value, pointer: &str) {
    let Some((parent, key)) = parent_of(pointer) else {
        return;
    };
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.shift_remove(&key);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = key.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// Copies the value at `pointer` beside itself (a new key in an object, or appended to a list).
fn duplicate(rng: &mut dyn Random, doc: &mut Value, pointer: &str) {
    let Some((parent, key)) = parent_of(pointer) else {
        return;
    };
    let Some(value) = doc.pointer(pointer).cloned() else {
        return;
    };
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            let new_key = format!("{key}{}", rng.below(1000));
            map.insert(new_key, value);
        }
        Some(Value::Array(items)) => items.push(value),
        _ => {}
    }
}

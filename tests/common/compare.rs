//! JSON comparison against the real ComfyUI's captured answers: volatile values (ids, times,
//! paths) are masked, keys known to differ are dropped, lists the server builds from Python sets
//! are sorted, and numbers compare by value (`1` equals `1.0`; JavaScript cannot tell them apart).

use serde_json::{Map, Value};

/// What to mask, drop and sort before comparing.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Keys whose values are masked (the key must still be present on both sides).
    pub volatile: Vec<String>,
    /// Keys removed on both sides wherever they occur (documented differences).
    pub ignore: Vec<String>,
    /// Keys whose array values are compared as multisets.
    pub unordered: Vec<String>,
}

impl Rules {
    /// The rules a fixture file declares (`volatile`, `unordered`), plus `abs_path`, which the
    /// captured fork adds to every output item.
    pub fn from_fixture(fixture: &Value) -> Self {
        let strings = |key: &str| -> Vec<String> {
            fixture[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let unordered = strings("unordered")
            .into_iter()
            .map(|k| k.rsplit('.').next().unwrap_or(&k).to_string())
            .collect();
        let mut volatile = strings("volatile");
        volatile.retain(|k| k != "abs_path");
        Self {
            volatile,
            ignore: vec!["abs_path".into()],
            unordered,
        }
    }

    /// Also drops these keys.
    pub fn ignoring(mut self, keys: &[&str]) -> Self {
        self.ignore.extend(keys.iter().map(|k| k.to_string()));
        self
    }

    /// Also masks these keys.
    pub fn masking(mut self, keys: &[&str]) -> Self {
        self.volatile.extend(keys.iter().map(|k| k.to_string()));
        self
    }

    /// No longer masks these keys (to compare them exactly).
    pub fn keeping(mut self, keys: &[&str]) -> Self {
        self.volatile.retain(|k| !keys.contains(&k.as_str()));
        self
    }
}

/// `value` with the rules applied.
pub fn normalize(value: &Value, rules: &Rules) -> Value {
    normalize_at(value, rules, None)
}

fn normalize_at(value: &Value, rules: &Rules, key: Option<&str>) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if rules.ignore.iter().any(|i| i == k) {
                    continue;
                }
                let v = if rules.volatile.iter().any(|i| i == k) {
                    Value::String("<volatile>".into())
                } else {
                    normalize_at(v, rules, Some(k))
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut items: Vec<Value> =
                items.iter().map(|v| normalize_at(v, rules, None)).collect();
            if key.is_some_and(|k| rules.unordered.iter().any(|u| u == k)) {
                items.sort_by_key(|v| v.to_string());
            }
            Value::Array(items)
        }
        Value::Number(n) => match n.as_f64() {
            // One representation for equal numbers (5 and 5.0).
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => value.clone(),
        },
        other => other.clone(),
    }
}

/// The differences between two normalised values, as `path: actual != expected` lines.
pub fn differences(actual: &Value, expected: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", actual, expected, &mut out);
    out
}

fn diff_at(path: &str, actual: &Value, expected: &Value, out: &mut Vec<String>) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff_at(&format!("{path}.{k}"), av, ev, out),
                    None => out.push(format!("{path}.{k}: missing (expected {ev})")),
                }
            }
            for k in a.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}.{k}: unexpected key ({})", a[k]));
            }
        }
        (Value::Array(a), Value::Array(e)) if a.len() == e.len() => {
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                diff_at(&format!("{path}[{i}]"), av, ev, out);
            }
        }
        (a, e) if a == e => {}
        (a, e) => out.push(format!("{path}: {a} != expected {e}")),
    }
}

/// Asserts that `actual` matches the captured `expected` under `rules`.
#[track_caller]
pub fn assert_json_matches(what: &str, actual: &Value, expected: &Value, rules: &Rules) {
    let a = normalize(actual, rules);
    let e = normalize(expected, rules);
    let diffs = differences(&a, &e);
    assert!(
        diffs.is_empty(),
        "{what}: the answer differs from the real ComfyUI's:\n  {}\nactual:   {a}\nexpected: {e}",
        diffs.join("\n  ")
    );
}

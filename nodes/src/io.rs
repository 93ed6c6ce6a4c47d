//! A node call's inputs (typed accessors) and its outputs (values per slot plus a UI dict).

use std::any::Any;
use std::sync::Arc;

use candle_core::Tensor;
use serde_json::Map;

use crate::error::NodeError;
use crate::value::{Json, Latent, Value};

/// The inputs of one call: each name maps to a list of values (one value for ordinary calls;
/// the whole list for nodes declared `input_is_list`).
#[derive(Clone, Default)]
pub struct Inputs {
    entries: Vec<(String, Vec<Value>)>,
}

impl Inputs {
    /// No inputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to a list of values.
    pub fn insert(&mut self, name: &str, values: Vec<Value>) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = values,
            None => self.entries.push((name.to_string(), values)),
        }
    }

    /// Builder form of [`Inputs::insert`] with a single value.
    pub fn with(mut self, name: &str, value: Value) -> Self {
        self.insert(name, vec![value]);
        self
    }

    /// Every `(name, values)` pair in insertion order.
    pub fn entries(&self) -> &[(String, Vec<Value>)] {
        &self.entries
    }

    /// The whole list given for `name` (empty when absent).
    pub fn list(&self, name: &str) -> &[Value] {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// The (first) value given for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.list(name).first()
    }

    fn required(&self, name: &str) -> Result<&Value, NodeError> {
        self.get(name)
            .ok_or_else(|| NodeError::Value(format!("missing input '{name}'")))
    }

    fn mismatch(name: &str, expected: &str, got: &Value) -> NodeError {
        NodeError::Value(format!(
            "input '{name}' expected {expected}, got {}",
            got.type_name()
        ))
    }

    /// An `INT` input as i64 (errors if out of range).
    pub fn int(&self, name: &str) -> Result<i64, NodeError> {
        let v = self.int128(name)?;
        i64::try_from(v)
            .map_err(|_| NodeError::Value(format!("input '{name}' value {v} is out of range")))
    }

    /// An `INT` input as i128 (the full range ComfyUI accepts, e.g. u64 seeds).
    pub fn int128(&self, name: &str) -> Result<i128, NodeError> {
        match self.required(name)? {
            Value::Int(i) => Ok(*i),
            Value::Float(f) if f.fract() == 0.0 => Ok(*f as i128),
            Value::Boolean(b) => Ok(*b as i128),
            other => Err(Self::mismatch(name, "INT", other)),
        }
    }

    /// A non-negative `INT` input as usize.
    pub fn usize(&self, name: &str) -> Result<usize, NodeError> {
        let v = self.int128(name)?;
        usize::try_from(v)
            .map_err(|_| NodeError::Value(format!("input '{name}' must be >= 0, got {v}")))
    }

    /// A `FLOAT` input (ints are accepted, as Python does).
    pub fn float(&self, name: &str) -> Result<f64, NodeError> {
        match self.required(name)? {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(Self::mismatch(name, "FLOAT", other)),
        }
    }

    /// A `STRING` (or combo) input.
    pub fn string(&self, name: &str) -> Result<&str, NodeError> {
        match self.required(name)? {
            Value::String(s) => Ok(s),
            other => Err(Self::mismatch(name, "STRING", other)),
        }
    }

    /// A `BOOLEAN` input.
    pub fn boolean(&self, name: &str) -> Result<bool, NodeError> {
        match self.required(name)? {
            Value::Boolean(b) => Ok(*b),
            other => Err(Self::mismatch(name, "BOOLEAN", other)),
        }
    }

    /// An `IMAGE` input.
    pub fn image(&self, name: &str) -> Result<&Tensor, NodeError> {
        match self.required(name)? {
            Value::Image(t) => Ok(t),
            other => Err(Self::mismatch(name, "IMAGE", other)),
        }
    }

    /// A `MASK` input.
    pub fn mask(&self, name: &str) -> Result<&Tensor, NodeError> {
        match self.required(name)? {
            Value::Mask(t) => Ok(t),
            other => Err(Self::mismatch(name, "MASK", other)),
        }
    }

    /// A `LATENT` input.
    pub fn latent(&self, name: &str) -> Result<&Latent, NodeError> {
        match self.required(name)? {
            Value::Latent(l) => Ok(l),
            other => Err(Self::mismatch(name, "LATENT", other)),
        }
    }

    /// An object input of ComfyUI type `type_name` holding a `T`.
    pub fn object<T: Any + Send + Sync>(
        &self,
        name: &str,
        type_name: &str,
    ) -> Result<Arc<T>, NodeError> {
        match self.required(name)? {
            Value::Object(o) => o.downcast::<T>().ok_or_else(|| {
                NodeError::Value(format!(
                    "input '{name}' expected {type_name}, got {}",
                    o.type_name()
                ))
            }),
            other => Err(Self::mismatch(name, type_name, other)),
        }
    }

    /// Whether an (optional) input was given.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// The value(s) of one output slot of one call.
#[derive(Clone)]
pub enum Slot {
    /// An ordinary output.
    One(Value),
    /// An `OUTPUT_IS_LIST` output: the call returns a whole list.
    Many(Vec<Value>),
}

/// What one call returns.
#[derive(Clone, Default)]
pub struct Outputs {
    /// One slot per declared output.
    pub slots: Vec<Slot>,
    /// The UI dict (`{"images": [...]}`) shown by the frontend and stored in history.
    pub ui: Option<Map<String, Json>>,
}

impl Outputs {
    /// Ordinary outputs, one value per slot.
    pub fn new(values: Vec<Value>) -> Self {
        Self {
            slots: values.into_iter().map(Slot::One).collect(),
            ui: None,
        }
    }

    /// One output value.
    pub fn one(value: Value) -> Self {
        Self::new(vec![value])
    }

    /// No outputs, only a UI dict (output nodes).
    pub fn ui(ui: Map<String, Json>) -> Self {
        Self {
            slots: Vec::new(),
            ui: Some(ui),
        }
    }

    /// Adds a UI dict.
    pub fn with_ui(mut self, ui: Map<String, Json>) -> Self {
        self.ui = Some(ui);
        self
    }
}

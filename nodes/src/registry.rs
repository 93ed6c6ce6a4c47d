//! The node registry: every node's schema plus the functions that run, fingerprint and
//! validate it. `/object_info` and the engine's validation both read from here.

use std::collections::HashMap;

use serde_json::Map;

use crate::context::Ctx;
use crate::env::Env;
use crate::error::NodeError;
use crate::io::{Inputs, Outputs};
use crate::schema::NodeSchema;
use crate::value::Json;

/// Runs a node once (once per list index unless the node takes whole lists).
pub type RunFn = fn(&Ctx, &Inputs) -> Result<Outputs, NodeError>;

/// ComfyUI's `IS_CHANGED` / `fingerprint_inputs`: called with the node's constant inputs;
/// the result joins the cache key.
pub type FingerprintFn = fn(&Env, &Inputs) -> Fingerprint;

/// ComfyUI's `VALIDATE_INPUTS`: called with constant inputs only; an `Err` becomes a
/// `custom_validation_failed` error with that text.
pub type ValidateFn = fn(&Env, &Inputs) -> Result<(), String>;

/// The result of a fingerprint function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fingerprint {
    /// Re-run when this value changes (e.g. a file hash).
    Value(String),
    /// Re-run every time (ComfyUI's `float("NaN")`).
    Always,
}

/// One registered node.
#[derive(Clone)]
pub struct NodeDef {
    /// The declaration.
    pub schema: NodeSchema,
    /// The function.
    pub run: RunFn,
    /// Optional fingerprint of the constant inputs.
    pub fingerprint: Option<FingerprintFn>,
    /// Optional custom validation, and the inputs it takes over (the built-in min/max/combo
    /// checks are skipped for those, as in ComfyUI).
    pub validate: Option<(Vec<&'static str>, ValidateFn)>,
}

impl NodeDef {
    /// A node with a schema and a function.
    pub fn new(schema: NodeSchema, run: RunFn) -> Self {
        Self {
            schema,
            run,
            fingerprint: None,
            validate: None,
        }
    }
    /// Adds a fingerprint function.
    pub fn with_fingerprint(mut self, f: FingerprintFn) -> Self {
        self.fingerprint = Some(f);
        self
    }
    /// Adds custom validation over the named inputs.
    pub fn with_validation(mut self, inputs: &[&'static str], f: ValidateFn) -> Self {
        self.validate = Some((inputs.to_vec(), f));
        self
    }
}

/// All nodes known to an engine, in registration order.
#[derive(Clone, Default)]
pub struct Registry {
    order: Vec<String>,
    nodes: HashMap<String, NodeDef>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a node.
    pub fn register(&mut self, def: NodeDef) {
        let name = def.schema.name.clone();
        if self.nodes.insert(name.clone(), def).is_none() {
            self.order.push(name);
        }
    }

    /// The node named `class_type`.
    pub fn get(&self, class_type: &str) -> Option<&NodeDef> {
        self.nodes.get(class_type)
    }

    /// Node names in registration order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// The full `/object_info` object for `env` (combo lists depend on the user's folders).
    pub fn object_info(&self, env: &Env) -> Json {
        let mut out = Map::new();
        for name in &self.order {
            out.insert(name.clone(), self.nodes[name].schema.to_object_info(env));
        }
        Json::Object(out)
    }
}

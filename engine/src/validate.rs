//! Prompt validation with ComfyUI's rules and error JSON (`execution.py` `validate_prompt` /
//! `validate_inputs`): unknown nodes, missing or mistyped inputs, bad links, out-of-range
//! values, combo values not in the list, custom validation, dependency cycles. Constants are
//! coerced to their declared types in place, as ComfyUI does before hashing and executing.

use std::collections::HashMap;

use nodes::schema::{IoType, NodeSchema, Section};
use nodes::{Env, Inputs, NodeDef, Registry, Value};
use serde_json::{Map, Value as Json, json};

use crate::prompt::{Prompt, slot_index};
use crate::pyfmt;

/// Size limits a prompt must respect.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most nodes a prompt may have.
    pub max_nodes: usize,
    /// Deepest chain of links validation follows (Python's recursion limit plays this role).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_nodes: 5000,
            max_depth: 1000,
        }
    }
}

/// One error in ComfyUI's shape: `{"type", "message", "details", "extra_info"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    /// `type` (`required_input_missing`, ...).
    pub kind: String,
    /// `message`.
    pub message: String,
    /// `details`.
    pub details: String,
    /// `extra_info`.
    pub extra_info: Json,
}

impl ErrorInfo {
    /// An error with the given fields.
    pub fn new(
        kind: &str,
        message: impl Into<String>,
        details: impl Into<String>,
        extra_info: Json,
    ) -> Self {
        Self {
            kind: kind.to_string(),
            message: message.into(),
            details: details.into(),
            extra_info,
        }
    }

    /// The JSON object.
    pub fn to_json(&self) -> Json {
        json!({"type": self.kind, "message": self.message, "details": self.details, "extra_info": self.extra_info})
    }
}

/// A prompt that cannot run (HTTP 400 `{"error": ..., "node_errors": ...}`).
#[derive(Debug, Clone)]
pub struct PromptError {
    /// The prompt-level error.
    pub error: ErrorInfo,
    /// Per-node errors (`{id: {"errors", "dependent_outputs", "class_type"}}`).
    pub node_errors: Map<String, Json>,
}

impl PromptError {
    /// A prompt-level error without node errors.
    pub fn new(kind: &str, message: &str, details: &str) -> Self {
        Self {
            error: ErrorInfo::new(kind, message, details, json!({})),
            node_errors: Map::new(),
        }
    }

    /// `{"error": ..., "node_errors": ...}`.
    pub fn to_json(&self) -> Json {
        json!({"error": self.error.to_json(), "node_errors": self.node_errors})
    }
}

impl std::fmt::Display for PromptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.message, self.error.details)
    }
}

impl std::error::Error for PromptError {}

/// A prompt that passed validation (possibly with some outputs dropped).
#[derive(Debug, Clone)]
pub struct Validated {
    /// The coerced prompt.
    pub prompt: Prompt,
    /// The outputs to execute (those that validated).
    pub outputs: Vec<String>,
    /// Errors of outputs that were dropped (sent back with a 200, as ComfyUI does).
    pub node_errors: Map<String, Json>,
}

/// A Python exception raised while validating (ComfyUI catches these and reports them).
struct PyException {
    type_name: &'static str,
    message: String,
}

#[derive(Clone)]
struct Verdict {
    ok: bool,
    errors: Vec<ErrorInfo>,
}

/// Stack for validation: it recurses along links, up to [`Limits::max_depth`] deep, a few KB a
/// level (more than the 2 MiB of tokio's blocking threads, where the server validates).
const VALIDATION_STACK_BYTES: usize = 64 << 20;

/// Validates an API prompt against the registry, as ComfyUI's `validate_prompt` does.
/// `partial` restricts the outputs (`partial_execution_targets`). Runs on a thread of its own
/// with a [`VALIDATION_STACK_BYTES`] stack, so the deepest chain the limits allow cannot
/// overflow the caller's stack.
pub fn validate_prompt(
    registry: &Registry,
    env: &Env,
    prompt: &Json,
    partial: Option<&[String]>,
    limits: &Limits,
) -> Result<Validated, PromptError> {
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("validate".into())
            .stack_size(VALIDATION_STACK_BYTES)
            .spawn_scoped(scope, || {
                validate_on_this_stack(registry, env, prompt, partial, limits)
            });
        match spawned {
            Ok(handle) => match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => {
                tracing::warn!("cannot start a validation thread ({e}); validating in place");
                validate_on_this_stack(registry, env, prompt, partial, limits)
            }
        }
    })
}

fn validate_on_this_stack(
    registry: &Registry,
    env: &Env,
    prompt: &Json,
    partial: Option<&[String]>,
    limits: &Limits,
) -> Result<Validated, PromptError> {
    let empty = Map::new();
    let map = match prompt {
        Json::Object(map) => map,
        // ComfyUI iterates the prompt's keys: an empty list has none, so it has no outputs.
        Json::Array(items) if items.is_empty() => &empty,
        _ => {
            return Err(PromptError::new(
                "invalid_prompt",
                "Invalid prompt",
                "The prompt must be a JSON object",
            ));
        }
    };
    if map.len() > limits.max_nodes {
        let details = format!(
            "The prompt has {} nodes; this server accepts at most {}",
            map.len(),
            limits.max_nodes
        );
        return Err(PromptError::new(
            "invalid_prompt",
            "Prompt too large",
            &details,
        ));
    }
    let outputs = find_outputs(registry, map, partial)?;
    let mut v = Validator {
        registry,
        env,
        limits,
        prompt: map.clone(),
        order: Vec::new(),
        validated: HashMap::new(),
    };
    let mut good = Vec::new();
    let mut failed: Vec<(String, Vec<ErrorInfo>)> = Vec::new();
    let mut node_errors = Map::new();
    for o in &outputs {
        let verdict = match v.validate_node(o, &mut Vec::new()) {
            Ok(verdict) => verdict,
            Err(ex) => {
                let reasons = vec![ErrorInfo::new(
                    "exception_during_validation",
                    "Exception when validating node",
                    ex.message.clone(),
                    json!({"exception_type": ex.type_name, "traceback": []}),
                )];
                v.record(
                    o,
                    Verdict {
                        ok: false,
                        errors: reasons.clone(),
                    },
                );
                Verdict {
                    ok: false,
                    errors: reasons,
                }
            }
        };
        if verdict.ok {
            good.push(o.clone());
            continue;
        }
        tracing::warn!(output = %o, "prompt output failed validation and is ignored");
        failed.push((o.clone(), verdict.errors));
        // ComfyUI walks everything validated so far for each failed output.
        for id in &v.order {
            let r = &v.validated[id];
            if r.ok || r.errors.is_empty() {
                continue;
            }
            let entry = node_errors.entry(id.clone()).or_insert_with(|| {
                json!({
                    "errors": r.errors.iter().map(ErrorInfo::to_json).collect::<Vec<_>>(),
                    "dependent_outputs": [],
                    "class_type": class_type_of(&v.prompt, id),
                })
            });
            if let Some(deps) = entry["dependent_outputs"].as_array_mut() {
                deps.push(json!(o));
            }
        }
    }
    if good.is_empty() {
        let details: Vec<String> = failed
            .iter()
            .flat_map(|(_, es)| es.iter().map(|e| format!("{}: {}", e.message, e.details)))
            .collect();
        return Err(PromptError {
            error: ErrorInfo::new(
                "prompt_outputs_failed_validation",
                "Prompt outputs failed validation",
                details.join("\n"),
                json!({}),
            ),
            node_errors,
        });
    }
    Ok(Validated {
        prompt: Prompt::from_json(v.prompt),
        outputs: good,
        node_errors,
    })
}

fn class_type_of(prompt: &Map<String, Json>, id: &str) -> Json {
    prompt
        .get(id)
        .and_then(|n| n.get("class_type"))
        .cloned()
        .unwrap_or(Json::Null)
}

fn find_outputs(
    registry: &Registry,
    map: &Map<String, Json>,
    partial: Option<&[String]>,
) -> Result<Vec<String>, PromptError> {
    let mut outputs = Vec::new();
    for (id, node) in map {
        let title = node.pointer("/_meta/title").and_then(Json::as_str);
        let Some(class_type) = node.get("class_type") else {
            let name = title
                .map(str::to_string)
                .unwrap_or_else(|| format!("ID #{id}"));
            return Err(PromptError {
                error: ErrorInfo::new(
                    "missing_node_type",
                    format!(
                        "Node '{name}' has no class_type. The workflow may be corrupted or a custom node is missing."
                    ),
                    format!("Node ID '#{id}'"),
                    json!({"node_id": id, "class_type": null, "node_title": title}),
                ),
                node_errors: Map::new(),
            });
        };
        let def = class_type.as_str().and_then(|c| registry.get(c));
        let Some(def) = def else {
            let title = title
                .map(str::to_string)
                .unwrap_or_else(|| pyfmt::str_of(class_type));
            return Err(PromptError {
                error: ErrorInfo::new(
                    "missing_node_type",
                    format!("Node '{title}' not found. The custom node may not be installed."),
                    format!("Node ID '#{id}'"),
                    json!({"node_id": id, "class_type": class_type, "node_title": title}),
                ),
                node_errors: Map::new(),
            });
        };
        if def.schema.output_node && partial.is_none_or(|p| p.iter().any(|t| t == id)) {
            outputs.push(id.clone());
        }
    }
    if outputs.is_empty() {
        return Err(PromptError::new(
            "prompt_no_outputs",
            "Prompt has no outputs",
            "",
        ));
    }
    Ok(outputs)
}

struct Validator<'a> {
    registry: &'a Registry,
    env: &'a Env,
    limits: &'a Limits,
    prompt: Map<String, Json>,
    order: Vec<String>,
    validated: HashMap<String, Verdict>,
}

impl Validator<'_> {
    fn record(&mut self, id: &str, verdict: Verdict) {
        if self.validated.insert(id.to_string(), verdict).is_none() {
            self.order.push(id.to_string());
        }
    }

    fn def_of(&self, id: &str) -> Option<&NodeDef> {
        let class_type = self.prompt.get(id)?.get("class_type")?.as_str()?;
        self.registry.get(class_type)
    }

    fn cycle(&mut self, id: &str, visiting: &[String]) -> Verdict {
        let start = visiting.iter().position(|v| v == id).unwrap_or(0);
        let mut path: Vec<String> = visiting[start..].to_vec();
        path.push(id.to_string());
        let mut nodes: Vec<String> = Vec::new();
        for n in &path {
            if !nodes.contains(n) {
                nodes.push(n.clone());
            }
        }
        let details = path
            .iter()
            .map(|n| format!("{n} ({})", pyfmt::str_of(&class_type_of(&self.prompt, n))))
            .collect::<Vec<_>>()
            .join(" -> ");
        for n in &nodes {
            let error = ErrorInfo::new(
                "dependency_cycle",
                "Dependency cycle detected",
                details.clone(),
                json!({"node_id": n, "cycle_nodes": nodes}),
            );
            self.record(
                n,
                Verdict {
                    ok: false,
                    errors: vec![error],
                },
            );
        }
        self.validated[id].clone()
    }

    fn validate_node(
        &mut self,
        id: &str,
        visiting: &mut Vec<String>,
    ) -> Result<Verdict, PyException> {
        if let Some(v) = self.validated.get(id) {
            return Ok(v.clone());
        }
        if visiting.iter().any(|v| v == id) {
            return Ok(self.cycle(id, visiting));
        }
        if visiting.len() >= self.limits.max_depth {
            return Err(PyException {
                type_name: "RecursionError",
                message: "maximum recursion depth exceeded while validating the prompt".into(),
            });
        }
        let Some(def) = self.def_of(id).cloned() else {
            return Err(PyException {
                type_name: "KeyError",
                message: pyfmt::str_repr(id),
            });
        };
        let schema = &def.schema;
        let skip_builtin: Vec<&str> = def
            .validate
            .as_ref()
            .map(|(names, _)| names.clone())
            .unwrap_or_default();
        let mut errors = Vec::new();
        let mut valid = true;
        let given = self.prompt[id].get("inputs").cloned().unwrap_or(Json::Null);
        let inputs = schema.live_inputs(|name| given.get(name));
        // With dynamic inputs, ComfyUI names a missing input by its last segment.
        let dynamic = inputs.iter().any(|i| i.name.contains('.'));
        for input in &inputs {
            let Some(val) = given.get(&input.name).cloned() else {
                if input.section == Section::Required {
                    let details = match input.name.rsplit_once('.') {
                        Some((_, last)) if dynamic => last.to_string(),
                        _ => input.name.clone(),
                    };
                    errors.push(ErrorInfo::new(
                        "required_input_missing",
                        "Required input is missing",
                        details,
                        json!({"input_name": input.name}),
                    ));
                }
                continue;
            };
            let info = schema.input_config(input, self.env);
            if let Json::Array(link) = &val {
                match self.check_link(id, schema, input, &info, link, visiting)? {
                    LinkCheck::Ok => {}
                    LinkCheck::UpstreamInvalid => valid = false,
                    LinkCheck::Error(e) => errors.push(e),
                }
                continue;
            }
            match coerce(&input.io_type, &val) {
                Err(message) => errors.push(ErrorInfo::new(
                    "invalid_input_type",
                    format!("Failed to convert an input value to a {} value", input.io_type.name()),
                    format!("{}, {}, {}", input.name, pyfmt::str_of(unwrap_value(&val)), message),
                    json!({"input_name": input.name, "input_config": info, "received_value": unwrap_value(&val), "exception_message": message}),
                )),
                Ok(converted) => {
                    if let Some(inputs) = self.prompt[id].get_mut("inputs").and_then(Json::as_object_mut) {
                        inputs.insert(input.name.clone(), converted.clone());
                    }
                    if !skip_builtin.contains(&input.name.as_str())
                        && let Some(e) = check_range_and_choices(input, &info, &converted, self.env)
                    {
                        errors.push(e);
                    }
                }
            }
        }
        if let Some((names, f)) = &def.validate {
            errors.extend(self.custom_validation(id, schema, names, *f));
        }
        let previous = self.validated.get(id).cloned().unwrap_or(Verdict {
            ok: true,
            errors: Vec::new(),
        });
        let mut all = previous.errors.clone();
        for e in &errors {
            if !all.contains(e) {
                all.push(e.clone());
            }
        }
        let verdict = Verdict {
            ok: previous.ok && valid && errors.is_empty(),
            errors: all,
        };
        self.record(id, verdict.clone());
        Ok(verdict)
    }

    fn check_link(
        &mut self,
        id: &str,
        schema: &NodeSchema,
        input: &nodes::InputDef,
        info: &Json,
        link: &[Json],
        visiting: &mut Vec<String>,
    ) -> Result<LinkCheck, PyException> {
        let _ = schema;
        if link.len() != 2 {
            return Ok(LinkCheck::Error(ErrorInfo::new(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                input.name.clone(),
                json!({"input_name": input.name, "input_config": info, "received_value": link}),
            )));
        }
        let source_id = match &link[0] {
            Json::String(s) if self.prompt.contains_key(s) => s.clone(),
            other => {
                return Err(PyException {
                    type_name: "KeyError",
                    message: pyfmt::repr(other),
                });
            }
        };
        let returns: Vec<String> = match self.def_of(&source_id) {
            Some(d) => d.schema.outputs.iter().map(|o| o.io_type.clone()).collect(),
            None => {
                return Err(PyException {
                    type_name: "KeyError",
                    message: pyfmt::str_repr(&source_id),
                });
            }
        };
        let Some(slot) = slot_index(&link[1]) else {
            let (type_name, message) = if link[1].is_i64() {
                ("IndexError", "tuple index out of range".to_string())
            } else {
                let kind = pyfmt::type_name(&link[1]);
                (
                    "TypeError",
                    format!("tuple indices must be integers or slices, not {kind}"),
                )
            };
            return Err(PyException { type_name, message });
        };
        let Some(received) = returns.get(slot) else {
            return Err(PyException {
                type_name: "IndexError",
                message: "tuple index out of range".into(),
            });
        };
        let expected = match &input.io_type {
            IoType::Combo(_) if schema_is_v1(schema) => None,
            other => Some(other.name().to_string()),
        };
        if !types_match(received, expected.as_deref()) {
            let expected_text = expected.clone().unwrap_or_else(|| pyfmt::repr(&info[0]));
            return Ok(LinkCheck::Error(ErrorInfo::new(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                format!(
                    "{}, received_type({received}) mismatch input_type({expected_text})",
                    input.name
                ),
                json!({"input_name": input.name, "input_config": info, "received_type": received, "linked_node": link}),
            )));
        }
        visiting.push(id.to_string());
        let result = self.validate_node(&source_id, visiting);
        visiting.pop();
        match result {
            Ok(v) if v.ok => Ok(LinkCheck::Ok),
            Ok(_) => Ok(LinkCheck::UpstreamInvalid),
            Err(ex) => {
                let reasons = vec![ErrorInfo::new(
                    "exception_during_inner_validation",
                    "Exception when validating inner node",
                    ex.message.clone(),
                    json!({"input_name": input.name, "input_config": info, "exception_message": ex.message,
                           "exception_type": ex.type_name, "traceback": [], "linked_node": link}),
                )];
                self.validated.remove(&source_id);
                self.record(
                    &source_id,
                    Verdict {
                        ok: false,
                        errors: reasons,
                    },
                );
                Ok(LinkCheck::UpstreamInvalid)
            }
        }
    }

    fn custom_validation(
        &self,
        id: &str,
        schema: &NodeSchema,
        names: &[&'static str],
        f: nodes::registry::ValidateFn,
    ) -> Vec<ErrorInfo> {
        let given = self.prompt[id]
            .get("inputs")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        let mut inputs = Inputs::new();
        let mut present = Vec::new();
        for name in names {
            let Some(val) = given.get(*name) else {
                continue;
            };
            present.push(name.to_string());
            if !matches!(val, Json::Array(_))
                && let Some(def) = schema.find_input(name)
            {
                inputs.insert(name, vec![const_to_value(&def.io_type, val)]);
            }
        }
        let Err(reason) = f(self.env, &inputs) else {
            return Vec::new();
        };
        if present.is_empty() {
            return vec![ErrorInfo::new(
                "custom_validation_failed",
                "Custom validation failed for node",
                reason,
                json!({}),
            )];
        }
        present
            .iter()
            .map(|x| {
                ErrorInfo::new(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    format!("{x} - {reason}"),
                    json!({"input_name": x}),
                )
            })
            .collect()
    }
}

enum LinkCheck {
    Ok,
    UpstreamInvalid,
    Error(ErrorInfo),
}

fn schema_is_v1(schema: &NodeSchema) -> bool {
    schema.style == nodes::schema::Style::V1
}

/// ComfyUI's `validate_node_input` (non-strict): equal, `*` on either side, or overlapping
/// comma-separated unions. `expected == None` stands for a V1 combo (a list type), which only
/// `*` can feed.
pub fn types_match(received: &str, expected: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return received == "*";
    };
    if received == expected || received == "*" || expected == "*" {
        return true;
    }
    if received == "COMFY_MATCHTYPE_V3" || expected == "COMFY_MATCHTYPE_V3" {
        return true;
    }
    let r: Vec<&str> = received.split(',').map(str::trim).collect();
    let e: Vec<&str> = expected.split(',').map(str::trim).collect();
    r.contains(&"*") || e.contains(&"*") || r.iter().any(|t| e.contains(t))
}

fn unwrap_value(v: &Json) -> &Json {
    match v {
        Json::Object(m) if m.contains_key("__value__") => &m["__value__"],
        other => other,
    }
}

/// Coerces a constant to its declared type as ComfyUI does (`int()`, `float()`, `str()`,
/// `bool()` after unwrapping `{"__value__": ...}`); other types pass through unchanged.
fn coerce(io_type: &IoType, val: &Json) -> Result<Json, String> {
    let v = unwrap_value(val);
    Ok(match io_type {
        // A JavaScript client sends u64::MAX as 18446744073709552000, which JSON parsing turns
        // into a float; Python keeps it as an int. Keep such integral floats as they are so the
        // range check reports them with their integer digits.
        IoType::Int if is_big_integral_float(v) => v.clone(),
        IoType::Int => nodes::value::int_to_json(pyfmt::to_int(v)?),
        IoType::Float => {
            let f = pyfmt::to_float(v)?;
            serde_json::Number::from_f64(f)
                .map(Json::Number)
                .ok_or_else(|| format!("{f} is not a finite number"))?
        }
        IoType::String => Json::String(pyfmt::str_of(v)),
        IoType::Boolean => Json::Bool(pyfmt::truthy(v)),
        _ => v.clone(),
    })
}

fn as_f64(v: &Json) -> Option<f64> {
    v.as_f64()
}

fn less(a: &Json, b: &Json) -> bool {
    match (
        a.as_i64().map(i128::from).or(a.as_u64().map(i128::from)),
        b.as_i64().map(i128::from).or(b.as_u64().map(i128::from)),
    ) {
        (Some(x), Some(y)) => x < y,
        _ => matches!((as_f64(a), as_f64(b)), (Some(x), Some(y)) if x < y),
    }
}

fn is_big_integral_float(v: &Json) -> bool {
    !v.is_i64()
        && !v.is_u64()
        && v.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() >= 9.2e18)
}

/// How Python prints a coerced value: an INT held as an integral float prints its digits.
fn value_text(input: &nodes::InputDef, val: &Json) -> String {
    match (&input.io_type, val.as_f64()) {
        (IoType::Int, Some(f)) if is_big_integral_float(val) => pyfmt::integral_float_digits(f),
        _ => pyfmt::repr(val),
    }
}

fn check_range_and_choices(
    input: &nodes::InputDef,
    info: &Json,
    val: &Json,
    env: &Env,
) -> Option<ErrorInfo> {
    let name = &input.name;
    if val.is_number() {
        if let Some(min) = input.option("min").filter(|m| m.is_number())
            && less(val, min)
        {
            return Some(ErrorInfo::new(
                "value_smaller_than_min",
                format!(
                    "Value {} smaller than min of {}",
                    value_text(input, val),
                    pyfmt::repr(min)
                ),
                name.clone(),
                json!({"input_name": name, "input_config": info, "received_value": val}),
            ));
        }
        if let Some(max) = input.option("max").filter(|m| m.is_number())
            && less(max, val)
        {
            return Some(ErrorInfo::new(
                "value_bigger_than_max",
                format!(
                    "Value {} bigger than max of {}",
                    value_text(input, val),
                    pyfmt::repr(max)
                ),
                name.clone(),
                json!({"input_name": name, "input_config": info, "received_value": val}),
            ));
        }
    }
    let IoType::Combo(choices) = &input.io_type else {
        return None;
    };
    let options = choices.resolve(env);
    let multiselect = input.option("multiselect").is_some_and(pyfmt::truthy);
    let candidates: Vec<&Json> = match val {
        Json::Array(items) if multiselect => items.iter().collect(),
        other => vec![other],
    };
    let invalid: Vec<&Json> = candidates
        .into_iter()
        .filter(|v| !v.as_str().is_some_and(|s| options.iter().any(|o| o == s)))
        .collect();
    if invalid.is_empty() {
        return None;
    }
    let (list_info, config) = if options.len() > 20 {
        (format!("(list of length {})", options.len()), Json::Null)
    } else {
        (pyfmt::repr(&json!(options)), info.clone())
    };
    let shown = invalid
        .iter()
        .map(|v| pyfmt::repr(v))
        .collect::<Vec<_>>()
        .join(", ");
    Some(ErrorInfo::new(
        "value_not_in_list",
        "Value not in list",
        format!("{name}: {shown} not in {list_info}"),
        json!({"input_name": name, "input_config": config, "received_value": val}),
    ))
}

/// Turns a (coerced) constant into the value a node receives, by its declared type.
pub fn const_to_value(io_type: &IoType, v: &Json) -> Value {
    match (io_type, v) {
        (IoType::Int, _) => pyfmt::to_int(v)
            .map(Value::Int)
            .unwrap_or_else(|_| Value::Json(v.clone())),
        (IoType::Float, Json::Number(n)) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        (IoType::Boolean, Json::Bool(b)) => Value::Boolean(*b),
        (_, Json::String(s)) => Value::String(s.clone()),
        (_, Json::Bool(b)) => Value::Boolean(*b),
        _ => Value::Json(v.clone()),
    }
}

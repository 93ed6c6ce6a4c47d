//! Runs a validated prompt: computes cache signatures, replays cached outputs, executes the
//! remaining nodes in ComfyUI's order (once per list index unless a node takes whole lists),
//! reports progress, and turns failures into `execution_error` / `execution_interrupted`.

use std::collections::HashMap;
use std::sync::Arc;

use nodes::registry::Fingerprint;
use nodes::{
    Ctx, Env, Inputs, Interrupt, NodeDef, NodeError, Outputs, Preview, Registry, Reporter, Slot,
    Value,
};
use parking_lot::Mutex;
use serde_json::{Map, Value as Json, json};

use crate::cache::{CacheKey, CachePolicy, CachedOutput, OutputCache};
use crate::events::{Event, EventSink, now_ms};
use crate::graph::ExecutionList;
use crate::prompt::{InputValue, Prompt};
use crate::validate::{Limits, PromptError, Validated, const_to_value, validate_prompt};

/// One prompt to run.
pub struct Job<'a> {
    /// Its id.
    pub prompt_id: &'a str,
    /// The validated prompt.
    pub prompt: &'a Prompt,
    /// The output nodes to run.
    pub outputs: &'a [String],
    /// `extra_data` (for `extra_pnginfo`).
    pub extra_data: &'a Json,
    /// The user's folders and models.
    pub env: &'a Env,
}

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every selected output ran.
    Success,
    /// A node failed.
    Error,
    /// Interrupted.
    Interrupted,
}

/// What running a prompt produced (the material of its history entry).
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    /// How it ended.
    pub outcome: Outcome,
    /// The lifecycle messages `[event, data]` for `status.messages`.
    pub messages: Vec<(String, Json)>,
    /// UI output per node (`history.outputs`).
    pub outputs: Map<String, Json>,
    /// Meta per node (`history.meta`).
    pub meta: Map<String, Json>,
    /// Nodes that ran in this prompt (not served from cache).
    pub executed: Vec<String>,
    /// Nodes whose outputs came from the cache.
    pub cached: Vec<String>,
}

impl ExecutionResult {
    /// The `execution_error` payload, if the prompt failed.
    pub fn error(&self) -> Option<&Json> {
        self.messages
            .iter()
            .find(|(k, _)| k == "execution_error")
            .map(|(_, d)| d)
    }
}

/// A graph interpreter with its node registry and output cache. One engine runs one prompt at
/// a time; a worker owns one.
pub struct Engine {
    registry: Arc<Registry>,
    cache: OutputCache,
    interrupt: Interrupt,
    limits: Limits,
}

type SlotValues = Arc<Vec<Vec<Value>>>;

impl Engine {
    /// An engine over `registry` with a cache bounded by `policy`.
    pub fn new(registry: Arc<Registry>, policy: CachePolicy) -> Self {
        Self {
            registry,
            cache: OutputCache::new(policy),
            interrupt: Interrupt::default(),
            limits: Limits::default(),
        }
    }

    /// Replaces the prompt size limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A handle to this engine's interrupt flag (set it to stop the running prompt).
    pub fn interrupt_handle(&self) -> Interrupt {
        self.interrupt.clone()
    }

    /// Drops all cached outputs.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Number of cached node outputs.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Validates an API prompt (see [`validate_prompt`]).
    pub fn validate(
        &self,
        env: &Env,
        prompt: &Json,
        partial: Option<&[String]>,
    ) -> Result<Validated, PromptError> {
        validate_prompt(&self.registry, env, prompt, partial, &self.limits)
    }

    /// Runs a validated prompt, sending events to `sink`.
    pub fn execute(&mut self, job: &Job, sink: &dyn EventSink) -> ExecutionResult {
        self.interrupt.reset();
        let mut run = Run::new(job, sink);
        run.lifecycle(Event::ExecutionStart {
            prompt_id: job.prompt_id.into(),
            timestamp: now_ms(),
        });
        let keys = signatures(&self.registry, job);
        let mut results: HashMap<String, SlotValues> = HashMap::new();
        let mut cached_ui: HashMap<String, Option<Json>> = HashMap::new();
        let mut cached = Vec::new();
        for id in job.prompt.ids() {
            if let Some(hit) = keys.get(id).and_then(|k| self.cache.get(k)) {
                results.insert(id.clone(), hit.slots.clone());
                cached_ui.insert(id.clone(), hit.ui.clone());
                cached.push(id.clone());
            }
        }
        run.lifecycle(Event::ExecutionCached {
            prompt_id: job.prompt_id.into(),
            nodes: cached.clone(),
            timestamp: now_ms(),
        });
        // ComfyUI reports every node id its output cache knows for the prompt: all of them.
        let prompt_ids: Vec<String> = job.prompt.ids().to_vec();
        let mut list = ExecutionList::new(job.prompt, &self.registry, job.outputs, &|id| {
            results.contains_key(id)
        });
        let outcome = loop {
            let id = match list.next() {
                Ok(Some(id)) => id,
                Ok(None) => break Outcome::Success,
                Err(cycle) => {
                    let id = cycle.nodes.first().cloned().unwrap_or_default();
                    let message = format!(
                        "Dependency cycle detected among nodes {}",
                        cycle.nodes.join(", ")
                    );
                    run.fail(
                        &id,
                        class_of(job, &id),
                        "graph.DependencyCycleError",
                        &message,
                        vec![],
                        &Inputs::new(),
                        &prompt_ids,
                    );
                    break Outcome::Error;
                }
            };
            if self.interrupt.is_set() {
                run.interrupted(&id, class_of(job, &id));
                break Outcome::Interrupted;
            }
            if let Some(ui) = cached_ui.get(&id) {
                run.replay_cached(&id, ui.clone());
                list.complete(&id);
                continue;
            }
            match run.execute_node(&self.registry, &self.interrupt, &id, &results) {
                Ok(output) => {
                    if let Some(key) = keys.get(&id) {
                        self.cache.insert(*key, output.clone());
                    }
                    results.insert(id.clone(), output.slots);
                    run.executed.push(id.clone());
                    list.complete(&id);
                }
                Err(failure) => {
                    let class = class_of(job, &id);
                    if matches!(failure.error, NodeError::Interrupted) {
                        run.interrupted(&id, class);
                        break Outcome::Interrupted;
                    }
                    let traceback = error_chain(&failure.error);
                    let message = failure.error.to_string();
                    run.fail(
                        &id,
                        class,
                        failure.error.exception_type(),
                        &message,
                        traceback,
                        &failure.inputs,
                        &prompt_ids,
                    );
                    break Outcome::Error;
                }
            }
        };
        if outcome == Outcome::Success {
            run.lifecycle(Event::ExecutionSuccess {
                prompt_id: job.prompt_id.into(),
                timestamp: now_ms(),
            });
        }
        ExecutionResult {
            outcome,
            messages: run.messages,
            outputs: run.ui_outputs,
            meta: run.meta,
            executed: run.executed,
            cached,
        }
    }
}

fn class_of<'a>(job: &'a Job, id: &str) -> &'a str {
    job.prompt
        .node(id)
        .map(|n| n.class_type.as_str())
        .unwrap_or("")
}

fn error_chain(e: &NodeError) -> Vec<String> {
    let mut lines = vec![format!("{}: {}\n", e.exception_type(), e)];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        lines.push(format!("caused by: {s}\n"));
        source = s.source();
    }
    lines
}

/// Signatures of every node upstream of the job's outputs (ComfyUI's input-signature keys, as
/// a Merkle hash: a node's key covers its class, fingerprint, constants and its ancestors' keys).
fn signatures(registry: &Registry, job: &Job) -> HashMap<String, CacheKey> {
    let mut keys: HashMap<String, CacheKey> = HashMap::new();
    let mut stack: Vec<(String, bool)> = job.outputs.iter().map(|o| (o.clone(), false)).collect();
    while let Some((id, expanded)) = stack.pop() {
        if keys.contains_key(&id) {
            continue;
        }
        let Some(node) = job.prompt.node(&id) else {
            continue;
        };
        let def = registry.get(&node.class_type);
        let parents: Vec<&String> = node
            .inputs
            .iter()
            .filter_map(|(name, v)| match v {
                InputValue::Link { node, .. }
                    if def.is_some_and(|d| d.schema.find_input(name).is_some()) =>
                {
                    Some(node)
                }
                _ => None,
            })
            .collect();
        if !expanded {
            stack.push((id.clone(), true));
            stack.extend(
                parents
                    .into_iter()
                    .filter(|p| !keys.contains_key(*p))
                    .map(|p| (p.clone(), false)),
            );
            continue;
        }
        let key = node_key(job, def, &id, &keys);
        keys.insert(id, key);
    }
    keys
}

fn node_key(
    job: &Job,
    def: Option<&NodeDef>,
    id: &str,
    keys: &HashMap<String, CacheKey>,
) -> CacheKey {
    let Some(node) = job.prompt.node(id) else {
        return [0; 32];
    };
    let mut h = blake3::Hasher::new();
    h.update(b"scope\0");
    h.update(job.env.scope.as_bytes());
    h.update(b"\0class\0");
    h.update(node.class_type.as_bytes());
    if let Some(def) = def {
        if let Some(f) = def.fingerprint {
            match f(job.env, &constant_inputs(def, node)) {
                Fingerprint::Value(v) => {
                    h.update(b"\0fp\0");
                    h.update(v.as_bytes());
                }
                Fingerprint::Always => {
                    h.update(b"\0always\0");
                    h.update(job.prompt_id.as_bytes());
                    h.update(uuid::Uuid::new_v4().as_bytes());
                }
            }
        }
        if def.schema.not_idempotent {
            h.update(b"\0id\0");
            h.update(id.as_bytes());
        }
    }
    let mut inputs: Vec<&(String, InputValue)> = node.inputs.iter().collect();
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in inputs {
        h.update(b"\0in\0");
        h.update(name.as_bytes());
        match value {
            InputValue::Link { node: from, slot } => match keys.get(from) {
                Some(k) => {
                    h.update(b"\0link\0");
                    h.update(k);
                    h.update(&slot.to_le_bytes());
                }
                None => {
                    h.update(b"\0dangling\0");
                    h.update(from.as_bytes());
                }
            },
            InputValue::Const(v) => {
                h.update(b"\0const\0");
                h.update(v.to_string().as_bytes());
            }
        }
    }
    *h.finalize().as_bytes()
}

/// The constants a node's dynamic combos were given (they select the live inputs).
fn given_constants<'a>(
    node: &'a crate::prompt::PromptNode,
) -> impl Fn(&str) -> Option<&'a Json> + Copy + 'a {
    move |name| match node.input(name) {
        Some(InputValue::Const(v)) => Some(v),
        _ => None,
    }
}

fn constant_inputs(def: &NodeDef, node: &crate::prompt::PromptNode) -> Inputs {
    let mut inputs = Inputs::new();
    for input in &def.schema.live_inputs(given_constants(node)) {
        if let Some(InputValue::Const(v)) = node.input(&input.name) {
            inputs.insert(&input.name, vec![const_to_value(&input.io_type, v)]);
        }
    }
    inputs
}

/// A failed node call, with the inputs it was called with (for `current_inputs`).
struct Failure {
    error: NodeError,
    inputs: Inputs,
}

/// The state of one prompt's execution.
struct Run<'a> {
    job: &'a Job<'a>,
    sink: &'a dyn EventSink,
    messages: Vec<(String, Json)>,
    ui_outputs: Map<String, Json>,
    meta: Map<String, Json>,
    executed: Vec<String>,
    progress: Mutex<Map<String, Json>>,
}

impl<'a> Run<'a> {
    fn new(job: &'a Job<'a>, sink: &'a dyn EventSink) -> Self {
        Self {
            job,
            sink,
            messages: Vec::new(),
            ui_outputs: Map::new(),
            meta: Map::new(),
            executed: Vec::new(),
            progress: Mutex::new(Map::new()),
        }
    }

    fn lifecycle(&mut self, event: Event) {
        if let Some(data) = event.data() {
            self.messages.push((event.name().to_string(), data));
        }
        self.sink.emit(event);
    }

    fn set_progress(&self, node: &str, value: f64, max: f64, state: &str) {
        let nodes = {
            let mut map = self.progress.lock();
            map.insert(
                node.to_string(),
                json!({"value": value, "max": max, "state": state, "node_id": node,
                       "prompt_id": self.job.prompt_id, "display_node_id": node,
                       "parent_node_id": null, "real_node_id": node}),
            );
            map.clone()
        };
        self.sink.emit(Event::ProgressState {
            prompt_id: self.job.prompt_id.into(),
            nodes,
        });
    }

    fn node_meta(node: &str) -> Json {
        json!({"node_id": node, "display_node": node, "parent_node": null, "real_node_id": node})
    }

    fn replay_cached(&mut self, id: &str, ui: Option<Json>) {
        let output = ui
            .as_ref()
            .and_then(|u| u.get("output"))
            .cloned()
            .unwrap_or(Json::Null);
        self.sink.emit(Event::Executed {
            prompt_id: self.job.prompt_id.into(),
            node: id.into(),
            output: output.clone(),
        });
        if !output.is_null() {
            self.ui_outputs.insert(id.into(), output);
            self.meta.insert(id.into(), Self::node_meta(id));
        }
        self.set_progress(id, 1.0, 1.0, "finished");
    }

    fn gather(
        &self,
        def: &NodeDef,
        id: &str,
        results: &HashMap<String, SlotValues>,
    ) -> Result<Vec<(String, Vec<Value>)>, NodeError> {
        let node = self
            .job
            .prompt
            .node(id)
            .ok_or_else(|| NodeError::Runtime(format!("node {id} is not in the prompt")))?;
        let mut gathered = Vec::new();
        for input in &def.schema.live_inputs(given_constants(node)) {
            let values = match node.input(&input.name) {
                None => continue,
                Some(InputValue::Const(v)) => vec![const_to_value(&input.io_type, v)],
                Some(InputValue::Link { node: from, slot }) => results
                    .get(from)
                    .and_then(|slots| slots.get(*slot))
                    .cloned()
                    .ok_or_else(|| NodeError::Runtime(format!("input '{}' of node {id}: output {slot} of node {from} is not available", input.name)))?,
            };
            gathered.push((input.name.clone(), values));
        }
        Ok(gathered)
    }

    fn execute_node(
        &mut self,
        registry: &Registry,
        interrupt: &Interrupt,
        id: &str,
        results: &HashMap<String, SlotValues>,
    ) -> Result<CachedOutput, Failure> {
        let def = registry
            .get(class_of(self.job, id))
            .ok_or_else(|| Failure {
                error: NodeError::Runtime(format!("unknown node type for {id}")),
                inputs: Inputs::new(),
            })?;
        let gathered = self.gather(def, id, results).map_err(|error| Failure {
            error,
            inputs: Inputs::new(),
        })?;
        let mut all = Inputs::new();
        for (name, values) in &gathered {
            all.insert(name, values.clone());
        }
        // ComfyUI starts the node's progress before announcing it.
        self.set_progress(id, 0.0, 1.0, "running");
        self.sink.emit(Event::Executing {
            prompt_id: self.job.prompt_id.into(),
            node: Some(id.into()),
        });
        let calls = self
            .call_node(def, interrupt, id, &gathered)
            .map_err(|error| Failure {
                error,
                inputs: all.clone(),
            })?;
        let slots = merge_slots(def, &calls).map_err(|error| Failure {
            error,
            inputs: all.clone(),
        })?;
        let ui = merge_ui(&calls);
        let ui_entry = ui.map(|output| {
            self.sink.emit(Event::Executed {
                prompt_id: self.job.prompt_id.into(),
                node: id.into(),
                output: output.clone(),
            });
            self.ui_outputs.insert(id.into(), output.clone());
            self.meta.insert(id.into(), Self::node_meta(id));
            json!({"output": output, "meta": Self::node_meta(id)})
        });
        self.set_progress(id, 1.0, 1.0, "finished");
        Ok(CachedOutput {
            slots: Arc::new(slots),
            ui: ui_entry,
        })
    }

    fn call_node(
        &self,
        def: &NodeDef,
        interrupt: &Interrupt,
        id: &str,
        gathered: &[(String, Vec<Value>)],
    ) -> Result<Vec<Outputs>, NodeError> {
        let reporter = ProgressReporter { run: self };
        let ctx = Ctx {
            env: self.job.env,
            node_id: id,
            prompt: &self.job.prompt.json,
            extra_pnginfo: self.job.extra_data.get("extra_pnginfo"),
            reporter: &reporter,
            interrupt,
        };
        if def.schema.input_is_list {
            let mut inputs = Inputs::new();
            for (name, values) in gathered {
                inputs.insert(name, values.clone());
            }
            ctx.check_interrupt()?;
            return Ok(vec![(def.run)(&ctx, &inputs)?]);
        }
        let calls = gathered
            .iter()
            .map(|(_, v)| v.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut outputs = Vec::with_capacity(calls);
        for i in 0..calls {
            let mut inputs = Inputs::new();
            for (name, values) in gathered {
                let value = values
                    .get(i.min(values.len().saturating_sub(1)))
                    .ok_or_else(|| {
                        NodeError::Value(format!("input '{name}' received an empty list"))
                    })?;
                inputs.insert(name, vec![value.clone()]);
            }
            ctx.check_interrupt()?;
            outputs.push((def.run)(&ctx, &inputs)?);
        }
        Ok(outputs)
    }

    fn interrupted(&mut self, id: &str, class: &str) {
        let data = json!({"prompt_id": self.job.prompt_id, "node_id": id, "node_type": class,
                          "executed": self.executed, "timestamp": now_ms()});
        self.lifecycle(Event::ExecutionInterrupted(data));
    }

    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        id: &str,
        class: &str,
        exception_type: &str,
        message: &str,
        traceback: Vec<String>,
        inputs: &Inputs,
        current_outputs: &[String],
    ) {
        tracing::error!(node = %id, class, %message, "node failed");
        let current_inputs: Map<String, Json> = inputs
            .entries()
            .iter()
            .map(|(name, values)| {
                (
                    name.clone(),
                    Json::Array(values.iter().map(Value::to_report_json).collect()),
                )
            })
            .collect();
        let data = json!({"prompt_id": self.job.prompt_id, "node_id": id, "node_type": class,
                          "executed": self.executed, "exception_message": message,
                          "exception_type": exception_type, "traceback": traceback,
                          "current_inputs": current_inputs, "current_outputs": current_outputs,
                          "timestamp": now_ms()});
        self.lifecycle(Event::ExecutionError(data));
    }
}

fn merge_slots(def: &NodeDef, calls: &[Outputs]) -> Result<Vec<Vec<Value>>, NodeError> {
    let count = def.schema.outputs.len();
    let mut slots: Vec<Vec<Value>> = vec![Vec::new(); count];
    for out in calls {
        if out.slots.len() < count {
            return Err(NodeError::Runtime(format!(
                "node returned {} outputs, {} declared",
                out.slots.len(),
                count
            )));
        }
        for (j, slot) in out.slots.iter().take(count).enumerate() {
            match slot {
                Slot::One(v) => slots[j].push(v.clone()),
                Slot::Many(vs) => slots[j].extend(vs.iter().cloned()),
            }
        }
    }
    Ok(slots)
}

/// Merges the UI dicts of several calls key by key (ComfyUI concatenates the lists, taking the
/// keys of the first dict).
fn merge_ui(calls: &[Outputs]) -> Option<Json> {
    let uis: Vec<&Map<String, Json>> = calls.iter().filter_map(|c| c.ui.as_ref()).collect();
    let first = uis.first()?;
    let mut merged = Map::new();
    for (key, value) in first.iter() {
        let combined = match value {
            Json::Array(_) => Json::Array(
                uis.iter()
                    .filter_map(|u| u.get(key).and_then(Json::as_array))
                    .flat_map(|a| a.iter().cloned())
                    .collect(),
            ),
            other => other.clone(),
        };
        merged.insert(key.clone(), combined);
    }
    (!merged.is_empty()).then_some(Json::Object(merged))
}

struct ProgressReporter<'r, 'a> {
    run: &'r Run<'a>,
}

impl Reporter for ProgressReporter<'_, '_> {
    fn progress(&self, node_id: &str, value: f64, max: f64, preview: Option<Preview>) {
        let prompt_id = self.run.job.prompt_id.to_string();
        self.run.set_progress(node_id, value, max, "running");
        if let Some(p) = preview {
            self.run.sink.emit(Event::Preview {
                prompt_id: prompt_id.clone(),
                node: node_id.into(),
                mime: p.mime,
                bytes: p.bytes,
            });
        }
        self.run.sink.emit(Event::Progress {
            prompt_id,
            node: node_id.into(),
            value,
            max,
        });
    }

    fn text(&self, node_id: &str, text: &str) {
        self.run.sink.emit(Event::ProgressText {
            prompt_id: self.run.job.prompt_id.into(),
            node: node_id.into(),
            text: text.into(),
        });
    }
}

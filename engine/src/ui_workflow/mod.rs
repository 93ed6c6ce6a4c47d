//! UI-format workflows (what the ComfyUI frontend saves: `{"nodes", "links", "definitions"}`)
//! to API-format prompts, as the frontend's `graphToPrompt` builds them when it queues
//! (`src/utils/executionUtil.ts` of `comfyui-frontend-package` 1.58.1).
//!
//! What the conversion does, in the frontend's terms:
//! * every node gets the widgets its `/object_info` definition gives it (plus the extra widgets
//!   of the core extensions: `control_after_generate`, the upload button, ...), and
//!   `widgets_values` fills them in order (dynamic combos such as `ResizeImageMaskNode`'s
//!   `resize_type` insert the widgets of the selected option, named `resize_type.width`);
//! * subgraph instances are flattened: interior nodes get execution ids `"outer:inner"`;
//!   unlinked instance inputs give their promoted widget value to the interior inputs;
//! * muted nodes (mode 2) are dropped and produce nothing; bypassed nodes (mode 4) are dropped
//!   and pass their first input of a matching type through; `Reroute`, `PrimitiveNode`,
//!   `Note`, `MarkdownNote` are frontend-only (a `PrimitiveNode` writes its value into the
//!   widgets it feeds);
//! * each node becomes `{inputs, class_type, _meta: {title, cnr_id?, aux_id?, ver?}}`: widget
//!   values first (arrays wrapped as `{"__value__": [...]}`, widgets that are not inputs left
//!   out), then links `[origin_id, slot]`; links to nodes not in the prompt are removed.
//!
//! * when queueing, text widgets with `dynamicPrompts` lose their comments and resolve `{a|b}`
//!   choices, and save nodes' `filename_prefix` resolves `%Node.widget%` and `%date:...%`.
//!
//! Checked against the real frontend (`tests/fixtures/frontend/README.md`): the widget layout
//! of every reference node, the LTX-2 templates and edge-case workflows, exactly, except that an
//! untitled node of a definition without `display_name` is titled with its class name where the
//! frontend uses its English locale's name. Not reproduced: widgets added by custom-node and
//! 3D-viewer extension code, legacy group nodes (`extra.groupNodes`), the `proxyWidgets`
//! property of subgraph instances saved by some older frontends (the interior values are used),
//! and `MatchType` outputs narrowing their type once connected (they stay `*`, which only matters
//! to bypass type matching).

mod configure;
mod def_node;
mod dynprompt;
mod emit;
mod frontend_nodes;
mod meta;
mod parse;
mod resolve;
mod subgraph_node;
mod widgets;

use configure::Graphs;
use parse::Workflow;
use serde_json::{Map, Value as Json};

pub use dynprompt::{Chooser, SeededChooser};

/// Why a UI workflow could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum UiWorkflowError {
    /// The document is not a well-formed UI workflow.
    #[error("invalid UI workflow: {0}")]
    Invalid(String),
    /// Nodes that would be sent to the server have types nobody knows (`type (node ids)`).
    #[error("unknown node types (missing custom nodes?): {}", .0.join(", "))]
    UnknownNodeTypes(Vec<String>),
    /// A link points at a node or slot that does not exist.
    #[error("broken link: {0}")]
    Link(String),
    /// Links or subgraphs that refer to themselves.
    #[error("circular reference: {0}")]
    Recursion(String),
}

/// Whether `doc` is a UI-format workflow rather than an API prompt.
pub fn is_ui_workflow(doc: &Json) -> bool {
    doc.get("nodes").is_some_and(Json::is_array) && doc.get("links").is_some()
}

/// Conversion settings.
pub struct Options<'a> {
    /// Picks the option of each `{a|b}` dynamic-prompt choice.
    pub chooser: &'a mut dyn Chooser,
    /// The time `%date:...%` filename patterns use.
    pub now: chrono::DateTime<chrono::Local>,
}

/// Converts a UI workflow to an API prompt, with node definitions from `object_info` (the
/// `/object_info` map of class name to definition).
pub fn to_api_prompt(
    workflow: &Json,
    object_info: &Map<String, Json>,
    options: Options,
) -> Result<Map<String, Json>, UiWorkflowError> {
    let nodes = count_nodes(workflow);
    if nodes > MAX_NODES {
        return Err(UiWorkflowError::Invalid(format!(
            "{nodes} nodes (with subgraph definitions); at most {MAX_NODES} are converted"
        )));
    }
    // Links are resolved recursively (through reroutes, bypassed nodes and subgraph
    // boundaries), as deep as the longest chain: a thread with a large stack holds them.
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("ui-workflow".into())
            .stack_size(CONVERSION_STACK_BYTES)
            .spawn_scoped(scope, || convert(workflow, object_info, options));
        match spawned {
            Ok(handle) => match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => Err(UiWorkflowError::Invalid(format!(
                "cannot start the conversion thread: {e}"
            ))),
        }
    })
}

/// Most nodes (root and subgraph definitions together) a workflow may have.
pub const MAX_NODES: usize = 20_000;

/// Stack for the conversion: enough for a chain through [`MAX_NODES`] nodes.
const CONVERSION_STACK_BYTES: usize = 256 << 20;

/// Nodes of a graph and of its subgraph definitions (nested ones too).
fn count_nodes(graph: &Json) -> usize {
    let own = graph
        .get("nodes")
        .and_then(Json::as_array)
        .map_or(0, Vec::len);
    let subgraphs = graph
        .pointer("/definitions/subgraphs")
        .and_then(Json::as_array)
        .map_or(0, |defs| defs.iter().map(count_nodes).sum());
    own + subgraphs
}

fn convert(
    workflow: &Json,
    object_info: &Map<String, Json>,
    options: Options,
) -> Result<Map<String, Json>, UiWorkflowError> {
    let wf = Workflow::parse(workflow)?;
    let graphs = Graphs::build(&wf, object_info)?;
    emit::Emitter {
        graphs: &graphs,
        chooser: options.chooser,
        now: options.now,
    }
    .prompt()
}

/// [`to_api_prompt`] with the definitions of `registry` for `env`, random dynamic-prompt
/// choices and the current time.
pub fn to_api_prompt_with_registry(
    workflow: &Json,
    registry: &nodes::Registry,
    env: &nodes::Env,
) -> Result<Map<String, Json>, UiWorkflowError> {
    let info = match registry.object_info(env) {
        Json::Object(map) => map,
        _ => Map::new(),
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut chooser = SeededChooser::new(seed);
    to_api_prompt(
        workflow,
        &info,
        Options {
            chooser: &mut chooser,
            now: chrono::Local::now(),
        },
    )
}

#[cfg(test)]
mod tests;

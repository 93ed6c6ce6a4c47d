//! Nodes as the frontend has them after loading a workflow (`LGraph.configure`): one scope per
//! graph (the root and each subgraph definition), each node with its widgets, input slots and
//! links. How each kind of node is built lives beside: `def_node.rs` (server nodes),
//! `subgraph_node.rs` (instances), `frontend_nodes.rs` (Reroute, PrimitiveNode, notes).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value as Json};

use super::UiWorkflowError;
use super::def_node::def_node;
use super::frontend_nodes::{apply_primitives, virtual_node};
use super::parse::{IoSlot, Link, RawGraph, RawNode, WidgetValues, Workflow};
use super::subgraph_node::subgraph_node;
use super::widgets::{InputSpec, SlotSpec, WidgetSpec};

/// What a node is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A server node of this class.
    Def(String),
    /// An instance of the subgraph definition with this id.
    Subgraph(String),
    /// The frontend-only `Reroute` node (passes its input through).
    Reroute,
    /// The legacy frontend-only `PrimitiveNode` (a widget feeding widget inputs).
    Primitive,
    /// `Note` / `MarkdownNote`: comments.
    Note,
    /// A type neither the server nor the frontend knows.
    Unknown(String),
}

/// A widget with its current value.
#[derive(Debug, Clone)]
pub(crate) struct Widget {
    pub name: String,
    /// `None` is JavaScript `undefined` (left out of the prompt).
    pub value: Option<Json>,
    pub to_prompt: bool,
    pub saved: bool,
    pub dynamic_prompts: bool,
    pub(crate) dynamic: Option<InputSpec>,
}

impl Widget {
    /// A widget with its default value.
    pub(crate) fn new(spec: &WidgetSpec) -> Self {
        Self {
            name: spec.name.clone(),
            value: spec.default.clone(),
            to_prompt: spec.to_prompt,
            saved: spec.saved,
            dynamic_prompts: spec.dynamic_prompts,
            dynamic: spec.dynamic.clone(),
        }
    }
}

/// An input slot.
#[derive(Debug, Clone)]
pub(crate) struct InSlot {
    pub name: String,
    pub ty: String,
    /// The widget this input belongs to (a widget input, or a promoted subgraph input).
    pub widget: Option<String>,
    pub link: Option<i64>,
}

/// A configured node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub id: String,
    pub kind: Kind,
    pub mode: i64,
    pub title: String,
    pub inputs: Vec<InSlot>,
    pub outputs: Vec<String>,
    pub widgets: Vec<Widget>,
    pub properties: Map<String, Json>,
    /// The saved widget values (the primitive node reads its own).
    pub saved_values: Option<WidgetValues>,
}

impl Node {
    /// Whether the frontend treats the node as virtual (never sent to the server).
    pub(crate) fn is_virtual(&self) -> bool {
        !matches!(self.kind, Kind::Def(_) | Kind::Unknown(_))
    }
    /// The widget named `name`.
    pub(crate) fn widget_mut(&mut self, name: &str) -> Option<&mut Widget> {
        self.widgets.iter_mut().find(|w| w.name == name)
    }
}

/// One graph scope with configured nodes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub nodes: Vec<Node>,
    pub(crate) index: HashMap<String, usize>,
    pub links: BTreeMap<i64, Link>,
    /// For a subgraph definition: its inputs and outputs.
    pub inputs: Vec<IoSlot>,
    pub outputs: Vec<IoSlot>,
}

impl Scope {
    /// The node with id `id`.
    pub(crate) fn node(&self, id: &str) -> Option<&Node> {
        self.index.get(id).map(|&i| &self.nodes[i])
    }

    /// The index of the input slot of `node` that `link` enters.
    pub(crate) fn target_slot(&self, node: &Node, link: &Link) -> Option<usize> {
        node.inputs
            .iter()
            .position(|s| s.link == Some(link.id))
            .or_else(|| (link.target_slot < node.inputs.len()).then_some(link.target_slot))
    }

    /// Links leaving output `slot` of node `id`, in ascending id order.
    pub(crate) fn out_links(&self, id: &str, slot: usize) -> impl Iterator<Item = &Link> {
        self.links
            .values()
            .filter(move |l| l.origin == id && l.origin_slot == slot)
    }
}

/// Every scope of a workflow, configured.
#[derive(Debug, Clone)]
pub(crate) struct Graphs {
    pub root: Scope,
    pub subgraphs: HashMap<String, Scope>,
}

/// The object_info entry of every known class.
pub(crate) type Defs = Map<String, Json>;

impl Graphs {
    /// Configures every node of `wf` against the definitions `defs`.
    pub(crate) fn build(wf: &Workflow, defs: &Defs) -> Result<Self, UiWorkflowError> {
        let mut builder = Builder {
            wf,
            defs,
            done: HashMap::new(),
            building: Vec::new(),
        };
        let mut ids: Vec<&String> = wf.subgraphs.keys().collect();
        ids.sort();
        for id in ids {
            builder.subgraph(id)?;
        }
        let root = builder.scope(&wf.root, Vec::new(), Vec::new())?;
        let mut graphs = Self {
            root,
            subgraphs: builder.done,
        };
        graphs.apply_primitives();
        Ok(graphs)
    }

    /// The legacy `PrimitiveNode`s push their value into the widgets they feed.
    fn apply_primitives(&mut self) {
        apply_primitives(&mut self.root);
        for scope in self.subgraphs.values_mut() {
            apply_primitives(scope);
        }
    }
}

struct Builder<'a> {
    wf: &'a Workflow,
    defs: &'a Defs,
    done: HashMap<String, Scope>,
    building: Vec<String>,
}

impl Builder<'_> {
    fn subgraph(&mut self, id: &str) -> Result<(), UiWorkflowError> {
        if self.done.contains_key(id) {
            return Ok(());
        }
        if self.building.iter().any(|b| b == id) {
            return Err(UiWorkflowError::Recursion(format!(
                "subgraph {id} contains itself"
            )));
        }
        let def = &self.wf.subgraphs[id];
        self.building.push(id.to_string());
        let scope = self.scope(&def.graph, def.inputs.clone(), def.outputs.clone())?;
        self.building.pop();
        self.done.insert(id.to_string(), scope);
        Ok(())
    }

    fn scope(
        &mut self,
        graph: &RawGraph,
        inputs: Vec<IoSlot>,
        outputs: Vec<IoSlot>,
    ) -> Result<Scope, UiWorkflowError> {
        let mut scope = Scope {
            links: graph.links.clone(),
            inputs,
            outputs,
            ..Scope::default()
        };
        for raw in &graph.nodes {
            let node = match self.kind(&raw.ty) {
                Kind::Def(class) => def_node(raw, &class, &self.defs[&class]),
                Kind::Subgraph(id) => {
                    self.subgraph(&id)?;
                    let nested = !self.building.is_empty();
                    subgraph_node(raw, &id, &self.wf.subgraphs[&id].inputs, &self.done, nested)
                }
                kind => virtual_node(raw, kind),
            };
            scope.index.insert(node.id.clone(), scope.nodes.len());
            scope.nodes.push(node);
        }
        attach_array_links(&mut scope);
        Ok(scope)
    }

    fn kind(&self, ty: &str) -> Kind {
        if self.defs.contains_key(ty) {
            return Kind::Def(ty.to_string());
        }
        if self.wf.subgraphs.contains_key(ty) {
            return Kind::Subgraph(ty.to_string());
        }
        match ty {
            "Reroute" => Kind::Reroute,
            "PrimitiveNode" => Kind::Primitive,
            "Note" | "MarkdownNote" => Kind::Note,
            other => Kind::Unknown(other.to_string()),
        }
    }
}

/// Gives each link listed only in the graph's `links` (not in its target's input) to the input
/// at its `target_slot`, as the frontend's link store does.
fn attach_array_links(scope: &mut Scope) {
    let claimed: Vec<i64> = scope
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().filter_map(|s| s.link))
        .collect();
    for link in scope.links.values() {
        if claimed.contains(&link.id) {
            continue;
        }
        let Some(&i) = scope.index.get(&link.target) else {
            continue;
        };
        if let Some(slot) = scope.nodes[i].inputs.get_mut(link.target_slot)
            && slot.link.is_none()
        {
            slot.link = Some(link.id);
        }
    }
}

/// Attaches the saved input links to the slots of the same name; saved inputs the definition
/// does not have are kept (custom scripts add inputs), as the frontend does.
pub(crate) fn attach_links(slots: &[SlotSpec], raw: &RawNode) -> Vec<InSlot> {
    let mut out: Vec<InSlot> = slots
        .iter()
        .map(|s| InSlot {
            name: s.name.clone(),
            ty: s.ty.clone(),
            widget: s.widget.clone(),
            link: None,
        })
        .collect();
    let mut taken = vec![false; out.len()];
    for input in &raw.inputs {
        match out
            .iter()
            .enumerate()
            .position(|(i, s)| !taken[i] && s.name == input.name)
        {
            Some(i) => {
                taken[i] = true;
                out[i].link = input.link;
            }
            None => {
                taken.push(true);
                out.push(InSlot {
                    name: input.name.clone(),
                    ty: "*".into(),
                    widget: None,
                    link: input.link,
                });
            }
        }
    }
    out
}

/// A node's title: the saved one, else `fallback`.
pub(crate) fn title_of(raw: &RawNode, fallback: &str) -> String {
    match &raw.title {
        Some(t) if !t.is_empty() => t.clone(),
        _ => fallback.to_string(),
    }
}

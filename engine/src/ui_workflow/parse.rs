//! Reading a UI-format workflow (the frontend's `LGraph` serialisation): nodes, links, and the
//! subgraph definitions under `definitions.subgraphs`. Root links are arrays
//! `[id, origin_id, origin_slot, target_id, target_slot, type]`; subgraph links are objects with
//! the same fields. Node ids may be numbers or strings and are kept as their canonical text.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value as Json};

use super::UiWorkflowError;

/// The id of a subgraph's input node (links from it come from the instance's inputs).
pub(crate) const SUBGRAPH_INPUT_NODE: &str = "-10";

/// One link of a graph.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub id: i64,
    pub origin: String,
    pub origin_slot: usize,
    pub target: String,
    pub target_slot: usize,
}

/// A node's serialised input slot.
#[derive(Debug, Clone)]
pub(crate) struct RawInput {
    pub name: String,
    pub link: Option<i64>,
}

/// A node's saved widget values.
#[derive(Debug, Clone)]
pub(crate) enum WidgetValues {
    /// The usual positional list.
    List(Vec<Json>),
    /// A name-keyed object (written by some custom-node extensions).
    Named(Map<String, Json>),
}

/// A node as saved.
#[derive(Debug, Clone)]
pub(crate) struct RawNode {
    pub id: String,
    pub ty: String,
    pub mode: i64,
    pub title: Option<String>,
    pub inputs: Vec<RawInput>,
    pub widgets_values: Option<WidgetValues>,
    pub properties: Map<String, Json>,
}

/// One graph scope: the root graph or a subgraph definition's interior.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawGraph {
    pub nodes: Vec<RawNode>,
    pub links: BTreeMap<i64, Link>,
}

/// One input or output of a subgraph definition.
#[derive(Debug, Clone)]
pub(crate) struct IoSlot {
    pub name: String,
    pub ty: String,
    pub link_ids: Vec<i64>,
}

/// A subgraph definition (`definitions.subgraphs[]`).
#[derive(Debug, Clone)]
pub(crate) struct SubgraphDef {
    pub graph: RawGraph,
    pub inputs: Vec<IoSlot>,
    pub outputs: Vec<IoSlot>,
}

/// A whole UI workflow.
#[derive(Debug, Clone)]
pub(crate) struct Workflow {
    pub root: RawGraph,
    pub subgraphs: HashMap<String, SubgraphDef>,
}

fn invalid(what: impl Into<String>) -> UiWorkflowError {
    UiWorkflowError::Invalid(what.into())
}

/// A node id's canonical text (`5` and `"5"` are the same node).
pub(crate) fn id_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => n
            .as_i64()
            .map(|i| i.to_string())
            .or_else(|| n.as_f64().map(|f| format!("{f}"))),
        _ => None,
    }
}

fn slot(v: &Json) -> Option<usize> {
    let n = v.as_f64()?;
    (n >= 0.0 && n.fract() == 0.0).then_some(n as usize)
}

fn parse_link(v: &Json) -> Result<Link, UiWorkflowError> {
    let field = |name: &str, index: usize| match v {
        Json::Array(a) => a.get(index),
        Json::Object(o) => o.get(name),
        _ => None,
    };
    let bad = || invalid(format!("malformed link {v}"));
    Ok(Link {
        id: field("id", 0).and_then(Json::as_i64).ok_or_else(bad)?,
        origin: field("origin_id", 1).and_then(id_text).ok_or_else(bad)?,
        origin_slot: field("origin_slot", 2).and_then(slot).ok_or_else(bad)?,
        target: field("target_id", 3).and_then(id_text).ok_or_else(bad)?,
        target_slot: field("target_slot", 4).and_then(slot).ok_or_else(bad)?,
    })
}

fn parse_node(v: &Json) -> Result<RawNode, UiWorkflowError> {
    let id = v
        .get("id")
        .and_then(id_text)
        .ok_or_else(|| invalid(format!("node without an id: {v}")))?;
    let ty = v
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| invalid(format!("node {id} has no type")))?
        .to_string();
    let inputs = v
        .get("inputs")
        .and_then(Json::as_array)
        .map(|list| {
            list.iter()
                .map(|i| RawInput {
                    name: i["name"].as_str().unwrap_or_default().to_string(),
                    link: i.get("link").and_then(Json::as_i64),
                })
                .collect()
        })
        .unwrap_or_default();
    let widgets_values = match v.get("widgets_values") {
        Some(Json::Array(a)) => Some(WidgetValues::List(a.clone())),
        Some(Json::Object(o)) => Some(WidgetValues::Named(o.clone())),
        _ => None,
    };
    Ok(RawNode {
        id,
        ty,
        mode: v.get("mode").and_then(Json::as_i64).unwrap_or(0),
        title: v.get("title").and_then(Json::as_str).map(str::to_string),
        inputs,
        widgets_values,
        properties: v
            .get("properties")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default(),
    })
}

fn parse_graph(v: &Json) -> Result<RawGraph, UiWorkflowError> {
    let nodes = v
        .get("nodes")
        .and_then(Json::as_array)
        .ok_or_else(|| invalid("a graph has no \"nodes\" list"))?
        .iter()
        .map(parse_node)
        .collect::<Result<Vec<_>, _>>()?;
    let mut links = BTreeMap::new();
    for l in v
        .get("links")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        if l.is_null() {
            continue;
        }
        let link = parse_link(l)?;
        links.insert(link.id, link);
    }
    Ok(RawGraph { nodes, links })
}

fn parse_io(v: Option<&Json>) -> Vec<IoSlot> {
    v.and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|s| IoSlot {
            name: s["name"].as_str().unwrap_or_default().to_string(),
            ty: type_text(&s["type"]),
            link_ids: s
                .get("linkIds")
                .and_then(Json::as_array)
                .map(|ids| ids.iter().filter_map(Json::as_i64).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// A slot type as text (`0` and `""` are litegraph's wildcard, like `*`).
pub(crate) fn type_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) if n.as_i64() == Some(0) => "*".into(),
        Json::Number(n) => n.to_string(),
        _ => "*".into(),
    }
}

impl Workflow {
    /// Parses a UI-format workflow document.
    pub(crate) fn parse(doc: &Json) -> Result<Self, UiWorkflowError> {
        let root = parse_graph(doc)?;
        let mut defs: Vec<(String, SubgraphDef)> = Vec::new();
        for def in flatten_definitions(doc) {
            let id = def
                .get("id")
                .and_then(Json::as_str)
                .ok_or_else(|| invalid("a subgraph definition has no id"))?;
            if defs.iter().any(|(d, _)| d == id) {
                continue; // the frontend keeps the first definition of an id
            }
            let parsed = SubgraphDef {
                graph: parse_graph(def)?,
                inputs: parse_io(def.get("inputs")),
                outputs: parse_io(def.get("outputs")),
            };
            defs.push((id.to_string(), parsed));
        }
        dedupe_node_ids(doc, &root, &mut defs);
        Ok(Self {
            root,
            subgraphs: defs.into_iter().collect(),
        })
    }
}

/// `definitions.subgraphs`, with definitions nested in definitions after their parent.
fn flatten_definitions(doc: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    let defs = doc
        .pointer("/definitions/subgraphs")
        .and_then(Json::as_array);
    for def in defs.into_iter().flatten() {
        out.push(def);
        out.extend(flatten_definitions(def));
    }
    out
}

/// The frontend gives interior nodes whose id is already taken (by a root node or an earlier
/// definition) the next free id after the workflow's last node id, and rewrites the
/// definition's links; execution ids follow the new ids.
fn dedupe_node_ids(doc: &Json, root: &RawGraph, defs: &mut [(String, SubgraphDef)]) {
    let numeric = |id: &str| {
        id.parse::<i64>()
            .ok()
            .filter(|n| n.to_string() == id && *n >= 0)
    };
    let mut last = [doc.get("last_node_id"), doc.pointer("/state/lastNodeId")]
        .into_iter()
        .flatten()
        .filter_map(Json::as_i64)
        .filter(|n| *n >= 0)
        .max()
        .unwrap_or(0);
    let mut used: std::collections::HashSet<String> =
        root.nodes.iter().map(|n| n.id.clone()).collect();
    let mut used_numbers: std::collections::HashSet<i64> =
        used.iter().filter_map(|id| numeric(id)).collect();
    for (_, def) in defs.iter_mut() {
        let mut remap: HashMap<String, String> = HashMap::new();
        for node in &mut def.graph.nodes {
            if used.contains(&node.id) {
                let mut next = last + 1;
                while used_numbers.contains(&next) {
                    next += 1;
                }
                last = next;
                used_numbers.insert(next);
                used.insert(next.to_string());
                remap.insert(node.id.clone(), next.to_string());
                node.id = next.to_string();
            } else {
                used.insert(node.id.clone());
                if let Some(n) = numeric(&node.id) {
                    used_numbers.insert(n);
                    last = last.max(n);
                }
            }
        }
        for link in def.graph.links.values_mut() {
            if let Some(id) = remap.get(&link.origin) {
                link.origin = id.clone();
            }
            if let Some(id) = remap.get(&link.target) {
                link.target = id.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_as_arrays_and_objects() {
        let doc = json!({
            "nodes": [{"id": 1, "type": "A", "inputs": [{"name": "x", "link": 4}],
                       "widgets_values": [1, "a"]}],
            "links": [[4, 2, 0, 1, 0, "IMAGE"]],
            "definitions": {"subgraphs": [{"id": "s", "nodes": [],
                "links": [{"id": 7, "origin_id": -10, "origin_slot": 0, "target_id": 3,
                           "target_slot": 1, "type": "INT"}],
                "inputs": [{"name": "v", "type": "INT", "linkIds": [7]}], "outputs": []}]}
        });
        let wf = Workflow::parse(&doc).unwrap();
        let link = &wf.root.links[&4];
        assert_eq!((link.origin.as_str(), link.target.as_str()), ("2", "1"));
        assert_eq!(wf.root.nodes[0].inputs[0].link, Some(4));
        let sub = &wf.subgraphs["s"];
        assert_eq!(sub.graph.links[&7].origin, SUBGRAPH_INPUT_NODE);
        assert_eq!(sub.inputs[0].link_ids, vec![7]);
    }

    #[test]
    fn colliding_interior_ids_are_renumbered() {
        let sub = |id: &str| {
            json!({"id": id, "nodes": [{"id": 3, "type": "A"}, {"id": 4, "type": "B"}],
            "links": [{"id": 1, "origin_id": 3, "origin_slot": 0, "target_id": 4, "target_slot": 0}]})
        };
        let doc = json!({"last_node_id": 9, "nodes": [{"id": 4, "type": "x"}], "links": [],
            "definitions": {"subgraphs": [sub("a"), sub("b")]}});
        let wf = Workflow::parse(&doc).unwrap();
        let ids = |d: &str| {
            wf.subgraphs[d]
                .graph
                .nodes
                .iter()
                .map(|n| n.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("a"), ["3", "10"]);
        assert_eq!(ids("b"), ["11", "12"]);
        let link = &wf.subgraphs["b"].graph.links[&1];
        assert_eq!((link.origin.as_str(), link.target.as_str()), ("11", "12"));
    }

    #[test]
    fn malformed_links_are_errors() {
        let doc = json!({"nodes": [], "links": [[1, 2]]});
        assert!(Workflow::parse(&doc).is_err());
    }
}

//! Following a link to the node that really produces the value (`ExecutableNodeDTO`
//! `resolveInput` / `resolveOutput`): through subgraph boundaries in both directions, through
//! bypassed nodes (to their first input of a matching type), through `Reroute`s; muted nodes
//! and other virtual nodes produce nothing. An unlinked subgraph input yields the instance's
//! promoted widget value instead of a link.

use std::collections::HashSet;

use serde_json::Value as Json;

use super::UiWorkflowError;
use super::configure::{Graphs, Kind, Node, Scope};
use super::parse::SUBGRAPH_INPUT_NODE;

/// `LGraphEventMode.NEVER` (muted).
pub(crate) const MUTED: i64 = 2;
/// `LGraphEventMode.BYPASS`.
pub(crate) const BYPASSED: i64 = 4;

/// A node in the flattened graph: the subgraph instances leading to it, and its own id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Place {
    pub path: Vec<String>,
    pub node: String,
}

impl Place {
    /// The execution id (`"outer:inner"`).
    pub(crate) fn exec_id(&self) -> String {
        let mut parts = self.path.clone();
        parts.push(self.node.clone());
        parts.join(":")
    }
}

/// Where an input's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resolved {
    /// Output `slot` of the node with this execution id.
    Link { origin: String, slot: usize },
    /// A subgraph instance's promoted widget value (`None`: undefined).
    Widget(Option<Json>),
}

fn broken(what: String) -> UiWorkflowError {
    UiWorkflowError::Link(what)
}

/// litegraph's `isValidConnection`: wildcards match anything, comma lists match any member,
/// case-insensitively.
pub(crate) fn types_connect(a: &str, b: &str) -> bool {
    let wild = |t: &str| t.is_empty() || t == "*";
    if wild(a) || wild(b) || a == b {
        return true;
    }
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    if !a.contains(',') && !b.contains(',') {
        return a == b;
    }
    a.split(',')
        .any(|x| b.split(',').any(|y| types_connect(x, y)))
}

/// Resolves links over the configured graphs.
pub(crate) struct Resolver<'a> {
    pub graphs: &'a Graphs,
}

impl<'a> Resolver<'a> {
    /// The scope that holds nodes at `path`.
    pub(crate) fn scope(&self, path: &[String]) -> Result<&'a Scope, UiWorkflowError> {
        let mut scope = &self.graphs.root;
        for id in path {
            let host = scope
                .node(id)
                .ok_or_else(|| broken(format!("no subgraph node {id}")))?;
            let Kind::Subgraph(def) = &host.kind else {
                return Err(broken(format!("node {id} is not a subgraph")));
            };
            scope = &self.graphs.subgraphs[def];
        }
        Ok(scope)
    }

    /// The node at `place`.
    pub(crate) fn node(&self, place: &Place) -> Result<&'a Node, UiWorkflowError> {
        self.scope(&place.path)?
            .node(&place.node)
            .ok_or_else(|| broken(format!("no node {}", place.exec_id())))
    }

    /// Where input `slot` of the node at `place` gets its value (`None`: nowhere).
    pub(crate) fn resolve_input(
        &self,
        place: &Place,
        slot: usize,
        visited: &mut HashSet<String>,
        ty: Option<&str>,
    ) -> Result<Option<Resolved>, UiWorkflowError> {
        if !visited.insert(format!("{}[I]{slot}", place.exec_id())) {
            return Err(UiWorkflowError::Recursion(format!(
                "circular reference while resolving input {slot} of node {}",
                place.exec_id()
            )));
        }
        let scope = self.scope(&place.path)?;
        let node = self.node(place)?;
        let input = node
            .inputs
            .get(slot)
            .ok_or_else(|| broken(format!("no input {slot} on node {}", place.exec_id())))?;
        let Some(link) = input.link.and_then(|id| scope.links.get(&id)) else {
            return Ok(None);
        };
        if !place.path.is_empty() && link.origin == SUBGRAPH_INPUT_NODE {
            return self.resolve_boundary(&place.path, link.origin_slot, visited);
        }
        let origin = scope.node(&link.origin).ok_or_else(|| {
            broken(format!(
                "link {} into node {} comes from missing node {}",
                link.id,
                place.exec_id(),
                link.origin
            ))
        })?;
        let origin = Place {
            path: place.path.clone(),
            node: origin.id.clone(),
        };
        self.resolve_output(&origin, link.origin_slot, ty.unwrap_or(&input.ty), visited)
    }

    /// A link from a subgraph's input node: follow the instance's input outward, or take its
    /// promoted widget's value.
    fn resolve_boundary(
        &self,
        path: &[String],
        index: usize,
        visited: &mut HashSet<String>,
    ) -> Result<Option<Resolved>, UiWorkflowError> {
        let (host_path, host_id) = path.split_at(path.len() - 1);
        let host_place = Place {
            path: host_path.to_vec(),
            node: host_id[0].clone(),
        };
        let outer = self.scope(host_path)?;
        let host = self.node(&host_place)?;
        let input = host.inputs.get(index).ok_or_else(|| {
            broken(format!(
                "no input {index} on subgraph node {}",
                host_place.exec_id()
            ))
        })?;
        if input.link.is_some_and(|id| outer.links.contains_key(&id)) {
            return self.resolve_input(&host_place, index, visited, None);
        }
        let Some(widget) = &input.widget else {
            return Ok(None);
        };
        let value = host
            .widgets
            .iter()
            .find(|w| &w.name == widget)
            .and_then(|w| w.value.clone());
        Ok(Some(Resolved::Widget(value)))
    }

    /// What output `slot` of the node at `place` really is, for a target input of type `ty`.
    pub(crate) fn resolve_output(
        &self,
        place: &Place,
        slot: usize,
        ty: &str,
        visited: &mut HashSet<String>,
    ) -> Result<Option<Resolved>, UiWorkflowError> {
        if !visited.insert(format!("{}[O]{slot}", place.exec_id())) {
            return Err(UiWorkflowError::Recursion(format!(
                "circular reference while resolving output {slot} of node {}",
                place.exec_id()
            )));
        }
        let node = self.node(place)?;
        match node.mode {
            MUTED => return Ok(None),
            BYPASSED => {
                return match bypass_slot(node, slot, ty)? {
                    Some(i) => self.resolve_input(place, i, visited, None),
                    None => Ok(None),
                };
            }
            _ => {}
        }
        match &node.kind {
            Kind::Subgraph(def) => self.resolve_subgraph_output(place, def, slot, ty, visited),
            Kind::Def(_) | Kind::Unknown(_) => Ok(Some(Resolved::Link {
                origin: place.exec_id(),
                slot,
            })),
            _ => {
                let scope = self.scope(&place.path)?;
                let linked = node
                    .inputs
                    .get(slot)
                    .and_then(|i| i.link)
                    .is_some_and(|id| scope.links.contains_key(&id));
                if linked {
                    self.resolve_input(place, slot, visited, Some(ty))
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn resolve_subgraph_output(
        &self,
        place: &Place,
        def: &str,
        slot: usize,
        ty: &str,
        visited: &mut HashSet<String>,
    ) -> Result<Option<Resolved>, UiWorkflowError> {
        let interior = &self.graphs.subgraphs[def];
        let output = interior.outputs.get(slot).ok_or_else(|| {
            broken(format!(
                "no output {slot} on subgraph node {}",
                place.exec_id()
            ))
        })?;
        let Some(link) = output
            .link_ids
            .first()
            .and_then(|id| interior.links.get(id))
        else {
            return Ok(None);
        };
        if link.origin == SUBGRAPH_INPUT_NODE || interior.node(&link.origin).is_none() {
            return Err(broken(format!(
                "output {slot} of subgraph node {} has no interior node",
                place.exec_id()
            )));
        }
        let mut path = place.path.clone();
        path.push(place.node.clone());
        let inner = Place {
            path,
            node: link.origin.clone(),
        };
        self.resolve_output(&inner, link.origin_slot, ty, visited)
    }
}

/// The input a bypassed node passes to output `slot` for a target of type `ty`
/// (`ExecutableNodeDTO._getBypassSlotIndex`).
fn bypass_slot(node: &Node, slot: usize, ty: &str) -> Result<Option<usize>, UiWorkflowError> {
    let inputs = &node.inputs;
    if ty.is_empty() || ty == "*" {
        return Ok(Some(if inputs.len() > slot { slot } else { 0 }));
    }
    let output = node
        .outputs
        .get(slot)
        .ok_or_else(|| broken(format!("no output {slot} on bypassed node {}", node.id)))?;
    if let Some(opposite) = inputs.get(slot)
        && types_connect(&opposite.ty, output)
        && types_connect(&opposite.ty, ty)
    {
        return Ok(Some(slot));
    }
    if let Some(exact) = inputs.iter().position(|i| i.ty == ty) {
        return Ok(Some(exact));
    }
    Ok(inputs
        .iter()
        .position(|i| types_connect(&i.ty, output) && types_connect(&i.ty, ty)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litegraph_type_matching() {
        assert!(types_connect("IMAGE", "image"));
        assert!(types_connect("*", "LATENT"));
        assert!(types_connect("IMAGE,MASK", "MASK"));
        assert!(!types_connect("IMAGE", "MASK"));
    }
}

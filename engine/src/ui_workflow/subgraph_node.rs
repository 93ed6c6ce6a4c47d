//! Subgraph instances (`SubgraphNode.configure`): an input per definition input, and the
//! widgets those inputs promote from the interior nodes.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use super::configure::{Kind, Node, Scope, Widget, attach_links, title_of};
use super::parse::{IoSlot, RawNode, WidgetValues};
use super::widgets::SlotSpec;

/// A subgraph instance: one input per definition input; inputs whose first connected interior
/// input has a widget promote that widget (value from the interior node, then, for instances
/// in the root graph, from the instance's own `widgets_values` in input order; the frontend
/// keeps the interior values for instances nested in a definition).
pub(crate) fn subgraph_node(
    raw: &RawNode,
    def_id: &str,
    io: &[IoSlot],
    done: &HashMap<String, Scope>,
    nested: bool,
) -> Node {
    let interior = &done[def_id];
    let slots: Vec<SlotSpec> = io
        .iter()
        .map(|s| SlotSpec {
            name: s.name.clone(),
            ty: s.ty.clone(),
            widget: None,
        })
        .collect();
    let mut inputs = attach_links(&slots, raw);
    inputs.truncate(io.len());
    let mut widgets = Vec::new();
    for (slot, io_in) in inputs.iter_mut().zip(io) {
        if let Some(source) = promoted_source(interior, io_in, done) {
            slot.widget = Some(io_in.name.clone());
            widgets.push(Widget {
                name: io_in.name.clone(),
                ..source
            });
        }
    }
    let quarantine = if nested {
        HashMap::new()
    } else {
        quarantined_values(&raw.properties)
    };
    let values = match &raw.widgets_values {
        Some(WidgetValues::List(v)) if !nested => v.clone(),
        _ => Vec::new(),
    };
    for (i, w) in widgets.iter_mut().enumerate() {
        if let Some(v) = quarantine.get(&w.name).or(values.get(i)) {
            w.value = Some(v.clone());
        }
    }
    Node {
        id: raw.id.clone(),
        kind: Kind::Subgraph(def_id.to_string()),
        mode: raw.mode,
        title: title_of(raw, def_id),
        inputs,
        outputs: done[def_id].outputs.iter().map(|o| o.ty.clone()).collect(),
        widgets,
        properties: raw.properties.clone(),
        saved_values: raw.widgets_values.clone(),
    }
}

/// The interior widget a subgraph input promotes: the widget of the first connected interior
/// input that has one (through nested instances).
fn promoted_source(
    interior: &Scope,
    io_in: &IoSlot,
    done: &HashMap<String, Scope>,
) -> Option<Widget> {
    for link_id in &io_in.link_ids {
        let Some(link) = interior.links.get(link_id) else {
            continue;
        };
        let Some(target) = interior.node(&link.target) else {
            continue;
        };
        let Some(slot) = interior
            .target_slot(target, link)
            .map(|i| &target.inputs[i])
        else {
            continue;
        };
        let Some(name) = &slot.widget else { continue };
        if let Some(w) = target.widgets.iter().find(|w| &w.name == name) {
            return Some(w.clone());
        }
        if let Kind::Subgraph(id) = &target.kind
            && let Some(nested) = done.get(id)
            && let Some(io) = nested.inputs.iter().find(|i| &i.name == name)
            && let Some(w) = promoted_source(nested, io, done)
        {
            return Some(w);
        }
    }
    None
}

/// Host values kept by the frontend's proxy-widget migration
/// (`properties.proxyWidgetErrorQuarantine` entries for `-1` with a `hostValue`); the first
/// entry for a name wins.
fn quarantined_values(properties: &Map<String, Json>) -> HashMap<String, Json> {
    let mut out = HashMap::new();
    let entries = properties
        .get("proxyWidgetErrorQuarantine")
        .and_then(Json::as_array);
    for e in entries.into_iter().flatten().rev() {
        let (Some(entry), Some(value)) = (
            e.get("originalEntry").and_then(Json::as_array),
            e.get("hostValue"),
        ) else {
            continue;
        };
        if entry.first().and_then(Json::as_str) == Some("-1")
            && let Some(name) = entry.get(1).and_then(Json::as_str)
        {
            out.insert(name.to_string(), value.clone());
        }
    }
    out
}

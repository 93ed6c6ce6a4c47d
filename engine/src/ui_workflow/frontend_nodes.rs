//! The frontend-only nodes: `Reroute` (passes its input through), the legacy `PrimitiveNode`
//! (writes its value into the widgets it feeds, `applyToGraph`), `Note` / `MarkdownNote`, and
//! placeholders for unknown types.

use super::configure::{Kind, Node, Scope, attach_links, title_of};
use super::parse::{RawNode, WidgetValues};
use super::widgets::SlotSpec;

/// A configured frontend-only (or unknown) node.
pub(crate) fn virtual_node(raw: &RawNode, kind: Kind) -> Node {
    let (slots, outputs, fallback) = match &kind {
        Kind::Reroute => (
            vec![SlotSpec {
                name: String::new(),
                ty: "*".into(),
                widget: None,
            }],
            vec!["*".to_string()],
            "Reroute".to_string(),
        ),
        Kind::Primitive => (Vec::new(), vec!["*".to_string()], "Primitive".to_string()),
        Kind::Unknown(ty) => (
            raw.inputs
                .iter()
                .map(|i| SlotSpec {
                    name: i.name.clone(),
                    ty: "*".into(),
                    widget: None,
                })
                .collect(),
            Vec::new(),
            ty.clone(),
        ),
        _ => (Vec::new(), Vec::new(), raw.ty.clone()),
    };
    let mut inputs = attach_links(&slots, raw);
    if kind == Kind::Reroute {
        // A reroute has one input whatever the saved slot is called.
        inputs.truncate(1);
        inputs[0].link = raw.inputs.first().and_then(|i| i.link);
    }
    Node {
        id: raw.id.clone(),
        kind,
        mode: raw.mode,
        title: title_of(raw, &fallback),
        inputs,
        outputs,
        widgets: Vec::new(),
        properties: raw.properties.clone(),
        saved_values: raw.widgets_values.clone(),
    }
}

/// `PrimitiveNode.applyToGraph`: the primitive's value (its saved value, else the first fed
/// widget's) becomes the value of every widget it feeds.
pub(crate) fn apply_primitives(scope: &mut Scope) {
    let primitives: Vec<usize> = (0..scope.nodes.len())
        .filter(|&i| scope.nodes[i].kind == Kind::Primitive)
        .collect();
    for p in primitives {
        let id = scope.nodes[p].id.clone();
        let targets: Vec<(usize, String)> = scope
            .out_links(&id, 0)
            .filter_map(|l| {
                let t = *scope.index.get(&l.target)?;
                let slot = scope.target_slot(&scope.nodes[t], l)?;
                let widget = scope.nodes[t].inputs[slot].widget.clone()?;
                Some((t, widget))
            })
            .collect();
        let Some((first, first_widget)) = targets.first().cloned() else {
            continue;
        };
        let saved = match &scope.nodes[p].saved_values {
            Some(WidgetValues::List(v)) => v.first().cloned(),
            _ => None,
        };
        let value = saved.or_else(|| {
            scope.nodes[first]
                .widgets
                .iter()
                .find(|w| w.name == first_widget)
                .and_then(|w| w.value.clone())
        });
        for (t, widget) in targets {
            if let Some(w) = scope.nodes[t].widget_mut(&widget) {
                w.value = value.clone();
            }
        }
    }
}

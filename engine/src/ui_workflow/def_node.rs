//! Server nodes as the frontend builds them from their `/object_info` definition and fills
//! them from `widgets_values` (`LGraphNode.configure`, `migrateWidgetsValues`), dynamic combos
//! rebuilding their nested widgets whenever their value is set.

use serde_json::{Map, Value as Json};

use super::configure::{Kind, Node, Widget, attach_links, title_of};
use super::parse::{RawNode, WidgetValues};
use super::widgets::{self, InputSpec, Layout, SlotSpec};

/// The widgets and input slots of a new node of class `class` (dynamic combos showing the
/// inputs of their default option).
pub(crate) fn created(class: &str, def: &Json) -> (Layout, Vec<Widget>, Vec<SlotSpec>) {
    let layout = widgets::layout(class, def);
    let mut widgets: Vec<Widget> = layout.widgets.iter().map(Widget::new).collect();
    let mut slots = layout.inputs.clone();
    let mut i = 0;
    while i < widgets.len() {
        if widgets[i].dynamic.is_some()
            && let Some(value) = widgets[i].value.clone()
        {
            set_value(&mut widgets, &mut slots, i, value);
        }
        i += 1;
    }
    (layout, widgets, slots)
}

/// A configured server node of class `class`.
pub(crate) fn def_node(raw: &RawNode, class: &str, def: &Json) -> Node {
    let (layout, mut widgets, mut slots) = created(class, def);
    match &raw.widgets_values {
        Some(WidgetValues::List(values)) => {
            let values = migrate_values(&layout, values.clone());
            restore_positional(&mut widgets, &mut slots, &values);
        }
        Some(WidgetValues::Named(map)) => restore_named(&mut widgets, &mut slots, map),
        None => {}
    }
    let display = def
        .get("display_name")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(class);
    Node {
        id: raw.id.clone(),
        kind: Kind::Def(class.to_string()),
        mode: raw.mode,
        title: title_of(raw, display),
        inputs: attach_links(&slots, raw),
        outputs: widgets::output_types(def),
        widgets,
        properties: raw.properties.clone(),
        saved_values: raw.widgets_values.clone(),
    }
}

/// Sets a widget's value; a dynamic combo then rebuilds its nested widgets and slots.
fn set_value(widgets: &mut Vec<Widget>, slots: &mut Vec<SlotSpec>, i: usize, value: Json) {
    widgets[i].value = Some(value);
    let Some(spec) = widgets[i].dynamic.clone() else {
        return;
    };
    let prefix = format!("{}.", spec.name);
    let mut j = i + 1;
    while j < widgets.len() {
        if widgets[j].name.starts_with(&prefix) {
            widgets.remove(j);
        } else {
            j += 1;
        }
    }
    slots.retain(|s| !s.name.starts_with(&prefix));
    let selected = widgets[i]
        .value
        .as_ref()
        .and_then(Json::as_str)
        .unwrap_or_default();
    let Some((_, nested)) = spec
        .dynamic_options()
        .into_iter()
        .find(|(key, _)| key == selected)
    else {
        return;
    };
    let mut added = Layout::default();
    for child in &nested {
        if child.has_widget() {
            widgets::add_widget_input(&mut added, child);
        } else {
            added.inputs.push(SlotSpec {
                name: child.name.clone(),
                ty: child.ty.clone(),
                widget: None,
            });
        }
    }
    let at = i + 1;
    for (k, w) in added.widgets.iter().enumerate() {
        widgets.insert(at + k, Widget::new(w));
    }
    let slot_at = slots
        .iter()
        .position(|s| s.name == spec.name)
        .map_or(slots.len(), |p| p + 1);
    for (k, s) in added.inputs.into_iter().enumerate() {
        slots.insert(slot_at + k, s);
    }
    // A nested dynamic combo shows its default option's inputs as soon as it is created; the
    // last ones first, so the earlier positions stay put.
    for k in (at..at + added.widgets.len()).rev() {
        if widgets[k].dynamic.is_some()
            && let Some(value) = widgets[k].value.clone()
        {
            set_value(widgets, slots, k, value);
        }
    }
}

/// `LGraphNode.configure`: saved values go, in order, to the widgets that are saved.
fn restore_positional(widgets: &mut Vec<Widget>, slots: &mut Vec<SlotSpec>, values: &[Json]) {
    let mut position = 0;
    let mut i = 0;
    while i < widgets.len() {
        if widgets[i].saved {
            if let Some(v) = values.get(position) {
                set_value(widgets, slots, i, v.clone());
            }
            position += 1;
        }
        i += 1;
    }
}

/// Name-keyed saved values (the frontend's "restore widget values by name").
fn restore_named(widgets: &mut Vec<Widget>, slots: &mut Vec<SlotSpec>, values: &Map<String, Json>) {
    let mut i = 0;
    while i < widgets.len() {
        if widgets[i].saved
            && let Some(v) = values.get(&widgets[i].name)
        {
            set_value(widgets, slots, i, v.clone());
        }
        i += 1;
    }
}

/// `migrateWidgetsValues`: workflows saved before frontend 1.16 hold a dummy value for every
/// `forceInput` input; those are dropped when the counts show they are there.
fn migrate_values(layout: &Layout, values: Vec<Json>) -> Vec<Json> {
    let names: Vec<&str> = layout.widgets.iter().map(|w| w.name.as_str()).collect();
    let unsaved: Vec<&str> = layout
        .widgets
        .iter()
        .filter(|w| !w.saved)
        .map(|w| w.name.as_str())
        .collect();
    let force = |s: &InputSpec| matches!(s.options.get("forceInput"), Some(Json::Bool(true)));
    let mut has_force: Vec<bool> = Vec::new();
    for spec in &layout.specs {
        if !(names.contains(&spec.name.as_str()) || force(spec))
            || unsaved.contains(&spec.name.as_str())
        {
            continue;
        }
        has_force.push(force(spec));
        if spec
            .options
            .get("control_after_generate")
            .is_some_and(crate::pyfmt::truthy)
        {
            has_force.push(false);
        }
    }
    let saved = layout.widgets.iter().filter(|w| w.saved).count();
    if !has_force.contains(&true) && values.len() == saved {
        return values;
    }
    let compacted: Vec<Json> = values
        .iter()
        .enumerate()
        .filter(|(i, _)| layout.widgets.get(*i).is_none_or(|w| w.saved))
        .map(|(_, v)| v.clone())
        .collect();
    let aligned = if compacted.len() == has_force.len() {
        compacted
    } else if values.len() == has_force.len() {
        values.clone()
    } else {
        return values;
    };
    aligned
        .into_iter()
        .zip(has_force)
        .filter(|(_, f)| !f)
        .map(|(v, _)| v)
        .collect()
}

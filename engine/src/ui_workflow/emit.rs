//! `graphToPrompt`: the flattened, executable nodes in the frontend's order, each with its
//! widget values and resolved links, as an API prompt.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};

use super::UiWorkflowError;
use super::configure::{Graphs, Kind, Node, Scope};
use super::dynprompt::{self, Chooser};
use super::meta::{self, Named};
use super::resolve::{BYPASSED, MUTED, Place, Resolved, Resolver};

/// `LGraph.computeExecutionOrder`: Kahn's algorithm over the root graph in node order; nodes
/// left in cycles follow in id order.
fn execution_order(scope: &Scope) -> Vec<&Node> {
    let mut remaining: HashMap<&str, usize> = HashMap::new();
    let mut ready: std::collections::VecDeque<&Node> = Default::default();
    for node in &scope.nodes {
        let linked = node
            .inputs
            .iter()
            .filter(|s| s.link.is_some_and(|id| scope.links.contains_key(&id)))
            .count();
        if linked == 0 {
            ready.push_back(node);
        } else {
            remaining.insert(&node.id, linked);
        }
    }
    let mut order: Vec<&Node> = Vec::new();
    let mut placed: HashSet<&str> = HashSet::new();
    let mut seen_links: HashSet<i64> = HashSet::new();
    while let Some(node) = ready.pop_front() {
        order.push(node);
        placed.insert(&node.id);
        for slot in 0..node.outputs.len() {
            for link in scope.out_links(&node.id, slot) {
                if !seen_links.insert(link.id) {
                    continue;
                }
                let Some(target) = scope.node(&link.target) else {
                    continue;
                };
                if let Some(count) = remaining.get_mut(target.id.as_str()) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        ready.push_back(target);
                    }
                }
            }
        }
    }
    let mut left: Vec<&Node> = scope
        .nodes
        .iter()
        .filter(|n| !placed.contains(n.id.as_str()))
        .collect();
    left.sort_by(|a, b| js_key_order(&a.id, &b.id));
    order.extend(left);
    order
}

/// Whether `key` is a JavaScript array index (such object keys come first, ascending).
fn is_array_index(key: &str) -> bool {
    key.parse::<u32>()
        .is_ok_and(|n| n != u32::MAX && n.to_string() == key)
}

fn js_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (is_array_index(a), is_array_index(b)) {
        (true, true) => a
            .parse::<u32>()
            .unwrap_or(0)
            .cmp(&b.parse::<u32>().unwrap_or(0)),
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => std::cmp::Ordering::Equal,
    }
}

/// Every node of the flattened graph in `graphToPrompt`'s order (instances before their
/// interiors; the interiors of muted or bypassed top-level instances are left out).
fn flatten(graphs: &Graphs) -> Vec<Place> {
    let mut places: Vec<Place> = Vec::new();
    let mut seen: HashSet<Place> = HashSet::new();
    let mut add = |p: Place, places: &mut Vec<Place>| {
        if seen.insert(p.clone()) {
            places.push(p);
        }
    };
    for node in execution_order(&graphs.root) {
        add(
            Place {
                path: Vec::new(),
                node: node.id.clone(),
            },
            &mut places,
        );
        if node.mode == MUTED || node.mode == BYPASSED {
            continue;
        }
        if let Kind::Subgraph(def) = &node.kind {
            interior(graphs, def, vec![node.id.clone()], &mut |p| {
                add(p, &mut places)
            });
        }
    }
    places
}

/// `SubgraphNode.getInnerNodes`: every interior node in saved order; nested instances (whatever
/// their mode) are followed by their own interiors.
fn interior(graphs: &Graphs, def: &str, path: Vec<String>, add: &mut dyn FnMut(Place)) {
    for node in &graphs.subgraphs[def].nodes {
        add(Place {
            path: path.clone(),
            node: node.id.clone(),
        });
        if let Kind::Subgraph(inner) = &node.kind {
            let mut deeper = path.clone();
            deeper.push(node.id.clone());
            interior(graphs, inner, deeper, add);
        }
    }
}

/// Wraps arrays as `{"__value__": [...]}` so they are not read as links; numbers are written
/// as JavaScript writes them (`1.0` becomes `1`).
fn wrap(value: Json) -> Json {
    match js_numbers(value) {
        array @ Json::Array(_) => Json::Object(Map::from_iter([("__value__".to_string(), array)])),
        other => other,
    }
}

/// JavaScript has one number type: integral floats serialise without a fraction.
pub(crate) fn js_numbers(value: Json) -> Json {
    const SAFE: f64 = 9007199254740991.0;
    match value {
        Json::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= SAFE => Json::from(f as i64),
            _ => Json::Number(n),
        },
        Json::Array(items) => Json::Array(items.into_iter().map(js_numbers).collect()),
        Json::Object(map) => {
            Json::Object(map.into_iter().map(|(k, v)| (k, js_numbers(v))).collect())
        }
        other => other,
    }
}

/// The converter's run over configured graphs.
pub(crate) struct Emitter<'a> {
    pub graphs: &'a Graphs,
    pub chooser: &'a mut dyn Chooser,
    pub now: chrono::DateTime<chrono::Local>,
}

impl Emitter<'_> {
    /// Builds the API prompt.
    pub(crate) fn prompt(&mut self) -> Result<Map<String, Json>, UiWorkflowError> {
        let resolver = Resolver {
            graphs: self.graphs,
        };
        let mut output: Vec<(String, Json)> = Vec::new();
        let mut unknown: Vec<(String, Vec<String>)> = Vec::new();
        for place in flatten(self.graphs) {
            let node = resolver.node(&place)?;
            if node.is_virtual() || node.mode == MUTED || node.mode == BYPASSED {
                continue;
            }
            let class = match &node.kind {
                Kind::Def(class) => class.clone(),
                Kind::Unknown(ty) => {
                    match unknown.iter_mut().find(|(t, _)| t == ty) {
                        Some((_, ids)) => ids.push(place.exec_id()),
                        None => unknown.push((ty.clone(), vec![place.exec_id()])),
                    }
                    continue;
                }
                _ => continue,
            };
            let inputs = self.inputs(&resolver, &place, node, &class)?;
            let mut meta = Map::new();
            meta.insert("title".into(), Json::from(node.title.as_str()));
            meta.extend(meta::pack_meta(&node.properties));
            let entry = Map::from_iter([
                ("inputs".to_string(), Json::Object(inputs)),
                ("class_type".to_string(), Json::from(class)),
                ("_meta".to_string(), Json::Object(meta)),
            ]);
            output.push((place.exec_id(), Json::Object(entry)));
        }
        if !unknown.is_empty() {
            let listed = unknown
                .into_iter()
                .map(|(ty, ids)| format!("{ty} (node {})", ids.join(", ")))
                .collect();
            return Err(UiWorkflowError::UnknownNodeTypes(listed));
        }
        output.sort_by(|a, b| js_key_order(&a.0, &b.0));
        let mut prompt: Map<String, Json> = output.into_iter().collect();
        remove_dangling_links(&mut prompt);
        Ok(prompt)
    }

    fn inputs(
        &mut self,
        resolver: &Resolver,
        place: &Place,
        node: &Node,
        class: &str,
    ) -> Result<Map<String, Json>, UiWorkflowError> {
        let mut inputs: Vec<(String, Option<Json>)> = Vec::new();
        let set = |inputs: &mut Vec<(String, Option<Json>)>, name: &str, value: Option<Json>| {
            match inputs.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = value,
                None => inputs.push((name.to_string(), value)),
            }
        };
        for widget in &node.widgets {
            if widget.name.is_empty() || !widget.to_prompt {
                continue;
            }
            let mut value = widget.value.clone();
            if widget.dynamic_prompts
                && let Some(Json::String(text)) = &value
            {
                value = Some(Json::from(dynprompt::process(text, self.chooser)));
            }
            if widget.name == "filename_prefix"
                && meta::SAVE_NODES.contains(&class)
                && let Some(Json::String(text)) = &value
            {
                value = Some(Json::from(self.replace_text(text)));
            }
            set(&mut inputs, &widget.name, value.map(wrap));
        }
        for (i, input) in node.inputs.iter().enumerate() {
            match resolver.resolve_input(place, i, &mut HashSet::new(), None)? {
                None => {}
                Some(Resolved::Widget(value)) => set(&mut inputs, &input.name, value.map(wrap)),
                Some(Resolved::Link { origin, slot }) => set(
                    &mut inputs,
                    &input.name,
                    Some(Json::from(vec![Json::from(origin), Json::from(slot)])),
                ),
            }
        }
        Ok(inputs
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect())
    }

    /// Search-and-replace over every node of the workflow (root and subgraph interiors).
    fn replace_text(&self, text: &str) -> String {
        let scopes = std::iter::once(&self.graphs.root).chain(self.graphs.subgraphs.values());
        let named: Vec<Named> = scopes
            .flat_map(|s| s.nodes.iter())
            .map(|n| Named {
                sr_name: n.properties.get("Node name for S&R").and_then(Json::as_str),
                title: &n.title,
                widgets: n
                    .widgets
                    .iter()
                    .map(|w| (w.name.as_str(), w.value.as_ref()))
                    .collect(),
            })
            .collect();
        meta::replace_text(text, &named, &self.now)
    }
}

/// Drops inputs linked to nodes that are not in the prompt (muted, virtual, ...).
fn remove_dangling_links(prompt: &mut Map<String, Json>) {
    let ids: HashSet<String> = prompt.keys().cloned().collect();
    for node in prompt.values_mut() {
        let Some(inputs) = node.get_mut("inputs").and_then(Json::as_object_mut) else {
            continue;
        };
        inputs.retain(|_, v| match v {
            Json::Array(a) if a.len() == 2 => {
                let key = match &a[0] {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                ids.contains(&key)
            }
            _ => true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn javascript_key_order() {
        let mut keys = vec!["92:9", "75", "10", "92:1", "abc", "007"];
        keys.sort_by(|a, b| js_key_order(a, b));
        assert_eq!(keys, ["10", "75", "92:9", "92:1", "abc", "007"]);
    }
}

//! The API-format prompt (`{"<id>": {"class_type", "inputs", "_meta"}}`) after validation:
//! inputs are either links `["<id>", <slot>]` or constants coerced to their declared types.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

/// One input of a prompt node.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    /// `["<node id>", <output index>]`.
    Link {
        /// The source node id.
        node: String,
        /// The source output index.
        slot: usize,
    },
    /// A widget constant.
    Const(Json),
}

impl InputValue {
    /// Parses one input value: a 2-element list with a string id and an integer slot is a link
    /// (ComfyUI's `is_link`); anything else is a constant.
    pub fn parse(v: &Json) -> Self {
        if let Json::Array(items) = v
            && let [Json::String(node), slot] = items.as_slice()
            && let Some(slot) = slot_index(slot)
        {
            return InputValue::Link {
                node: node.clone(),
                slot,
            };
        }
        InputValue::Const(v.clone())
    }
}

/// The output index of a link, if the JSON value is a non-negative integer. Floats are not
/// indices (Python's `tuple[0.0]` raises `TypeError`, so ComfyUI rejects `["1", 0.0]`).
pub fn slot_index(v: &Json) -> Option<usize> {
    v.as_u64().and_then(|u| usize::try_from(u).ok())
}

/// One node of a prompt.
#[derive(Debug, Clone)]
pub struct PromptNode {
    /// Its class type.
    pub class_type: String,
    /// Its inputs, in the prompt's order.
    pub inputs: Vec<(String, InputValue)>,
    /// `_meta.title`, if any.
    pub title: Option<String>,
}

impl PromptNode {
    /// The input named `name`.
    pub fn input(&self, name: &str) -> Option<&InputValue> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A validated prompt, ready to execute.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The prompt JSON (an object) with constants coerced (what history stores).
    pub json: Json,
    order: Vec<String>,
    nodes: HashMap<String, PromptNode>,
}

impl Prompt {
    /// Builds the typed view of a (coerced) prompt JSON. Nodes that are not objects or lack a
    /// class type are skipped (validation reports them before this point).
    pub fn from_json(json: Map<String, Json>) -> Self {
        let mut order = Vec::new();
        let mut nodes = HashMap::new();
        for (id, node) in &json {
            let Some(class_type) = node.get("class_type").and_then(Json::as_str) else {
                continue;
            };
            let inputs = node
                .get("inputs")
                .and_then(Json::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), InputValue::parse(v)))
                        .collect()
                })
                .unwrap_or_default();
            let title = node
                .pointer("/_meta/title")
                .and_then(Json::as_str)
                .map(str::to_string);
            order.push(id.clone());
            nodes.insert(
                id.clone(),
                PromptNode {
                    class_type: class_type.to_string(),
                    inputs,
                    title,
                },
            );
        }
        Self {
            json: Json::Object(json),
            order,
            nodes,
        }
    }

    /// The node with id `id`.
    pub fn node(&self, id: &str) -> Option<&PromptNode> {
        self.nodes.get(id)
    }

    /// Node ids in the prompt's order.
    pub fn ids(&self) -> &[String] {
        &self.order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_and_constants() {
        assert_eq!(
            InputValue::parse(&json!(["4", 0])),
            InputValue::Link {
                node: "4".into(),
                slot: 0
            }
        );
        assert_eq!(
            InputValue::parse(&json!(["4", 1.0])),
            InputValue::Const(json!(["4", 1.0]))
        );
        assert_eq!(
            InputValue::parse(&json!([4, 0])),
            InputValue::Const(json!([4, 0]))
        );
        assert_eq!(
            InputValue::parse(&json!("x")),
            InputValue::Const(json!("x"))
        );
    }
}

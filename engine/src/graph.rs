//! Execution order: ComfyUI's `ExecutionList`. Output nodes are added with every ancestor whose
//! output is not cached; nodes then run in a topological "dissolve" that prefers output nodes
//! and the nodes closest to them, so previews show up as early as possible.

use std::collections::{HashMap, HashSet};

use nodes::Registry;

use crate::prompt::{InputValue, Prompt};

/// The nodes still to run and what blocks them.
pub struct ExecutionList {
    pending: Vec<String>,
    block_count: HashMap<String, usize>,
    /// node -> the nodes waiting for it.
    blocking: HashMap<String, Vec<String>>,
    output_nodes: HashSet<String>,
}

/// The prompt has a dependency cycle among nodes that must run.
#[derive(Debug, Clone)]
pub struct CycleError {
    /// The nodes that can never become ready.
    pub nodes: Vec<String>,
}

impl ExecutionList {
    /// The nodes needed for `outputs`, skipping ancestors for which `is_cached` holds.
    pub fn new(
        prompt: &Prompt,
        registry: &Registry,
        outputs: &[String],
        is_cached: &dyn Fn(&str) -> bool,
    ) -> Self {
        let mut me = Self {
            pending: Vec::new(),
            block_count: HashMap::new(),
            blocking: HashMap::new(),
            output_nodes: HashSet::new(),
        };
        for id in prompt.ids() {
            let is_output = prompt
                .node(id)
                .and_then(|n| registry.get(&n.class_type))
                .is_some_and(|d| d.schema.output_node);
            if is_output {
                me.output_nodes.insert(id.clone());
            }
        }
        for output in outputs {
            me.add_node(prompt, registry, output, is_cached);
        }
        me
    }

    fn add_node(
        &mut self,
        prompt: &Prompt,
        registry: &Registry,
        start: &str,
        is_cached: &dyn Fn(&str) -> bool,
    ) {
        let mut stack = vec![start.to_string()];
        let mut links = Vec::new();
        while let Some(id) = stack.pop() {
            if self.block_count.contains_key(&id) {
                continue;
            }
            self.pending.push(id.clone());
            self.block_count.insert(id.clone(), 0);
            self.blocking.entry(id.clone()).or_default();
            let Some(node) = prompt.node(&id) else {
                continue;
            };
            let declared = registry.get(&node.class_type).map(|d| &d.schema);
            for (name, value) in &node.inputs {
                let InputValue::Link { node: from, .. } = value else {
                    continue;
                };
                if declared.is_some_and(|s| s.find_input(name).is_none()) {
                    continue;
                }
                if !is_cached(from) {
                    stack.push(from.clone());
                    links.push((from.clone(), id.clone()));
                }
            }
        }
        for (from, to) in links {
            let waiting = self.blocking.entry(from).or_default();
            if !waiting.contains(&to) {
                waiting.push(to.clone());
                *self.block_count.entry(to).or_default() += 1;
            }
        }
    }

    /// Whether nothing is left to run.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The node to run next, or the nodes stuck in a cycle.
    pub fn next(&self) -> Result<Option<String>, CycleError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let ready: Vec<&String> = self
            .pending
            .iter()
            .filter(|id| self.block_count[*id] == 0)
            .collect();
        if ready.is_empty() {
            return Err(CycleError {
                nodes: self.pending.clone(),
            });
        }
        Ok(Some(self.pick(&ready).clone()))
    }

    fn feeds_output(&self, id: &str, depth: usize) -> bool {
        self.blocking.get(id).is_some_and(|waiting| {
            waiting.iter().any(|w| {
                if depth == 1 {
                    self.output_nodes.contains(w)
                } else {
                    self.feeds_output(w, depth - 1)
                }
            })
        })
    }

    fn pick<'a>(&self, ready: &[&'a String]) -> &'a String {
        if let Some(id) = ready
            .iter()
            .find(|id| self.output_nodes.contains(id.as_str()))
        {
            return id;
        }
        for depth in [1, 2] {
            if let Some(id) = ready.iter().find(|id| self.feeds_output(id, depth)) {
                return id;
            }
        }
        ready[0]
    }

    /// Marks `id` done, unblocking the nodes that wait for it.
    pub fn complete(&mut self, id: &str) {
        self.pending.retain(|p| p != id);
        if let Some(waiting) = self.blocking.get(id) {
            for w in waiting {
                if let Some(c) = self.block_count.get_mut(w) {
                    *c = c.saturating_sub(1);
                }
            }
        }
    }
}

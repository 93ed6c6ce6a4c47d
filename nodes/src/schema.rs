//! Node schemas: the declarative description of a node's inputs and outputs, rendered into
//! `/object_info` exactly as ComfyUI renders its V1 (`INPUT_TYPES` classes) and V3
//! (`io.Schema`) nodes, and read by the engine's validation.

use serde_json::{Map, json};

use crate::env::Env;
use crate::value::Json;

/// ComfyUI's `MAX_RESOLUTION`.
pub const MAX_RESOLUTION: i64 = 16384;

/// The type string of V3 dynamic combos.
pub const DYNAMIC_COMBO: &str = "COMFY_DYNAMICCOMBO_V3";
/// The type string of V3 `MatchType` inputs and outputs (the type follows what is connected).
pub const MATCH_TYPE: &str = "COMFY_MATCHTYPE_V3";

/// Which generation of ComfyUI's node API a node mirrors; it changes how `/object_info`
/// renders it (V3 adds keys, renders combos as `COMBO` and empty option dicts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Classic `INPUT_TYPES` classes (`nodes.py`).
    V1,
    /// `comfy_api.latest.io.Schema` nodes (`comfy_extras/*`).
    V3,
}

/// The input section an input belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Must be given.
    Required,
    /// May be absent.
    Optional,
}

/// Where a combo's choices come from.
#[derive(Clone)]
pub enum Choices {
    /// A fixed list.
    Fixed(Vec<String>),
    /// Computed for the prompt's environment (files in a folder, models of a kind).
    Dynamic(fn(&Env) -> Vec<String>),
}

impl Choices {
    /// The choices for `env`.
    pub fn resolve(&self, env: &Env) -> Vec<String> {
        match self {
            Choices::Fixed(v) => v.clone(),
            Choices::Dynamic(f) => f(env),
        }
    }
}

/// The type of an input.
#[derive(Clone)]
pub enum IoType {
    /// `INT` widget.
    Int,
    /// `FLOAT` widget.
    Float,
    /// `STRING` widget.
    String,
    /// `BOOLEAN` widget.
    Boolean,
    /// A combo (choice list) widget.
    Combo(Choices),
    /// A socket of a named type (`IMAGE`, `LATENT`, `*`, comma-separated unions).
    Socket(String),
    /// A V3 dynamic combo (`COMFY_DYNAMICCOMBO_V3`): a choice whose selected option brings
    /// its own inputs, named `<combo>.<input>` in the API prompt.
    DynamicCombo(Vec<DynamicOption>),
}

/// One choice of a dynamic combo and the inputs it brings.
#[derive(Clone)]
pub struct DynamicOption {
    /// The choice's value.
    pub key: String,
    /// Its inputs (short names, without the combo's prefix).
    pub inputs: Vec<InputDef>,
}

impl DynamicOption {
    /// A choice `key` with `inputs`.
    pub fn new(key: &str, inputs: Vec<InputDef>) -> Self {
        Self {
            key: key.to_string(),
            inputs,
        }
    }
}

impl IoType {
    /// The type string ComfyUI uses (`"INT"`, `"COMBO"`, `"IMAGE"`...).
    pub fn name(&self) -> &str {
        match self {
            IoType::Int => "INT",
            IoType::Float => "FLOAT",
            IoType::String => "STRING",
            IoType::Boolean => "BOOLEAN",
            IoType::Combo(_) => "COMBO",
            IoType::Socket(s) => s,
            IoType::DynamicCombo(_) => DYNAMIC_COMBO,
        }
    }
}

/// One declared input.
#[derive(Clone)]
pub struct InputDef {
    /// Input name (the key in the API prompt's `inputs`).
    pub name: String,
    /// Its type.
    pub io_type: IoType,
    /// Required or optional.
    pub section: Section,
    /// Option entries (`default`, `min`, `max`, `tooltip`, ...) in declaration order; rendered in
    /// ComfyUI's order for the node's style.
    pub options: Vec<(String, Json)>,
}

impl InputDef {
    fn new(name: &str, io_type: IoType) -> Self {
        Self {
            name: name.to_string(),
            io_type,
            section: Section::Required,
            options: Vec::new(),
        }
    }
    /// An `INT` widget.
    pub fn int(name: &str) -> Self {
        Self::new(name, IoType::Int)
    }
    /// A `FLOAT` widget.
    pub fn float(name: &str) -> Self {
        Self::new(name, IoType::Float)
    }
    /// A `STRING` widget.
    pub fn string(name: &str) -> Self {
        Self::new(name, IoType::String)
    }
    /// A `BOOLEAN` widget.
    pub fn boolean(name: &str) -> Self {
        Self::new(name, IoType::Boolean)
    }
    /// A combo with a fixed choice list.
    pub fn combo(name: &str, choices: &[&str]) -> Self {
        Self::new(
            name,
            IoType::Combo(Choices::Fixed(
                choices.iter().map(|s| s.to_string()).collect(),
            )),
        )
    }
    /// A combo whose choices are computed per environment (folder listings).
    pub fn combo_dynamic(name: &str, choices: fn(&Env) -> Vec<String>) -> Self {
        Self::new(name, IoType::Combo(Choices::Dynamic(choices)))
    }
    /// A socket input of type `io_type`.
    pub fn socket(name: &str, io_type: &str) -> Self {
        Self::new(name, IoType::Socket(io_type.to_string()))
    }
    /// A V3 `MatchType` input: any of `allowed_types` (comma-separated); outputs declared with
    /// [`OutputDef::match_type`] and the same `template_id` take the type it receives.
    pub fn match_type(name: &str, template_id: &str, allowed_types: &str) -> Self {
        Self::socket(name, MATCH_TYPE).opt(
            "template",
            serde_json::json!({"template_id": template_id, "allowed_types": allowed_types}),
        )
    }
    /// A V3 dynamic combo with its options (the first is the default).
    pub fn dynamic_combo(name: &str, options: Vec<DynamicOption>) -> Self {
        Self::new(name, IoType::DynamicCombo(options))
    }
    /// Moves the input to the `optional` section.
    pub fn optional(mut self) -> Self {
        self.section = Section::Optional;
        self
    }
    /// Sets any option entry.
    pub fn opt(mut self, key: &str, value: impl Into<Json>) -> Self {
        let value = value.into();
        match self.options.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.options.push((key.to_string(), value)),
        }
        self
    }
    /// `default`.
    pub fn default(self, value: impl Into<Json>) -> Self {
        self.opt("default", value)
    }
    /// `min`.
    pub fn min(self, value: impl Into<Json>) -> Self {
        self.opt("min", value)
    }
    /// `max`.
    pub fn max(self, value: impl Into<Json>) -> Self {
        self.opt("max", value)
    }
    /// `step`.
    pub fn step(self, value: impl Into<Json>) -> Self {
        self.opt("step", value)
    }
    /// `tooltip`.
    pub fn tooltip(self, text: &str) -> Self {
        self.opt("tooltip", text)
    }
    /// The option `key`, if set.
    pub fn option(&self, key: &str) -> Option<&Json> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// One declared output.
#[derive(Clone, Debug)]
pub struct OutputDef {
    /// Its type string.
    pub io_type: String,
    /// Display name (`RETURN_NAMES` / V3 display name); the type string when `None`.
    pub name: Option<String>,
    /// `OUTPUT_IS_LIST` for this output.
    pub is_list: bool,
    /// Tooltip.
    pub tooltip: Option<String>,
    /// For a V3 `MatchType` output: the template id whose input type it takes.
    pub match_template: Option<String>,
}

impl OutputDef {
    /// An output of type `io_type`.
    pub fn new(io_type: &str) -> Self {
        Self {
            io_type: io_type.to_string(),
            name: None,
            is_list: false,
            tooltip: None,
            match_template: None,
        }
    }
    /// A V3 `MatchType` output typed like the inputs of template `template_id`.
    pub fn match_type(template_id: &str) -> Self {
        Self {
            match_template: Some(template_id.to_string()),
            ..Self::new(MATCH_TYPE)
        }
    }
    /// Names the output.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    /// Marks the output as a list output.
    pub fn list(mut self) -> Self {
        self.is_list = true;
        self
    }
    /// Sets the tooltip.
    pub fn tooltip(mut self, text: &str) -> Self {
        self.tooltip = Some(text.to_string());
        self
    }
}

/// The hidden inputs the executor injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    /// The original API prompt.
    Prompt,
    /// `extra_data.extra_pnginfo` (the UI workflow).
    ExtraPngInfo,
    /// The node's own id.
    UniqueId,
}

impl Hidden {
    fn type_name(self) -> &'static str {
        match self {
            Hidden::Prompt => "PROMPT",
            Hidden::ExtraPngInfo => "EXTRA_PNGINFO",
            Hidden::UniqueId => "UNIQUE_ID",
        }
    }
    fn input_name(self) -> &'static str {
        match self {
            Hidden::Prompt => "prompt",
            Hidden::ExtraPngInfo => "extra_pnginfo",
            Hidden::UniqueId => "unique_id",
        }
    }
}

/// A node's complete declaration.
#[derive(Clone)]
pub struct NodeSchema {
    /// The class type (`"SaveImage"`).
    pub name: String,
    /// Display name; `None` renders as the class name for V1 and as `null` for V3.
    pub display_name: Option<String>,
    /// Menu category (`"image/upscaling"`).
    pub category: String,
    /// Description.
    pub description: String,
    /// `python_module` reported to the frontend.
    pub python_module: String,
    /// Whether the node is an output node (prompts need one).
    pub output_node: bool,
    /// V1 or V3 rendering.
    pub style: Style,
    /// Inputs in declaration order.
    pub inputs: Vec<InputDef>,
    /// Hidden inputs.
    pub hidden: Vec<Hidden>,
    /// Outputs in order.
    pub outputs: Vec<OutputDef>,
    /// `INPUT_IS_LIST`: the function receives whole lists.
    pub input_is_list: bool,
    /// Search aliases.
    pub search_aliases: Vec<String>,
    /// `experimental`.
    pub experimental: bool,
    /// `deprecated`.
    pub deprecated: bool,
    /// `NOT_IDEMPOTENT`: the cache key includes the node id.
    pub not_idempotent: bool,
    /// `OUTPUT_TOOLTIPS` given as a whole list, when it does not follow the outputs (ComfyUI's
    /// `LoraLoaderModelOnly` inherits `LoraLoader`'s two tooltips for its one output).
    pub output_tooltips: Option<Vec<Option<String>>>,
}

impl NodeSchema {
    fn new(style: Style, name: &str, category: &str, python_module: &str) -> Self {
        Self {
            name: name.to_string(),
            display_name: None,
            category: category.to_string(),
            description: String::new(),
            python_module: python_module.to_string(),
            output_node: false,
            style,
            inputs: Vec::new(),
            hidden: Vec::new(),
            outputs: Vec::new(),
            input_is_list: false,
            search_aliases: Vec::new(),
            experimental: false,
            deprecated: false,
            not_idempotent: false,
            output_tooltips: None,
        }
    }

    /// A classic node from `nodes.py` (python_module `"nodes"`).
    pub fn v1(name: &str, category: &str) -> Self {
        Self::new(Style::V1, name, category, "nodes")
    }

    /// A V3 schema node from module `python_module` (e.g. `"comfy_extras.nodes_lt"`).
    pub fn v3(name: &str, category: &str, python_module: &str) -> Self {
        Self::new(Style::V3, name, category, python_module)
    }

    /// Sets the display name.
    pub fn display(mut self, name: &str) -> Self {
        self.display_name = Some(name.to_string());
        self
    }
    /// Sets the description.
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }
    /// Adds an input.
    pub fn input(mut self, input: InputDef) -> Self {
        self.inputs.push(input);
        self
    }
    /// Adds an output.
    pub fn output(mut self, output: OutputDef) -> Self {
        self.outputs.push(output);
        self
    }
    /// Adds a hidden input.
    pub fn hidden(mut self, hidden: Hidden) -> Self {
        self.hidden.push(hidden);
        self
    }
    /// Marks the node as an output node; V3 output nodes get the `prompt` and `extra_pnginfo`
    /// hidden inputs automatically, as in ComfyUI.
    pub fn output_node(mut self) -> Self {
        self.output_node = true;
        for h in [Hidden::Prompt, Hidden::ExtraPngInfo] {
            if !self.hidden.contains(&h) {
                self.hidden.push(h);
            }
        }
        self
    }
    /// Sets the search aliases.
    pub fn aliases(mut self, aliases: &[&str]) -> Self {
        self.search_aliases = aliases.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Marks the node experimental.
    pub fn experimental(mut self) -> Self {
        self.experimental = true;
        self
    }
    /// Marks the node as not idempotent (never shares cache entries across node ids).
    pub fn not_idempotent(mut self) -> Self {
        self.not_idempotent = true;
        self
    }
    /// Sets `OUTPUT_TOOLTIPS` as a whole list (see [`NodeSchema::output_tooltips`]).
    pub fn tooltips_list(mut self, tooltips: &[&str]) -> Self {
        self.output_tooltips = Some(tooltips.iter().map(|t| Some(t.to_string())).collect());
        self
    }
    /// Makes the function receive whole input lists.
    pub fn input_is_list(mut self) -> Self {
        self.input_is_list = true;
        self
    }

    /// The declared input named `name`; `combo.input` names an input of one of a dynamic
    /// combo's options (the nested declaration, under its short name).
    pub fn find_input(&self, name: &str) -> Option<&InputDef> {
        find_in(&self.inputs, name)
    }

    /// The inputs a node with these given values really has (ComfyUI's
    /// `get_finalized_class_inputs`): a dynamic combo counts only when its value selects one of
    /// its options, and then brings that option's inputs, named `combo.input`.
    pub fn live_inputs<'a>(
        &self,
        given: impl Fn(&str) -> Option<&'a Json> + Copy,
    ) -> Vec<InputDef> {
        expand_inputs(&self.inputs, "", given)
    }

    /// The `[type, options]` pair ComfyUI reports as `input_config` for an input.
    pub fn input_config(&self, input: &InputDef, env: &Env) -> Json {
        let (ty, opts) = self.render_input(input, env);
        Json::Array(vec![ty, Json::Object(opts)])
    }

    fn render_input(&self, input: &InputDef, env: &Env) -> (Json, Map<String, Json>) {
        let mut entries: Vec<(String, Json)> = input.options.clone();
        let ty = match (&input.io_type, self.style) {
            (IoType::Combo(choices), Style::V1) => Json::from(choices.resolve(env)),
            (IoType::Combo(choices), Style::V3) => {
                push_if_absent(&mut entries, "multiselect", Json::Bool(false));
                entries.push(("options".to_string(), Json::from(choices.resolve(env))));
                Json::from("COMBO")
            }
            (IoType::String, Style::V3) => {
                push_if_absent(&mut entries, "multiline", Json::Bool(false));
                Json::from("STRING")
            }
            (IoType::DynamicCombo(options), _) => {
                let rendered: Vec<Json> = options
                    .iter()
                    .map(|o| json!({"key": o.key, "inputs": self.render_sections(&o.inputs, env)}))
                    .collect();
                entries.push(("options".to_string(), Json::from(rendered)));
                Json::from(DYNAMIC_COMBO)
            }
            (other, _) => Json::from(other.name()),
        };
        let rank = |key: &str| option_rank(self.style, key);
        entries.sort_by_key(|(k, _)| rank(k));
        (ty, entries.into_iter().collect())
    }

    /// The nested `{"required": {...}, "optional"?: {...}}` of a dynamic combo option, as V3's
    /// `create_input_dict_v1` renders it.
    fn render_sections(&self, inputs: &[InputDef], env: &Env) -> Json {
        let mut required = Map::new();
        let mut optional = Map::new();
        for input in inputs {
            let (ty, opts) = self.render_input(input, env);
            let section = match input.section {
                Section::Required => &mut required,
                Section::Optional => &mut optional,
            };
            section.insert(input.name.clone(), json!([ty, opts]));
        }
        let mut out = Map::new();
        out.insert("required".into(), Json::Object(required));
        if !optional.is_empty() {
            out.insert("optional".into(), Json::Object(optional));
        }
        Json::Object(out)
    }

    /// The node's `/object_info` entry.
    pub fn to_object_info(&self, env: &Env) -> Json {
        let mut input = Map::new();
        let mut order = Map::new();
        for section in [Section::Required, Section::Optional] {
            let members: Vec<&InputDef> = self
                .inputs
                .iter()
                .filter(|i| i.section == section)
                .collect();
            let key = if section == Section::Required {
                "required"
            } else {
                "optional"
            };
            if members.is_empty() && section == Section::Optional {
                continue;
            }
            let mut rendered = Map::new();
            for i in &members {
                let (ty, opts) = self.render_input(i, env);
                let value = if opts.is_empty() && self.style == Style::V1 {
                    json!([ty])
                } else {
                    json!([ty, opts])
                };
                rendered.insert(i.name.clone(), value);
            }
            input.insert(key.to_string(), Json::Object(rendered));
            order.insert(
                key.to_string(),
                json!(members.iter().map(|i| i.name.as_str()).collect::<Vec<_>>()),
            );
        }
        if !self.hidden.is_empty() {
            let mut hidden = Map::new();
            for h in &self.hidden {
                let ty = match self.style {
                    Style::V1 => json!(h.type_name()),
                    Style::V3 => json!([h.type_name()]),
                };
                hidden.insert(h.input_name().to_string(), ty);
            }
            input.insert("hidden".into(), Json::Object(hidden));
            order.insert(
                "hidden".into(),
                json!(
                    self.hidden
                        .iter()
                        .map(|h| h.input_name())
                        .collect::<Vec<_>>()
                ),
            );
        }
        let mut info = Map::new();
        info.insert("input".into(), Json::Object(input));
        info.insert("input_order".into(), Json::Object(order));
        info.insert("is_input_list".into(), json!(self.input_is_list));
        info.insert(
            "output".into(),
            json!(self.outputs.iter().map(|o| &o.io_type).collect::<Vec<_>>()),
        );
        info.insert(
            "output_is_list".into(),
            json!(self.outputs.iter().map(|o| o.is_list).collect::<Vec<_>>()),
        );
        info.insert(
            "output_name".into(),
            json!(
                self.outputs
                    .iter()
                    .map(|o| o.name.as_ref().unwrap_or(&o.io_type))
                    .collect::<Vec<_>>()
            ),
        );
        let tooltips = match &self.output_tooltips {
            Some(list) => json!(list),
            None => json!(
                self.outputs
                    .iter()
                    .map(|o| o.tooltip.clone())
                    .collect::<Vec<_>>()
            ),
        };
        match self.style {
            Style::V1 => self.finish_v1(&mut info, tooltips),
            Style::V3 => self.finish_v3(&mut info, tooltips),
        }
        Json::Object(info)
    }

    fn finish_v1(&self, info: &mut Map<String, Json>, tooltips: Json) {
        info.insert("name".into(), json!(self.name));
        info.insert(
            "display_name".into(),
            json!(self.display_name.as_ref().unwrap_or(&self.name)),
        );
        info.insert("description".into(), json!(self.description));
        info.insert("python_module".into(), json!(self.python_module));
        info.insert("category".into(), json!(self.category));
        info.insert("output_node".into(), json!(self.output_node));
        if self.output_tooltips.is_some() || self.outputs.iter().any(|o| o.tooltip.is_some()) {
            info.insert("output_tooltips".into(), tooltips);
        }
        if self.deprecated {
            info.insert("deprecated".into(), json!(true));
        }
        if self.experimental {
            info.insert("experimental".into(), json!(true));
        }
        info.insert("search_aliases".into(), json!(self.search_aliases));
    }

    fn finish_v3(&self, info: &mut Map<String, Json>, tooltips: Json) {
        info.insert("output_tooltips".into(), tooltips);
        let matchtypes = if self.outputs.iter().any(|o| o.match_template.is_some()) {
            json!(
                self.outputs
                    .iter()
                    .map(|o| o.match_template.clone())
                    .collect::<Vec<_>>()
            )
        } else {
            Json::Null
        };
        info.insert("output_matchtypes".into(), matchtypes);
        info.insert("name".into(), json!(self.name));
        info.insert("display_name".into(), json!(self.display_name));
        info.insert("description".into(), json!(self.description));
        info.insert("python_module".into(), json!(self.python_module));
        info.insert("category".into(), json!(self.category));
        info.insert("output_node".into(), json!(self.output_node));
        info.insert("deprecated".into(), json!(self.deprecated));
        info.insert("experimental".into(), json!(self.experimental));
        info.insert("dev_only".into(), json!(false));
        info.insert("api_node".into(), json!(false));
        info.insert("price_badge".into(), Json::Null);
        let aliases = if self.search_aliases.is_empty() {
            Json::Null
        } else {
            json!(self.search_aliases)
        };
        info.insert("search_aliases".into(), aliases);
    }
}

fn find_in<'a>(inputs: &'a [InputDef], name: &str) -> Option<&'a InputDef> {
    if let Some(input) = inputs.iter().find(|i| i.name == name) {
        return Some(input);
    }
    let (combo, rest) = name.split_once('.')?;
    let IoType::DynamicCombo(options) = &inputs.iter().find(|i| i.name == combo)?.io_type else {
        return None;
    };
    options.iter().find_map(|o| find_in(&o.inputs, rest))
}

/// `inputs` with every dynamic combo replaced by itself plus its selected option's inputs
/// (recursively), names prefixed with `prefix`; a combo whose value selects nothing is left out.
fn expand_inputs<'a>(
    inputs: &[InputDef],
    prefix: &str,
    given: impl Fn(&str) -> Option<&'a Json> + Copy,
) -> Vec<InputDef> {
    let mut out = Vec::new();
    for input in inputs {
        let name = format!("{prefix}{}", input.name);
        let IoType::DynamicCombo(options) = &input.io_type else {
            out.push(InputDef {
                name,
                ..input.clone()
            });
            continue;
        };
        let selected = given(&name)
            .and_then(Json::as_str)
            .and_then(|v| options.iter().find(|o| o.key == v));
        if let Some(option) = selected {
            out.push(InputDef {
                name: name.clone(),
                ..input.clone()
            });
            out.extend(expand_inputs(&option.inputs, &format!("{name}."), given));
        }
    }
    out
}

fn push_if_absent(entries: &mut Vec<(String, Json)>, key: &str, value: Json) {
    if !entries.iter().any(|(k, _)| k == key) {
        entries.push((key.to_string(), value));
    }
}

/// The position of an option key in ComfyUI's rendering. V1 dicts are written by hand in
/// `nodes.py` (defaults first, tooltip last); V3's `as_dict` emits base keys, then widget keys,
/// then type-specific keys. Unknown keys keep their declaration order at the end.
fn option_rank(style: Style, key: &str) -> usize {
    const V1: &[&str] = &[
        "default",
        "min",
        "max",
        "step",
        "round",
        "display",
        "control_after_generate",
        "multiline",
        "dynamicPrompts",
        "placeholder",
        "image_upload",
        "video_upload",
        "audio_upload",
        "tooltip",
        "advanced",
    ];
    const V3: &[&str] = &[
        "display_name",
        "tooltip",
        "lazy",
        "rawLink",
        "advanced",
        "default",
        "socketless",
        "widgetType",
        "forceInput",
        "label_on",
        "label_off",
        "min",
        "max",
        "step",
        "round",
        "control_after_generate",
        "display",
        "gradient_stops",
        "multiline",
        "placeholder",
        "dynamicPrompts",
        "multiselect",
        "options",
        "image_upload",
        "video_upload",
        "audio_upload",
        "image_folder",
        "remote",
    ];
    let table = if style == Style::V1 { V1 } else { V3 };
    table.iter().position(|k| *k == key).unwrap_or(table.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env() -> Env {
        Env::under(Path::new("/nonexistent"))
    }

    #[test]
    fn v1_renders_like_nodes_py() {
        let schema = NodeSchema::v1("ImageScaleBy", "image/upscaling")
            .display("Upscale Image By")
            .input(InputDef::socket("image", "IMAGE"))
            .input(InputDef::combo(
                "upscale_method",
                &["nearest-exact", "bilinear"],
            ))
            .input(
                InputDef::float("scale_by")
                    .step(0.01)
                    .default(1.0)
                    .min(0.01)
                    .max(8.0),
            )
            .output(OutputDef::new("IMAGE"));
        let info = schema.to_object_info(&env());
        assert_eq!(
            info["input"]["required"],
            json!({"image": ["IMAGE"], "upscale_method": [["nearest-exact", "bilinear"]],
                   "scale_by": ["FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}]})
        );
        let keys: Vec<&String> = info["input"]["required"]["scale_by"][1]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["default", "min", "max", "step"]);
        assert_eq!(info["display_name"], "Upscale Image By");
        assert_eq!(info["search_aliases"], json!([]));
        assert!(info.get("output_tooltips").is_none());
    }

    #[test]
    fn v3_renders_like_io_schema() {
        let schema = NodeSchema::v3("SaveThing", "image/video", "comfy_extras.nodes_video")
            .input(InputDef::socket("video", "VIDEO").tooltip("The video to save."))
            .input(
                InputDef::string("filename_prefix")
                    .default("video/ComfyUI")
                    .tooltip("p"),
            )
            .input(InputDef::combo("format", &["auto", "mp4"]).default("auto"))
            .output_node();
        let info = schema.to_object_info(&env());
        assert_eq!(
            info["input"]["required"]["filename_prefix"],
            json!(["STRING", {"tooltip": "p", "default": "video/ComfyUI", "multiline": false}])
        );
        let keys: Vec<&String> = info["input"]["required"]["filename_prefix"][1]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["tooltip", "default", "multiline"]);
        assert_eq!(
            info["input"]["required"]["format"],
            json!(["COMBO", {"default": "auto", "multiselect": false, "options": ["auto", "mp4"]}])
        );
        assert_eq!(
            info["input"]["hidden"],
            json!({"prompt": ["PROMPT"], "extra_pnginfo": ["EXTRA_PNGINFO"]})
        );
        assert_eq!(info["display_name"], Json::Null);
        assert_eq!(info["search_aliases"], Json::Null);
        assert_eq!(info["output_tooltips"], json!([]));
    }

    #[test]
    fn dynamic_combos_expand_the_selected_option() {
        let schema = NodeSchema::v3("Resize", "t", "m")
            .input(InputDef::dynamic_combo(
                "mode",
                vec![
                    DynamicOption::new(
                        "size",
                        vec![InputDef::int("width"), InputDef::int("height")],
                    ),
                    DynamicOption::new("factor", vec![InputDef::float("by")]),
                ],
            ))
            .input(InputDef::combo("method", &["area"]));
        let given = json!({"mode": "factor", "mode.by": 2.0, "mode.width": 3});
        let names: Vec<String> = schema
            .live_inputs(|n| given.get(n))
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["mode", "mode.by", "method"]);
        let unselected = json!({"mode": "other"});
        let names: Vec<String> = schema
            .live_inputs(|n| unselected.get(n))
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["method"]);
        assert_eq!(
            schema.find_input("mode.height").map(|i| i.name.as_str()),
            Some("height")
        );
        assert!(schema.find_input("mode.depth").is_none());
        let info = schema.to_object_info(&env());
        assert_eq!(
            info["input"]["required"]["mode"][1]["options"][1],
            json!({"key": "factor", "inputs": {"required": {"by": ["FLOAT", {}]}}})
        );
    }
}

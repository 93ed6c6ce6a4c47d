//! The widgets and input slots the frontend gives a node created from its `/object_info`
//! definition (`litegraphService.ts` `addInputs`, the widget constructors, and the core
//! extensions that add inputs: `Comfy.UploadImage`, `Comfy.UploadAudio`, `Comfy.AudioWidget`).
//!
//! Order: the definition's inputs by `input_order` (required, then optional, then inputs the
//! extensions added). Sockets without a widget come first among the input slots; every widget
//! input then adds its widget(s) and a slot carrying the widget's name. Extra widgets that are
//! not inputs (`control_after_generate`, `control_filter_list`, the `upload` button, `audioUI`)
//! take a place in `widgets_values` but never reach the API prompt.

use serde_json::{Map, Value as Json};

/// Types the frontend builds a widget for (its `ComfyWidgets` table plus the custom widgets of
/// its core extensions). Inputs of other types are plain sockets.
const WIDGET_TYPES: &[&str] = &[
    "INT",
    "FLOAT",
    "BOOLEAN",
    "STRING",
    "MARKDOWN",
    "COMBO",
    "IMAGEUPLOAD",
    "COLOR",
    "IMAGECOMPARE",
    "BOUNDING_BOX",
    "CHART",
    "GALLERIA",
    "PAINTER",
    "COMPOSITOR",
    "TEXTAREA",
    "CURVE",
    "RANGE",
    "VIDEO_EDIT",
    "RESOLUTION_PREVIEW",
    "BOUNDING_BOXES",
    "LIGHT_INFO_PREVIEW",
    "COLORS",
    "COMFY_DYNAMICCOMBO_V3",
    "AUDIO_UI",
    "AUDIOUPLOAD",
    "AUDIO_RECORD",
    "WEBCAM",
];

/// The frontend's dynamic combo type: a combo whose selected option adds nested inputs.
pub(crate) const DYNAMIC_COMBO: &str = "COMFY_DYNAMICCOMBO_V3";
const MATCH_TYPE: &str = "COMFY_MATCHTYPE_V3";
const AUTOGROW: &str = "COMFY_AUTOGROW_V3";

/// Nodes the `Comfy.AudioWidget` extension gives an (unsaved) audio player widget.
const AUDIO_UI_NODES: &[&str] = &[
    "LoadAudio",
    "SaveAudio",
    "PreviewAudio",
    "SaveAudioMP3",
    "SaveAudioOpus",
    "SaveAudioAdvanced",
];

/// One input of a definition, as the frontend reads it.
#[derive(Debug, Clone)]
pub(crate) struct InputSpec {
    pub name: String,
    /// The type string (`"COMBO"` for V1 option lists).
    pub ty: String,
    /// The options dict (with `options` filled from a V1 list).
    pub options: Map<String, Json>,
}

impl InputSpec {
    fn parse(name: &str, spec: &Json) -> Self {
        let mut options = spec
            .get(1)
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        let ty = match spec.get(0) {
            Some(Json::Array(list)) => {
                options.insert("options".into(), Json::Array(list.clone()));
                "COMBO".to_string()
            }
            Some(Json::String(s)) => s.clone(),
            _ => "*".to_string(),
        };
        Self {
            name: name.to_string(),
            ty,
            options,
        }
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.options.get(key), Some(Json::Bool(true)))
    }

    /// The type that picks the widget constructor (`widgetType` overrides the type).
    fn widget_type(&self) -> &str {
        self.options
            .get("widgetType")
            .and_then(Json::as_str)
            .unwrap_or(&self.ty)
    }

    /// Whether the frontend builds a widget for this input.
    pub(crate) fn has_widget(&self) -> bool {
        WIDGET_TYPES.contains(&self.widget_type()) && !self.flag("forceInput")
    }

    fn default(&self) -> Option<Json> {
        self.options
            .get("default")
            .filter(|d| !d.is_null())
            .cloned()
    }

    /// The options of a dynamic combo: `(key, nested inputs)` in order.
    pub(crate) fn dynamic_options(&self) -> Vec<(String, Vec<InputSpec>)> {
        let Some(Json::Array(options)) = self.options.get("options") else {
            return Vec::new();
        };
        options
            .iter()
            .map(|o| {
                let key = o["key"].as_str().unwrap_or_default().to_string();
                let mut nested = Vec::new();
                for section in ["required", "optional"] {
                    let Some(map) = o.pointer(&format!("/inputs/{section}")) else {
                        continue;
                    };
                    for (name, spec) in map.as_object().into_iter().flatten() {
                        nested.push(InputSpec::parse(&format!("{}.{name}", self.name), spec));
                    }
                }
                (key, nested)
            })
            .collect()
    }
}

/// One widget of a node.
#[derive(Debug, Clone)]
pub(crate) struct WidgetSpec {
    pub name: String,
    /// The value a new node has (`None`: JavaScript `undefined`).
    pub default: Option<Json>,
    /// Whether the value goes into the API prompt (`options.serialize !== false`).
    pub to_prompt: bool,
    /// Whether it takes a place in `widgets_values` (`serialize !== false`).
    pub saved: bool,
    /// Whether `{a|b}` choices and comments are processed when queueing.
    pub dynamic_prompts: bool,
    /// For a dynamic combo: the spec, to expand the selected option's inputs.
    pub dynamic: Option<InputSpec>,
}

impl WidgetSpec {
    fn plain(name: &str, default: Option<Json>) -> Self {
        Self {
            name: name.to_string(),
            default,
            to_prompt: true,
            saved: true,
            dynamic_prompts: false,
            dynamic: None,
        }
    }
    fn hidden_extra(name: &str, default: Option<Json>) -> Self {
        Self {
            to_prompt: false,
            ..Self::plain(name, default)
        }
    }
}

/// One input slot of a node.
#[derive(Debug, Clone)]
pub(crate) struct SlotSpec {
    pub name: String,
    pub ty: String,
    /// The widget this slot can replace, if any.
    pub widget: Option<String>,
}

/// A node's widgets and input slots as created from its definition.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    pub widgets: Vec<WidgetSpec>,
    pub inputs: Vec<SlotSpec>,
    /// The definition's inputs (for the pre-1.16 `forceInput` value migration).
    pub specs: Vec<InputSpec>,
}

/// The definition's inputs in the frontend's order, with the inputs core extensions add.
pub(crate) fn ordered_specs(class: &str, def: &Json) -> Vec<InputSpec> {
    let mut out: Vec<InputSpec> = Vec::new();
    let section = |name: &str| {
        def.pointer(&format!("/input/{name}"))
            .and_then(Json::as_object)
    };
    let required = section("required");
    let optional = section("optional");
    for (name, map) in [("required", required), ("optional", optional)] {
        let Some(map) = map else { continue };
        let order = def
            .pointer(&format!("/input_order/{name}"))
            .and_then(Json::as_array);
        for key in order.into_iter().flatten().filter_map(Json::as_str) {
            if let Some(spec) = map.get(key) {
                out.push(InputSpec::parse(key, spec));
            }
        }
    }
    for map in [required, optional].into_iter().flatten() {
        for (key, spec) in map {
            if !out.iter().any(|s| &s.name == key) {
                out.push(InputSpec::parse(key, spec));
            }
        }
    }
    add_extension_inputs(class, required, &mut out);
    out
}

fn add_extension_inputs(
    class: &str,
    required: Option<&Map<String, Json>>,
    out: &mut Vec<InputSpec>,
) {
    let push = |out: &mut Vec<InputSpec>, spec: InputSpec| match out
        .iter()
        .position(|s| s.name == spec.name)
    {
        Some(i) => out[i] = spec,
        None => out.push(spec),
    };
    if AUDIO_UI_NODES.contains(&class) {
        push(
            out,
            InputSpec::parse("audioUI", &Json::from(vec!["AUDIO_UI"])),
        );
    }
    let Some(required) = required else { return };
    let media = required.iter().find(|(_, spec)| {
        let s = InputSpec::parse("", spec);
        s.ty == "COMBO"
            && ["image_upload", "video_upload", "animated_image_upload"]
                .iter()
                .any(|k| s.flag(k))
    });
    if let Some((name, spec)) = media {
        let mut upload = InputSpec::parse("upload", spec);
        upload.ty = "IMAGEUPLOAD".into();
        upload.options.remove("options");
        upload
            .options
            .insert("imageInputName".into(), Json::from(name.as_str()));
        push(out, upload);
    }
    let audio = required.get("audio").map(|s| InputSpec::parse("audio", s));
    if audio.is_some_and(|a| a.flag("audio_upload")) {
        push(
            out,
            InputSpec::parse("upload", &Json::from(vec!["AUDIOUPLOAD"])),
        );
    }
}

/// The widgets one widget input creates.
pub(crate) fn widgets_for(spec: &InputSpec) -> Vec<WidgetSpec> {
    let name = spec.name.as_str();
    let control = |target_is_combo: bool| {
        let mode = match spec.options.get("control_after_generate") {
            Some(Json::String(s)) if is_control_mode(s) => s.clone(),
            _ => "randomize".to_string(),
        };
        let mut extra = vec![WidgetSpec::hidden_extra(
            "control_after_generate",
            Some(Json::from(mode)),
        )];
        if target_is_combo {
            extra.push(WidgetSpec::hidden_extra(
                "control_filter_list",
                Some(Json::from("")),
            ));
        }
        extra
    };
    let wants_control = |default_names: bool| match spec.options.get("control_after_generate") {
        None | Some(Json::Null) => default_names && ["seed", "noise_seed"].contains(&name),
        Some(v) => crate::pyfmt::truthy(v),
    };
    match spec.widget_type() {
        "INT" => {
            let mut w = vec![WidgetSpec::plain(
                name,
                Some(spec.default().unwrap_or(Json::from(0))),
            )];
            if wants_control(true) {
                w.extend(control(false));
            }
            w
        }
        "FLOAT" => vec![WidgetSpec::plain(
            name,
            Some(spec.default().unwrap_or(Json::from(0))),
        )],
        "BOOLEAN" => vec![WidgetSpec::plain(
            name,
            Some(spec.default().unwrap_or(Json::Bool(false))),
        )],
        "STRING" => {
            let mut w = WidgetSpec::plain(name, Some(spec.default().unwrap_or(Json::from(""))));
            w.dynamic_prompts = spec.flag("dynamicPrompts");
            vec![w]
        }
        "COMBO" => {
            let mut w = vec![WidgetSpec::plain(name, combo_default(spec))];
            if let Some(remote) = spec.options.get("remote") {
                w.push(WidgetSpec::hidden_extra(
                    "Auto-refresh after generation",
                    Some(Json::Bool(false)),
                ));
                if remote
                    .get("refresh_button")
                    .is_some_and(crate::pyfmt::truthy)
                {
                    w.push(WidgetSpec::plain("refresh", Some(Json::from("refresh"))));
                }
            }
            if wants_control(false) {
                w.extend(control(true));
            }
            w
        }
        DYNAMIC_COMBO => {
            let first = spec
                .dynamic_options()
                .first()
                .map(|(k, _)| Json::from(k.as_str()));
            let mut w = WidgetSpec::plain(name, first);
            w.dynamic = Some(spec.clone());
            vec![w]
        }
        "IMAGEUPLOAD" => vec![WidgetSpec::hidden_extra(name, Some(Json::from("image")))],
        "AUDIO_UI" => vec![WidgetSpec {
            saved: false,
            ..WidgetSpec::hidden_extra(name, Some(Json::from("")))
        }],
        "AUDIOUPLOAD" => vec![WidgetSpec::hidden_extra(name, Some(Json::from("")))],
        // Sent with the prompt, never saved in `widgets_values`.
        "IMAGECOMPARE" => vec![WidgetSpec {
            saved: false,
            ..WidgetSpec::plain(name, Some(Json::from(vec!["", ""])))
        }],
        _ => vec![WidgetSpec::plain(name, spec.default())],
    }
}

fn is_control_mode(s: &str) -> bool {
    [
        "fixed",
        "increment",
        "decrement",
        "randomize",
        "increment-wrap",
    ]
    .contains(&s)
}

fn combo_default(spec: &InputSpec) -> Option<Json> {
    if let Some(d) = spec.default().filter(crate::pyfmt::truthy) {
        return Some(d);
    }
    if let Some(first) = spec
        .options
        .get("options")
        .and_then(Json::as_array)
        .and_then(|o| o.first())
    {
        return Some(first.clone());
    }
    spec.options.get("remote").map(|_| Json::from("Loading..."))
}

/// The slot type the frontend gives an input (MatchType inputs take their allowed types).
fn slot_type(spec: &InputSpec) -> String {
    if spec.ty == MATCH_TYPE {
        return spec
            .options
            .get("template")
            .and_then(|t| t.get("allowed_types"))
            .and_then(Json::as_str)
            .unwrap_or("*")
            .to_string();
    }
    spec.ty.clone()
}

/// The layout of a node created from definition `def` of class `class`.
pub(crate) fn layout(class: &str, def: &Json) -> Layout {
    let specs = ordered_specs(class, def);
    let mut out = Layout::default();
    for spec in &specs {
        // An autogrow group's sockets are named after it (`images.image0`); a saved node
        // brings its own, kept as extra inputs.
        if !spec.has_widget() && spec.ty != AUTOGROW {
            out.inputs.push(SlotSpec {
                name: spec.name.clone(),
                ty: slot_type(spec),
                widget: None,
            });
        }
    }
    for spec in &specs {
        if spec.has_widget() {
            add_widget_input(&mut out, spec);
        }
    }
    out.specs = specs;
    out
}

/// Adds a widget input's widgets and its slot (the frontend gives even `socketless` widget
/// inputs a slot).
pub(crate) fn add_widget_input(out: &mut Layout, spec: &InputSpec) {
    out.widgets.extend(widgets_for(spec));
    out.inputs.push(SlotSpec {
        name: spec.name.clone(),
        ty: spec.ty.clone(),
        widget: Some(spec.name.clone()),
    });
}

/// The output slot types of a definition (MatchType outputs are wildcards until connected).
pub(crate) fn output_types(def: &Json) -> Vec<String> {
    def.get("output")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|t| match t {
            Json::String(s) if s == MATCH_TYPE => "*".to_string(),
            Json::String(s) => s.clone(),
            Json::Array(_) => "COMBO".to_string(),
            _ => "*".to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(l: &Layout) -> Vec<&str> {
        l.widgets.iter().map(|w| w.name.as_str()).collect()
    }

    #[test]
    fn seeds_get_a_control_widget_that_is_not_an_input() {
        let def = json!({"input": {"required": {"model": ["MODEL"], "seed": ["INT", {"default": 5}],
                          "sampler": [["euler", "dpm"], {}]}},
                         "input_order": {"required": ["model", "seed", "sampler"]}});
        let l = layout("KSampler", &def);
        assert_eq!(names(&l), ["seed", "control_after_generate", "sampler"]);
        assert!(!l.widgets[1].to_prompt && l.widgets[1].saved);
        assert_eq!(l.widgets[2].default, Some(json!("euler")));
        let slots: Vec<_> = l
            .inputs
            .iter()
            .map(|s| (s.name.as_str(), s.widget.is_some()))
            .collect();
        assert_eq!(slots, [("model", false), ("seed", true), ("sampler", true)]);
    }

    #[test]
    fn upload_combos_get_an_upload_button_last() {
        let def = json!({"input": {"required": {"image": [["a.png"], {"image_upload": true}]},
                                   "optional": {"x": ["INT", {}]}},
                         "input_order": {"required": ["image"], "optional": ["x"]}});
        let l = layout("LoadImage", &def);
        assert_eq!(names(&l), ["image", "x", "upload"]);
        assert!(!l.widgets[2].to_prompt);
    }

    #[test]
    fn force_input_makes_a_socket() {
        let def = json!({"input": {"required": {"n": ["INT", {"forceInput": true}]}}});
        let l = layout("X", &def);
        assert!(l.widgets.is_empty());
        assert_eq!(l.inputs[0].widget, None);
    }
}

//! The image utility nodes of the LTX-2 templates through the engine: ResizeImageMaskNode's
//! dynamic-combo inputs (`resize_type.width`) in validation and execution, its IMAGE/MASK
//! match type, GetImageSize's progress text, ImageFromBatch, ImageScaleToMaxDimension, Canny.

use std::sync::Arc;

use engine::events::Collect;
use engine::{CachePolicy, Engine, Event, ExecutionResult, Job, Outcome};
use nodes::{Ctx, Env, InputDef, Inputs, NodeDef, NodeSchema, Outputs};
use serde_json::{Map, Value as Json, json};

struct Fixture {
    engine: Engine,
    env: Env,
    _dir: tempfile::TempDir,
}

/// Shows what it receives: `{"text": ["<value as Debug>"]}`.
fn show_node() -> NodeDef {
    NodeDef::new(
        NodeSchema::v1("TestShow", "testing")
            .input(InputDef::socket("value", "*"))
            .output_node(),
        |_: &Ctx, i: &Inputs| {
            let mut ui = Map::new();
            let value = i.get("value").map(|v| format!("{v:?}")).unwrap_or_default();
            ui.insert("text".into(), json!([value]));
            Ok(Outputs::ui(ui))
        },
    )
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::under(dir.path());
    for d in [&env.dirs.input, &env.dirs.output, &env.dirs.temp] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut registry = nodes::builtin_registry();
    registry.register(show_node());
    Fixture {
        engine: Engine::new(Arc::new(registry), CachePolicy::default()),
        env,
        _dir: dir,
    }
}

impl Fixture {
    fn run(&mut self, prompt: Json) -> (ExecutionResult, Vec<Event>) {
        let validated = self
            .engine
            .validate(&self.env, &prompt, None)
            .unwrap_or_else(|e| panic!("{}", e.to_json()));
        let sink = Collect::default();
        let extra = json!({});
        let job = Job {
            prompt_id: "p1",
            prompt: &validated.prompt,
            outputs: &validated.outputs,
            extra_data: &extra,
            env: &self.env,
        };
        let result = self.engine.execute(&job, &sink);
        (result, sink.0.into_inner())
    }

    fn shown(&mut self, prompt: Json) -> Map<String, Json> {
        let (result, _) = self.run(prompt);
        assert_eq!(result.outcome, Outcome::Success, "{:?}", result.error());
        result
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), v["text"][0].clone()))
            .collect()
    }
}

fn empty_image(width: i64, height: i64, batch: i64) -> Json {
    json!({"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch, "color": 0}})
}

fn show(from: &str, slot: usize) -> Json {
    json!({"class_type": "TestShow", "inputs": {"value": [from, slot]}})
}

#[test]
fn resize_dimensions_from_dotted_inputs_and_image_size() {
    let mut f = fixture();
    let prompt = json!({
        "1": empty_image(40, 24, 2),
        "2": {"class_type": "PrimitiveInt", "inputs": {"value": 20}},
        "3": {"class_type": "ResizeImageMaskNode", "inputs": {
            "input": ["1", 0], "resize_type": "scale dimensions",
            "resize_type.width": ["2", 0], "resize_type.height": 0, "resize_type.crop": "center",
            "scale_method": "area"}},
        "4": {"class_type": "GetImageSize", "inputs": {"image": ["3", 0]}},
        "5": show("3", 0),
        "6": show("4", 0),
        "7": show("4", 1),
        "8": show("4", 2),
    });
    let (result, events) = f.run(prompt);
    assert_eq!(result.outcome, Outcome::Success, "{:?}", result.error());
    let text = |id: &str| result.outputs[id]["text"][0].as_str().unwrap().to_string();
    assert_eq!(text("5"), "IMAGE([2, 12, 20, 3] F32)");
    assert_eq!(
        (text("6"), text("7"), text("8")),
        ("20".into(), "12".into(), "2".into())
    );
    let progress_text: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::ProgressText { .. }))
        .collect();
    assert_eq!(progress_text.len(), 1);
    let Event::ProgressText { node, text, .. } = progress_text[0] else {
        unreachable!()
    };
    assert_eq!(
        (node.as_str(), text.as_str()),
        ("4", "width: 20, height: 12\n batch size: 2")
    );
}

#[test]
fn resize_keeps_masks_masks_and_matches_sizes() {
    let mut f = fixture();
    let png = f.env.dirs.input.join("rgba.png");
    image::RgbaImage::from_pixel(6, 4, image::Rgba([10, 20, 30, 128]))
        .save(&png)
        .unwrap();
    let shown = f.shown(json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "rgba.png"}},
        "2": {"class_type": "ResizeImageMaskNode", "inputs": {
            "input": ["1", 1], "resize_type": "scale by multiplier",
            "resize_type.multiplier": 2.5, "scale_method": "nearest-exact"}},
        "3": {"class_type": "ResizeImageMaskNode", "inputs": {
            "input": ["1", 0], "resize_type": "match size", "resize_type.match": ["2", 0],
            "resize_type.crop": "disabled", "scale_method": "bilinear"}},
        "4": {"class_type": "ResizeImageMaskNode", "inputs": {
            "input": ["1", 0], "resize_type": "scale longer dimension",
            "resize_type.longer_size": 9, "scale_method": "lanczos"}},
        "5": show("2", 0),
        "6": show("3", 0),
        "7": show("4", 0),
    }));
    assert_eq!(shown["5"], "MASK([1, 10, 15] F32)");
    assert_eq!(shown["6"], "IMAGE([1, 10, 15, 3] F32)");
    assert_eq!(shown["7"], "IMAGE([1, 6, 9, 3] F32)");
}

#[test]
fn a_missing_option_input_is_named_by_its_last_segment() {
    let f = fixture();
    let prompt = json!({
        "1": empty_image(8, 8, 1),
        "2": {"class_type": "ResizeImageMaskNode", "inputs": {
            "input": ["1", 0], "resize_type": "scale dimensions", "resize_type.width": 4,
            "resize_type.crop": "center", "scale_method": "area"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    });
    let err = f
        .engine
        .validate(&f.env, &prompt, None)
        .unwrap_err()
        .to_json();
    assert_eq!(
        err["node_errors"]["2"]["errors"],
        json!([{"type": "required_input_missing", "message": "Required input is missing",
                "details": "height", "extra_info": {"input_name": "resize_type.height"}}])
    );
    // Inputs of options that are not selected are not checked.
    let other = json!({
        "1": empty_image(8, 8, 1),
        "2": {"class_type": "ResizeImageMaskNode", "inputs": {
            "input": ["1", 0], "resize_type": "scale width", "resize_type.width": 4,
            "resize_type.multiplier": "not a number", "scale_method": "area"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    });
    assert!(f.engine.validate(&f.env, &other, None).is_ok());
    let bad_range = json!({
        "1": empty_image(8, 8, 1),
        "2": {"class_type": "ResizeImageMaskNode", "inputs": {
            "input": ["1", 0], "resize_type": "scale width", "resize_type.width": -1,
            "scale_method": "area"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    });
    let err = f
        .engine
        .validate(&f.env, &bad_range, None)
        .unwrap_err()
        .to_json();
    assert_eq!(
        err["node_errors"]["2"]["errors"][0]["type"], "value_smaller_than_min",
        "{err}"
    );
}

#[test]
fn an_unknown_resize_type_fails_when_run() {
    let mut f = fixture();
    let (result, _) = f.run(json!({
        "1": empty_image(8, 8, 1),
        "2": {"class_type": "ResizeImageMaskNode", "inputs": {
            "input": ["1", 0], "resize_type": "stretch", "scale_method": "area"}},
        "3": show("2", 0),
    }));
    assert_eq!(result.outcome, Outcome::Error);
    let message = result.error().unwrap()["exception_message"].to_string();
    assert!(message.contains("resize_type"), "{message}");
}

#[test]
fn batch_pick_max_dimension_and_canny() {
    let mut f = fixture();
    let shown = f.shown(json!({
        "1": empty_image(40, 24, 3),
        "2": {"class_type": "ImageFromBatch", "inputs": {"image": ["1", 0], "batch_index": 1, "length": 5}},
        "3": {"class_type": "ImageScaleToMaxDimension", "inputs": {"image": ["1", 0], "upscale_method": "area", "largest_size": 30}},
        "4": {"class_type": "Canny", "inputs": {"image": ["2", 0], "low_threshold": 0.4, "high_threshold": 0.8}},
        "5": show("2", 0),
        "6": show("3", 0),
        "7": show("4", 0),
    }));
    assert_eq!(shown["5"], "IMAGE([2, 24, 40, 3] F32)");
    assert_eq!(shown["6"], "IMAGE([3, 18, 30, 3] F32)");
    assert_eq!(shown["7"], "IMAGE([2, 24, 40, 3] F32)");
}

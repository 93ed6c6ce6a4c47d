//! Validation errors in ComfyUI's exact JSON shape, one test per error type.

use std::sync::Arc;

use engine::{CachePolicy, Engine, PromptError};
use nodes::Env;
use serde_json::{Value, json};

struct Fixture {
    engine: Engine,
    env: Env,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::under(dir.path());
    std::fs::create_dir_all(&env.dirs.input).unwrap();
    let engine = Engine::new(Arc::new(nodes::builtin_registry()), CachePolicy::default());
    Fixture {
        engine,
        env,
        _dir: dir,
    }
}

fn reject(prompt: Value) -> Value {
    let f = fixture();
    let err: PromptError = f
        .engine
        .validate(&f.env, &prompt, None)
        .expect_err("prompt should be rejected");
    err.to_json()
}

fn empty_image(width: Value) -> Value {
    json!({"class_type": "EmptyImage", "inputs": {"width": width, "height": 64, "batch_size": 1, "color": 0}})
}

fn save(from: &str) -> Value {
    json!({"class_type": "SaveImage", "inputs": {"images": [from, 0], "filename_prefix": "t"}})
}

fn single_node_error(result: &Value, node: &str) -> Value {
    assert_eq!(
        result["error"]["type"], "prompt_outputs_failed_validation",
        "{result}"
    );
    let errors = result["node_errors"][node]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors for {node}: {result}"));
    assert_eq!(errors.len(), 1, "{result}");
    errors[0].clone()
}

#[test]
fn invalid_prompt_when_not_an_object() {
    let r = reject(json!([1, 2]));
    assert_eq!(r["error"]["type"], "invalid_prompt");
    assert_eq!(r["node_errors"], json!({}));
}

#[test]
fn prompt_no_outputs() {
    let r = reject(json!({"1": empty_image(json!(64))}));
    assert_eq!(
        r,
        json!({"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, "node_errors": {}})
    );
    assert_eq!(reject(json!({}))["error"]["type"], "prompt_no_outputs");
}

#[test]
fn missing_node_type_for_unknown_class_and_missing_class_type() {
    let r = reject(
        json!({"1": {"class_type": "NoSuchNode", "inputs": {}, "_meta": {"title": "My Node"}}, "2": save("1")}),
    );
    assert_eq!(
        r["error"],
        json!({"type": "missing_node_type", "message": "Node 'My Node' not found. The custom node may not be installed.",
               "details": "Node ID '#1'", "extra_info": {"node_id": "1", "class_type": "NoSuchNode", "node_title": "My Node"}})
    );
    let r = reject(json!({"7": {"inputs": {}}}));
    assert_eq!(
        r["error"],
        json!({"type": "missing_node_type",
               "message": "Node 'ID #7' has no class_type. The workflow may be corrupted or a custom node is missing.",
               "details": "Node ID '#7'", "extra_info": {"node_id": "7", "class_type": null, "node_title": null}})
    );
}

#[test]
fn required_input_missing() {
    let r = reject(
        json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}, "2": save("1")}),
    );
    assert_eq!(
        single_node_error(&r, "1"),
        json!({"type": "required_input_missing", "message": "Required input is missing", "details": "color", "extra_info": {"input_name": "color"}})
    );
    assert_eq!(r["node_errors"]["1"]["dependent_outputs"], json!(["2"]));
    assert_eq!(r["node_errors"]["1"]["class_type"], "EmptyImage");
    assert_eq!(
        r["error"]["details"], "",
        "the output's own reasons are empty"
    );
}

#[test]
fn bad_linked_input() {
    let r = reject(json!({"1": empty_image(json!(64)),
                          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0, 5], "filename_prefix": "t"}}}));
    let e = single_node_error(&r, "2");
    assert_eq!(e["type"], "bad_linked_input");
    assert_eq!(
        e["message"],
        "Bad linked input, must be a length-2 list of [node_id, slot_index]"
    );
    assert_eq!(e["details"], "images");
    assert_eq!(
        e["extra_info"],
        json!({"input_name": "images", "input_config": ["IMAGE", {"tooltip": "The images to save."}], "received_value": ["1", 0, 5]})
    );
    assert_eq!(
        r["error"]["details"],
        "Bad linked input, must be a length-2 list of [node_id, slot_index]: images"
    );
}

#[test]
fn return_type_mismatch() {
    let r = reject(json!({"1": empty_image(json!(64)),
                          "2": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["1", 0], "upscale_method": "bilinear", "scale_by": 2.0}},
                          "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "x"}}}));
    let e = single_node_error(&r, "2");
    assert_eq!(e["type"], "return_type_mismatch");
    assert_eq!(e["message"], "Return type mismatch between linked nodes");
    assert_eq!(
        e["details"],
        "samples, received_type(IMAGE) mismatch input_type(LATENT)"
    );
    assert_eq!(
        e["extra_info"],
        json!({"input_name": "samples", "input_config": ["LATENT", {}], "received_type": "IMAGE", "linked_node": ["1", 0]})
    );
}

#[test]
fn invalid_input_type() {
    let r = reject(json!({"1": empty_image(json!("abc")), "2": save("1")}));
    let e = single_node_error(&r, "1");
    assert_eq!(e["type"], "invalid_input_type");
    assert_eq!(
        e["message"],
        "Failed to convert an input value to a INT value"
    );
    assert_eq!(
        e["details"],
        "width, abc, invalid literal for int() with base 10: 'abc'"
    );
    assert_eq!(e["extra_info"]["received_value"], "abc");
    assert_eq!(
        e["extra_info"]["exception_message"],
        "invalid literal for int() with base 10: 'abc'"
    );
    assert_eq!(
        e["extra_info"]["input_config"],
        json!(["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}])
    );
}

#[test]
fn value_smaller_than_min_and_bigger_than_max() {
    let r = reject(json!({"1": empty_image(json!(0)), "2": save("1")}));
    let e = single_node_error(&r, "1");
    assert_eq!(e["type"], "value_smaller_than_min");
    assert_eq!(e["message"], "Value 0 smaller than min of 1");
    assert_eq!(e["details"], "width");
    assert_eq!(
        e["extra_info"],
        json!({"input_name": "width", "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}], "received_value": 0})
    );

    let r = reject(json!({"1": empty_image(json!(16385)), "2": save("1")}));
    let e = single_node_error(&r, "1");
    assert_eq!(e["type"], "value_bigger_than_max");
    assert_eq!(e["message"], "Value 16385 bigger than max of 16384");

    let r = reject(json!({"1": empty_image(json!(64)),
                          "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "scale_by": 9}},
                          "3": save("2")}));
    assert_eq!(
        single_node_error(&r, "2")["message"],
        "Value 9.0 bigger than max of 8.0"
    );
}

#[test]
fn value_not_in_list() {
    let r = reject(json!({"1": empty_image(json!(64)),
                          "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "fancy", "scale_by": 2}},
                          "3": save("2")}));
    let e = single_node_error(&r, "2");
    assert_eq!(e["type"], "value_not_in_list");
    assert_eq!(e["message"], "Value not in list");
    assert_eq!(
        e["details"],
        "upscale_method: 'fancy' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']"
    );
    assert_eq!(e["extra_info"]["received_value"], "fancy");
    assert_eq!(
        e["extra_info"]["input_config"],
        json!([
            ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"],
            {}
        ])
    );
}

#[test]
fn custom_validation_failed() {
    let r = reject(
        json!({"1": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}}, "2": save("1")}),
    );
    let e = single_node_error(&r, "1");
    assert_eq!(
        e,
        json!({"type": "custom_validation_failed", "message": "Custom validation failed for node",
               "details": "image - Invalid image file: missing.png", "extra_info": {"input_name": "image"}})
    );
}

#[test]
fn exception_during_validation_for_a_dangling_link_on_an_output() {
    let r = reject(json!({"2": save("99")}));
    let e = single_node_error(&r, "2");
    assert_eq!(e["type"], "exception_during_validation");
    assert_eq!(e["message"], "Exception when validating node");
    assert_eq!(e["details"], "'99'");
    assert_eq!(e["extra_info"]["exception_type"], "KeyError");
    assert!(e["extra_info"]["traceback"].is_array());
}

#[test]
fn exception_during_inner_validation_for_a_dangling_link_upstream() {
    let r = reject(
        json!({"1": {"class_type": "ImageInvert", "inputs": {"image": ["99", 0]}}, "2": save("1")}),
    );
    let e = single_node_error(&r, "1");
    assert_eq!(e["type"], "exception_during_inner_validation");
    assert_eq!(e["details"], "'99'");
    assert_eq!(e["extra_info"]["input_name"], "images");
    assert_eq!(e["extra_info"]["exception_type"], "KeyError");
    assert_eq!(e["extra_info"]["linked_node"], json!(["1", 0]));
}

#[test]
fn slot_index_out_of_range() {
    let r = reject(
        json!({"1": empty_image(json!(64)), "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 3], "filename_prefix": "t"}}}),
    );
    let e = single_node_error(&r, "2");
    assert_eq!(e["type"], "exception_during_validation");
    assert_eq!(e["details"], "tuple index out of range");
    assert_eq!(e["extra_info"]["exception_type"], "IndexError");
}

#[test]
fn dependency_cycle() {
    let r = reject(
        json!({"1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
                          "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                          "3": save("1")}),
    );
    assert_eq!(r["error"]["type"], "prompt_outputs_failed_validation");
    for id in ["1", "2"] {
        let e = &r["node_errors"][id]["errors"][0];
        assert_eq!(e["type"], "dependency_cycle", "{r}");
        assert_eq!(e["message"], "Dependency cycle detected");
        assert_eq!(
            e["details"],
            "1 (ImageInvert) -> 2 (ImageInvert) -> 1 (ImageInvert)"
        );
        assert_eq!(e["extra_info"]["node_id"], id);
        assert_eq!(e["extra_info"]["cycle_nodes"], json!(["1", "2"]));
    }
}

#[test]
fn one_failing_output_is_dropped_and_reported_with_success() {
    let f = fixture();
    let prompt = json!({"1": empty_image(json!(64)), "2": save("1"), "3": empty_image(json!(0)), "4": save("3")});
    let ok = f
        .engine
        .validate(&f.env, &prompt, None)
        .expect("one output is valid");
    assert_eq!(ok.outputs, vec!["2".to_string()]);
    assert_eq!(
        ok.node_errors["3"]["errors"][0]["type"],
        "value_smaller_than_min"
    );
    assert_eq!(ok.node_errors["3"]["dependent_outputs"], json!(["4"]));
}

#[test]
fn partial_execution_targets_select_outputs() {
    let f = fixture();
    let prompt = json!({"1": empty_image(json!(64)), "2": save("1"), "3": empty_image(json!(0)), "4": save("3")});
    let ok = f
        .engine
        .validate(&f.env, &prompt, Some(&["2".to_string()]))
        .unwrap();
    assert_eq!(ok.outputs, vec!["2".to_string()]);
    assert!(
        ok.node_errors.is_empty(),
        "node 3 is not validated when only 2 is selected"
    );
    let err = f
        .engine
        .validate(&f.env, &prompt, Some(&["1".to_string()]))
        .unwrap_err();
    assert_eq!(err.error.kind, "prompt_no_outputs");
}

#[test]
fn constants_are_coerced_in_place() {
    let f = fixture();
    let prompt = json!({"1": {"class_type": "EmptyImage", "inputs": {"width": "64", "height": 64.9, "batch_size": true, "color": {"__value__": 255}}},
                        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": 5}}});
    let ok = f.engine.validate(&f.env, &prompt, None).unwrap();
    assert_eq!(
        ok.prompt.json["1"]["inputs"],
        json!({"width": 64, "height": 64, "batch_size": 1, "color": 255})
    );
    assert_eq!(ok.prompt.json["2"]["inputs"]["filename_prefix"], "5");
}

#[test]
fn oversized_prompts_are_refused() {
    let mut prompt = serde_json::Map::new();
    for i in 0..6000 {
        prompt.insert(i.to_string(), empty_image(json!(64)));
    }
    let r = reject(Value::Object(prompt));
    assert_eq!(r["error"]["type"], "invalid_prompt");
    assert!(r["error"]["details"].as_str().unwrap().contains("6000"));
}

#[test]
fn float_link_slots_are_type_errors_like_python() {
    let r = reject(
        json!({"1": empty_image(json!(64)), "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0.0], "filename_prefix": "t"}}}),
    );
    let e = single_node_error(&r, "2");
    assert_eq!(
        e["details"],
        "tuple indices must be integers or slices, not float"
    );
    assert_eq!(e["extra_info"]["exception_type"], "TypeError");
}

#[test]
fn javascript_rounded_big_ints_print_their_digits() {
    let r = reject(
        json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 18446744073709552000.0, "height": 64, "batch_size": 1, "color": 0}}, "2": save("1")}),
    );
    let e = single_node_error(&r, "1");
    assert_eq!(
        e["message"],
        "Value 18446744073709552000 bigger than max of 16384"
    );
}

/// `EmptyImage -> ImageInvert x (n - 2) -> PreviewImage`: a chain of links `n` nodes deep.
fn chain(n: usize) -> Value {
    let mut prompt = serde_json::Map::new();
    prompt.insert(
        "1".into(),
        json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}),
    );
    for i in 2..n {
        prompt.insert(
            i.to_string(),
            json!({"class_type": "ImageInvert", "inputs": {"image": [(i - 1).to_string(), 0]}}),
        );
    }
    prompt.insert(
        n.to_string(),
        json!({"class_type": "PreviewImage", "inputs": {"images": [(n - 1).to_string(), 0]}}),
    );
    Value::Object(prompt)
}

/// Regression (a crafted input replayed by the fuzz runner): a chain as deep as the depth limit overflowed
/// the 2 MiB stack of the server's blocking threads and aborted the whole server.
#[test]
fn deepest_chain_validates_on_a_small_stack() {
    let worker = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let f = fixture();
            f.engine
                .validate(&f.env, &chain(999), None)
                .expect("999 nodes deep is within the limit");
            let err = f
                .engine
                .validate(&f.env, &chain(1500), None)
                .expect_err("1500 nodes deep is over the depth limit");
            err.to_json()
        })
        .unwrap();
    let err = worker.join().expect("validation did not crash");
    assert!(err.to_string().contains("recursion"), "{err}");
}

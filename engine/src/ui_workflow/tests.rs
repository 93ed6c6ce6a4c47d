//! The converter against what the real frontend (comfyui-frontend-package 1.58.1) produced from
//! the same definitions (`shared/reference/comfyui-object_info.json`), captured by the scripts
//! in `tests/fixtures/frontend/`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use super::def_node;
use super::emit::js_numbers;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The reference `/object_info` (beside the workspace, as the nodes tests find it).
pub(crate) fn reference_object_info() -> Map<String, Json> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/reference/comfyui-object_info.json"))
        .find(|p| p.is_file())
        .expect("shared/reference/comfyui-object_info.json beside the workspace");
    match read_json(&path) {
        Json::Object(map) => map,
        _ => panic!("object_info is not an object"),
    }
}

/// Node classes whose frontend widgets come from extension code we do not reproduce (3D
/// viewers, webcam, audio recorder, custom previews), each with the reason.
const NOT_REPRODUCED: &[(&str, &str)] = &[
    ("Load3D", "3D viewer extension widgets"),
    ("Load3DAnimation", "3D viewer extension widgets"),
    ("Preview3D", "3D viewer extension widgets"),
    ("Preview3DAnimation", "3D viewer extension widgets"),
    ("SaveGLB", "3D viewer extension widget"),
    ("WebcamCapture", "webcam extension widgets"),
    ("RecordAudio", "audio recorder extension widgets"),
    ("PreviewAny", "text preview extension widgets"),
    ("CustomCombo", "custom combo extension widgets"),
    (
        "BatchImagesNode",
        "autogrow sockets (a saved node brings its own)",
    ),
    (
        "BatchLatentsNode",
        "autogrow sockets (a saved node brings its own)",
    ),
    (
        "BatchMasksNode",
        "autogrow sockets (a saved node brings its own)",
    ),
];

#[test]
fn widget_layouts_match_the_frontend_for_every_reference_node() {
    let info = reference_object_info();
    let expected = read_json(&repo_file("tests/fixtures/frontend/widget_layouts.json"));
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (class, want) in expected.as_object().unwrap() {
        if NOT_REPRODUCED.iter().any(|(c, _)| c == class) {
            continue;
        }
        let (_, widgets, slots) = def_node::created(class, &info[class]);
        let got_widgets: Vec<Json> = widgets
            .iter()
            .map(|w| {
                serde_json::json!([
                    w.name,
                    w.to_prompt,
                    w.saved,
                    js_numbers(w.value.clone().unwrap_or(Json::Null))
                ])
            })
            .collect();
        let got_inputs: Vec<Json> = slots
            .iter()
            .map(|s| serde_json::json!([s.name, s.ty, s.widget]))
            .collect();
        let mut want_inputs: Vec<Json> = want["inputs"].as_array().unwrap().clone();
        let mut got_sorted = got_inputs.clone();
        // Dynamic-combo children are inserted before their combo's slot on creation and after
        // it once a value is set; only the set of slots matters to the converter.
        want_inputs.sort_by_key(|v| v.to_string());
        got_sorted.sort_by_key(|v| v.to_string());
        if Json::from(got_widgets.clone()) != want["widgets"] || got_sorted != want_inputs {
            mismatches.push(format!(
                "{class}:\n  frontend widgets {}\n  ours     widgets {}\n  frontend inputs {}\n  ours     inputs {}",
                want["widgets"],
                Json::from(got_widgets),
                want["inputs"],
                Json::from(got_inputs)
            ));
        }
        compared += 1;
    }
    assert!(compared > 500, "only {compared} classes compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Converts `ui` with the reference definitions, fixed dynamic-prompt choices and a fixed time.
fn convert_with_reference(ui: &Json, info: &Map<String, Json>) -> Map<String, Json> {
    let mut chooser = super::SeededChooser::new(0);
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Local, 2026, 1, 2, 3, 4, 5).unwrap();
    super::to_api_prompt(
        ui,
        info,
        super::Options {
            chooser: &mut chooser,
            now,
        },
    )
    .unwrap()
}

/// Our `_meta.title` falls back to the class name where the frontend shows its English locale's
/// display name (definitions without `display_name`, nodes without a saved title).
fn align_locale_titles(ours: &Map<String, Json>, frontend: &mut Json) {
    for (id, node) in ours {
        if node["_meta"]["title"] == node["class_type"]
            && let Some(title) = frontend.pointer_mut(&format!(
                "/{}/_meta/title",
                id.replace('~', "~0").replace('/', "~1")
            ))
        {
            *title = node["class_type"].clone();
        }
    }
}

#[test]
fn conversions_equal_the_frontends() {
    let info = reference_object_info();
    let mut compared = 0;
    for dir in ["tests/workflows/templates", "tests/workflows/edge_cases"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(repo_file(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let ours = convert_with_reference(&read_json(&path), &info);
            let mut frontend = read_json(&repo_file(&format!("tests/workflows/frontend/{name}")));
            align_locale_titles(&ours, &mut frontend);
            let ours_json = Json::Object(ours.clone());
            assert_eq!(
                ours_json,
                frontend,
                "{name}: ours\n{}\nfrontend\n{}",
                serde_json::to_string_pretty(&ours_json).unwrap(),
                serde_json::to_string_pretty(&frontend).unwrap()
            );
            let keys: Vec<&String> = ours.keys().collect();
            let frontend_keys: Vec<&String> = frontend.as_object().unwrap().keys().collect();
            assert_eq!(keys, frontend_keys, "{name}: node order");
            compared += 1;
        }
    }
    assert!(compared >= 11, "only {compared} workflows compared");
}

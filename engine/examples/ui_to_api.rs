//! Converts UI-format workflows to API prompts with the node definitions of an `/object_info`
//! file: `cargo run -p engine --example ui_to_api -- object_info.json out_dir ui1.json ...`.
//! Dynamic-prompt choices use seed 0; `%date%` patterns the current time.

use std::path::Path;

use engine::ui_workflow::{Options, SeededChooser, to_api_prompt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [info, out_dir, files @ ..] = args.as_slice() else {
        return Err("usage: ui_to_api object_info.json out_dir ui.json...".into());
    };
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(info)?)?;
    let info = info.as_object().ok_or("object_info is not an object")?;
    for file in files {
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        let mut chooser = SeededChooser::new(0);
        let options = Options {
            chooser: &mut chooser,
            now: chrono::Local::now(),
        };
        let name = Path::new(file).file_name().ok_or("no file name")?;
        match to_api_prompt(&doc, info, options) {
            Ok(prompt) => {
                let text = serde_json::to_string_pretty(&prompt)? + "\n";
                std::fs::write(Path::new(out_dir).join(name), text)?;
            }
            Err(e) => eprintln!("{}: {e}", file),
        }
    }
    Ok(())
}

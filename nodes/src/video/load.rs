//! LoadVideo: a video file from the input folder as a (lazily decoded) `VIDEO`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CATEGORY, PYTHON_MODULE, decode};
use crate::value::Video;
use crate::{
    Ctx, Env, Fingerprint, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs,
    Value,
};

/// Extensions Python's `mimetypes` calls `video/*` (ComfyUI's `filter_files_content_types`),
/// plus the common ones a system `mime.types` adds.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "avi", "m1v", "mov", "movie", "mp4", "mpa", "mpe", "mpeg", "mpg", "qt", "webm", "mkv", "m4v",
    "flv", "wmv", "ogv", "3gp",
];

/// Whether `name` has a video extension (case-insensitive).
pub fn is_video_file(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| VIDEO_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// Video files at the top level of the user's input folder, sorted (LoadVideo's choices).
pub fn input_videos(env: &Env) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&env.dirs.input) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| is_video_file(n))
        .collect();
    names.sort();
    names
}

/// The `LoadVideo` node.
pub fn load_video() -> NodeDef {
    let schema = NodeSchema::v3("LoadVideo", CATEGORY, PYTHON_MODULE)
        .display("Load Video")
        .input(InputDef::combo_dynamic("file", input_videos).opt("video_upload", true))
        .output(OutputDef::new("VIDEO"))
        .aliases(&["import video", "open video", "video file"]);
    NodeDef::new(schema, run_load_video)
        .with_fingerprint(fingerprint)
        .with_validation(&["file"], validate)
}

fn video_path(env: &Env, inputs: &Inputs) -> Option<PathBuf> {
    env.annotated_path(inputs.string("file").ok()?, "input")
}

/// SHA-256 of the file, read in blocks (videos can be large).
fn file_hash(path: &Path) -> Option<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = sha2::Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut block) {
            Ok(0) => break,
            Ok(n) => hasher.update(&block[..n]),
            Err(_) => return None,
        }
    }
    Some(hex::encode(hasher.finalize()))
}

fn fingerprint(env: &Env, inputs: &Inputs) -> Fingerprint {
    match video_path(env, inputs).and_then(|p| file_hash(&p)) {
        Some(hash) => Fingerprint::Value(hash),
        None => Fingerprint::Always,
    }
}

fn validate(env: &Env, inputs: &Inputs) -> Result<(), String> {
    match video_path(env, inputs) {
        Some(p) if p.is_file() => Ok(()),
        _ => Err(format!(
            "Invalid video file: {}",
            inputs.string("file").unwrap_or_default()
        )),
    }
}

fn run_load_video(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let name = inputs.string("file")?;
    let path = ctx
        .env
        .annotated_path(name, "input")
        .filter(|p| p.is_file())
        .ok_or_else(|| NodeError::FileNotFound(format!("Invalid video file: {name}")))?;
    // ComfyUI decodes lazily; opening the file here reports a broken upload at this node.
    decode::probe(&path)?;
    Ok(Outputs::one(Value::Video(Arc::new(Video::File { path }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_video_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::under(dir.path());
        std::fs::create_dir_all(&env.dirs.input).unwrap();
        for name in ["b.MP4", "a.webm", "c.png", "d.txt", "e.mkv"] {
            std::fs::write(env.dirs.input.join(name), b"x").unwrap();
        }
        std::fs::create_dir_all(env.dirs.input.join("sub.mp4")).unwrap();
        assert_eq!(input_videos(&env), ["a.webm", "b.MP4", "e.mkv"]);
    }

    #[test]
    fn fingerprint_follows_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::under(dir.path());
        std::fs::create_dir_all(&env.dirs.input).unwrap();
        let file = env.dirs.input.join("v.mp4");
        let inputs = Inputs::new().with("file", Value::String("v.mp4".into()));
        std::fs::write(&file, b"one").unwrap();
        let first = fingerprint(&env, &inputs);
        std::fs::write(&file, b"two").unwrap();
        let second = fingerprint(&env, &inputs);
        assert!(matches!(first, Fingerprint::Value(_)));
        assert_ne!(first, second);
        assert!(validate(&env, &inputs).is_ok());
        let missing = Inputs::new().with("file", Value::String("nope.mp4".into()));
        assert_eq!(fingerprint(&env, &missing), Fingerprint::Always);
        assert_eq!(
            validate(&env, &missing),
            Err("Invalid video file: nope.mp4".into())
        );
    }
}

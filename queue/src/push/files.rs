//! Files crossing between the server and a push worker, which share no filesystem: the input
//! files a prompt names go with the job, the output files its result lists come back. Every
//! path is resolved inside the user's own folder of its type; a name that would leave it (`..`,
//! an absolute path, a symlink pointing elsewhere) is refused.

use std::path::{Path, PathBuf};

use nodes::env::{Dirs, safe_join, split_annotation};
use serde_json::Value as Json;

use super::protocol::FileData;
use crate::job::JobResult;
use crate::layout::is_within;

/// Why a file could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The folder type is not one this side accepts.
    #[error("file folder {0:?} is not accepted here")]
    Folder(String),
    /// The name leaves its folder.
    #[error("file name {0:?} leaves its folder")]
    Escapes(String),
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file of `folder`/`name` in `dirs`, if the name stays inside the folder (lexically; the
/// callers check symlinks against the real folder).
fn resolve(dirs: &Dirs, folder: &str, name: &str) -> Result<(PathBuf, PathBuf), FileError> {
    let base = dirs
        .for_type(folder)
        .ok_or_else(|| FileError::Folder(folder.to_string()))?;
    let path = safe_join(base, name)
        .filter(|p| p != base)
        .ok_or_else(|| FileError::Escapes(name.to_string()))?;
    Ok((base.to_path_buf(), path))
}

/// Reads `folder`/`name` from `dirs`, refusing anything outside the folder.
fn read(dirs: &Dirs, folder: &str, name: &str) -> Result<FileData, FileError> {
    let (base, path) = resolve(dirs, folder, name)?;
    if !is_within(&base, &path) {
        return Err(FileError::Escapes(name.to_string()));
    }
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    Ok(FileData {
        folder: folder.to_string(),
        name: name.to_string(),
        bytes,
    })
}

/// The input files `prompt` names that exist in `dirs`: every string input of every node that,
/// read as ComfyUI's annotated file name (`x.png`, `sub/x.png [output]`), is a file of the
/// user's folders. (Model names and other strings name no such file and are skipped.)
pub fn referenced_inputs(prompt: &Json, dirs: &Dirs) -> Result<Vec<FileData>, FileError> {
    let mut names: Vec<(&'static str, &str)> = prompt
        .as_object()
        .into_iter()
        .flat_map(|nodes| nodes.values())
        .filter_map(|node| node["inputs"].as_object())
        .flat_map(|inputs| inputs.values())
        .filter_map(Json::as_str)
        .filter(|text| !text.is_empty() && text.len() < 4096 && !text.contains('\n'))
        .map(|text| {
            let (name, kind) = split_annotation(text);
            (kind.unwrap_or("input"), name)
        })
        .collect();
    names.sort();
    names.dedup();
    let mut files = Vec::new();
    for (folder, name) in names {
        let Ok((base, path)) = resolve(dirs, folder, name) else {
            continue;
        };
        if path.is_file() && is_within(&base, &path) {
            files.push(read(dirs, folder, name)?);
        }
    }
    Ok(files)
}

/// The files a result's UI outputs list (`{"filename", "subfolder", "type"}` entries of type
/// `output` or `temp`, at any depth), as `(folder, name)` pairs.
pub fn listed_outputs(result: &JobResult) -> Vec<(String, String)> {
    fn walk(value: &Json, out: &mut Vec<(String, String)>) {
        match value {
            Json::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Json::Object(map) => {
                if let (Some(file), Some(kind @ ("output" | "temp"))) = (
                    map.get("filename").and_then(Json::as_str),
                    map.get("type").and_then(Json::as_str),
                ) {
                    let sub = map.get("subfolder").and_then(Json::as_str).unwrap_or("");
                    let name = if sub.is_empty() {
                        file.to_string()
                    } else {
                        format!("{}/{file}", sub.trim_end_matches('/'))
                    };
                    out.push((kind.to_string(), name));
                } else {
                    map.values().for_each(|v| walk(v, out));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    result.outputs.values().for_each(|v| walk(v, &mut out));
    out.sort();
    out.dedup();
    out
}

/// Reads the files `listed` names from `dirs` (see [`listed_outputs`]).
pub fn read_listed(dirs: &Dirs, listed: &[(String, String)]) -> Result<Vec<FileData>, FileError> {
    listed
        .iter()
        .map(|(folder, name)| read(dirs, folder, name))
        .collect()
}

/// Writes `file` into its folder of `dirs` if its folder is one of `allowed`; returns the path.
/// The file is written beside its final name and renamed into place, so a reader never sees
/// half a file and an existing symlink of that name is replaced rather than followed.
pub fn write_file(dirs: &Dirs, file: &FileData, allowed: &[&str]) -> Result<PathBuf, FileError> {
    if !allowed.contains(&file.folder.as_str()) {
        return Err(FileError::Folder(file.folder.clone()));
    }
    let (base, path) = resolve(dirs, &file.folder, &file.name)?;
    let parent = path
        .parent()
        .ok_or_else(|| FileError::Escapes(file.name.clone()))?;
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    if !is_within(&base, parent) {
        return Err(FileError::Escapes(file.name.clone()));
    }
    let partial = parent.join(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    std::fs::write(&partial, &file.bytes).map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        FileError::Io {
            path: path.clone(),
            source: e,
        }
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dirs(root: &Path) -> Dirs {
        let dirs = Dirs::under(root);
        for dir in [&dirs.input, &dirs.output, &dirs.temp] {
            std::fs::create_dir_all(dir).unwrap();
        }
        dirs
    }

    #[test]
    fn a_prompt_carries_the_files_it_names_and_nothing_outside() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        std::fs::create_dir_all(dirs.input.join("sub")).unwrap();
        std::fs::write(dirs.input.join("sub/cat.png"), b"cat").unwrap();
        std::fs::write(dirs.output.join("prev.png"), b"prev").unwrap();
        std::fs::write(root.path().join("secret.txt"), b"secret").unwrap();
        let prompt = json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "sub/cat.png"}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "prev.png [output]"}},
            "3": {"class_type": "LoadImage", "inputs": {"image": "../secret.txt"}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ltx.safetensors"}},
            "5": {"class_type": "X", "inputs": {"a": ["1", 0], "b": 3, "c": ""}},
        });
        let files = referenced_inputs(&prompt, &dirs).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| (f.folder.as_str(), f.name.as_str()))
            .collect();
        assert_eq!(names, [("input", "sub/cat.png"), ("output", "prev.png")]);
        assert_eq!(files[0].bytes, b"cat");
    }

    #[test]
    fn outputs_are_listed_at_any_depth() {
        let mut result = JobResult::default();
        result.outputs.insert(
            "9".into(),
            json!({"images": [{"filename": "a.png", "subfolder": "", "type": "output"},
                              {"filename": "p.png", "subfolder": "s", "type": "temp"},
                              {"filename": "in.png", "subfolder": "", "type": "input"}],
                   "animated": [false]}),
        );
        assert_eq!(
            listed_outputs(&result),
            [
                ("output".to_string(), "a.png".to_string()),
                ("temp".to_string(), "s/p.png".to_string())
            ]
        );
    }

    #[test]
    fn writes_stay_inside_the_allowed_folders() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        let file = |folder: &str, name: &str| FileData {
            folder: folder.into(),
            name: name.into(),
            bytes: b"x".to_vec(),
        };
        let path = write_file(&dirs, &file("output", "a/b.png"), &["output"]).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"x");
        for (folder, name) in [
            ("output", "../escape.png"),
            ("output", "/etc/passwd"),
            ("output", ""),
            ("input", "a.png"),
            ("models", "a.png"),
        ] {
            assert!(
                write_file(&dirs, &file(folder, name), &["output"]).is_err(),
                "{folder}/{name}"
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.path(), dirs.output.join("link")).unwrap();
            assert!(matches!(
                write_file(&dirs, &file("output", "link/x.png"), &["output"]),
                Err(FileError::Escapes(_))
            ));
            assert!(read(&dirs, "output", "link/secret.txt").is_err());
        }
    }
}

//! Where a prompt's files live: the input/output/temp folders of the user it runs for, and the
//! model folders in ComfyUI's layout (`checkpoints/`, `text_encoders/`, `loras/`, ...).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The three file folders ComfyUI nodes read and write.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Uploaded inputs (`type=input`).
    pub input: PathBuf,
    /// Saved outputs (`type=output`).
    pub output: PathBuf,
    /// Previews (`type=temp`).
    pub temp: PathBuf,
}

impl Dirs {
    /// Input, output and temp folders under one base folder.
    pub fn under(base: &Path) -> Self {
        Self {
            input: base.join("input"),
            output: base.join("output"),
            temp: base.join("temp"),
        }
    }

    /// The folder for a ComfyUI file type name (`input`, `output`, `temp`).
    pub fn for_type(&self, kind: &str) -> Option<&Path> {
        match kind {
            "input" => Some(&self.input),
            "output" => Some(&self.output),
            "temp" => Some(&self.temp),
            _ => None,
        }
    }
}

/// File extensions ComfyUI accepts as model files (`folder_paths.supported_pt_extensions`).
pub const MODEL_EXTENSIONS: &[&str] = &[
    ".ckpt",
    ".pt",
    ".pt2",
    ".bin",
    ".pth",
    ".safetensors",
    ".pkl",
    ".sft",
];

/// ComfyUI's model folder names, each with the extensions it lists.
pub const MODEL_FOLDER_NAMES: &[&str] = &[
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
];

/// Legacy folder names ComfyUI maps onto current ones (`clip` -> `text_encoders`, `unet` ->
/// `diffusion_models`): files in `models/clip/` are listed as text encoders too.
const LEGACY_ALIASES: &[(&str, &str)] = &[("clip", "text_encoders"), ("unet", "diffusion_models")];

/// The search paths of every model folder (`folder_paths.folder_names_and_paths`).
#[derive(Debug, Clone, Default)]
pub struct ModelFolders {
    folders: BTreeMap<String, Vec<PathBuf>>,
}

impl ModelFolders {
    /// The default layout under one models root: `<root>/<folder>` for every known folder, with
    /// the legacy `clip/` and `unet/` folders searched too.
    pub fn under(root: &Path) -> Self {
        let mut me = Self::default();
        for name in MODEL_FOLDER_NAMES {
            me.add_path(name, root.join(name));
        }
        for (legacy, current) in LEGACY_ALIASES {
            me.add_path(current, root.join(legacy));
        }
        me
    }

    /// Adds a search path to a folder (as `extra_model_paths.yaml` does).
    pub fn add_path(&mut self, folder: &str, path: PathBuf) {
        let paths = self.folders.entry(folder.to_string()).or_default();
        if !paths.contains(&path) {
            paths.push(path);
        }
    }

    /// The folder names known.
    pub fn names(&self) -> Vec<String> {
        self.folders.keys().cloned().collect()
    }

    /// The search paths of one folder.
    pub fn paths(&self, folder: &str) -> &[PathBuf] {
        self.folders.get(folder).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every model file of a folder as a sorted list of relative paths (`/`-separated), found
    /// recursively in every search path (`folder_paths.get_filename_list`).
    pub fn list(&self, folder: &str) -> Vec<String> {
        let mut names = Vec::new();
        for base in self.paths(folder) {
            collect_files(base, base, &mut names);
        }
        let mut names: Vec<String> = names
            .into_iter()
            .filter(|n| MODEL_EXTENSIONS.iter().any(|ext| n.ends_with(ext)))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The full path of `name` in `folder`, if it exists in one of the search paths
    /// (`folder_paths.get_full_path`). Names that escape the folder are refused.
    pub fn full_path(&self, folder: &str, name: &str) -> Option<PathBuf> {
        self.paths(folder)
            .iter()
            .filter_map(|base| safe_join(base, name))
            .find(|p| p.is_file())
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() || (kind.is_symlink() && path.is_dir()) {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// Joins a client-supplied relative path onto `base`, refusing absolute paths, `..` and anything
/// else that would leave `base`. Returns `None` when the path is not acceptable.
pub fn safe_join(base: &Path, relative: &str) -> Option<PathBuf> {
    if relative.contains('\0') {
        return None;
    }
    let mut out = base.to_path_buf();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Splits ComfyUI's annotated file name (`"name.png [output]"`) into the name and the folder
/// type it names, if any (`folder_paths.annotated_filepath`).
pub fn split_annotation(name: &str) -> (&str, Option<&'static str>) {
    for kind in ["output", "input", "temp"] {
        let suffix = match kind {
            "output" => " [output]",
            "input" => " [input]",
            _ => " [temp]",
        };
        if let Some(stripped) = name.strip_suffix(suffix) {
            return (stripped, Some(kind));
        }
    }
    (name, None)
}

/// Everything a node needs to know about where it runs, for one prompt.
#[derive(Clone)]
pub struct Env {
    /// The user's input/output/temp folders.
    pub dirs: Dirs,
    /// Model search paths.
    pub models: Arc<ModelFolders>,
    /// Who the prompt runs for (`""` in single-user mode); outputs are cached per scope so one
    /// user's files are never served from another user's cache entries.
    pub scope: String,
    /// Whether saved files carry the prompt/workflow metadata (`--disable-metadata` turns it off).
    pub save_metadata: bool,
    /// The device models run on (`Device::Cpu` without a GPU).
    pub device: candle_core::Device,
    /// Long-lived services shared by every prompt a worker runs (the model cache, ...).
    pub services: Arc<Services>,
}

/// A type-keyed registry of long-lived services (one instance per type), so node families can
/// keep state between prompts (loaded models) without the engine knowing their types.
#[derive(Default)]
pub struct Services {
    entries: parking_lot::Mutex<
        std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>,
    >,
}

impl Services {
    /// The service of type `T`, created with `init` on first use.
    pub fn get_or_init<T: std::any::Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let id = std::any::TypeId::of::<T>();
        let mut entries = self.entries.lock();
        if let Some(existing) = entries
            .get(&id)
            .and_then(|e| e.clone().downcast::<T>().ok())
        {
            return existing;
        }
        let service = Arc::new(init());
        entries.insert(id, service.clone());
        service
    }

    /// Installs (or replaces) the service of type `T`.
    pub fn insert<T: std::any::Any + Send + Sync>(&self, service: T) {
        self.entries
            .lock()
            .insert(std::any::TypeId::of::<T>(), Arc::new(service));
    }

    /// The service of type `T`, if installed.
    pub fn get<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.entries
            .lock()
            .get(&std::any::TypeId::of::<T>())
            .cloned()
            .and_then(|s| s.downcast::<T>().ok())
    }
}

impl Env {
    /// An environment whose input/output/temp folders and models all live under `base`
    /// (`base/input`, `base/output`, `base/temp`, `base/models/...`).
    pub fn under(base: &Path) -> Self {
        Self {
            dirs: Dirs::under(base),
            models: Arc::new(ModelFolders::under(&base.join("models"))),
            scope: String::new(),
            save_metadata: true,
            device: candle_core::Device::Cpu,
            services: Arc::new(Services::default()),
        }
    }

    /// Resolves an annotated input file name (`"x.png"`, `"x.png [output]"`) to a path inside the
    /// matching folder, `default_kind` applying when the name carries no annotation.
    pub fn annotated_path(&self, name: &str, default_kind: &str) -> Option<PathBuf> {
        let (name, kind) = split_annotation(name);
        let base = self.dirs.for_type(kind.unwrap_or(default_kind))?;
        safe_join(base, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_refuses_escapes() {
        let base = Path::new("/data/input");
        assert_eq!(
            safe_join(base, "a/b.png"),
            Some(PathBuf::from("/data/input/a/b.png"))
        );
        assert_eq!(
            safe_join(base, "./b.png"),
            Some(PathBuf::from("/data/input/b.png"))
        );
        assert_eq!(safe_join(base, "../b.png"), None);
        assert_eq!(safe_join(base, "a/../../b.png"), None);
        assert_eq!(safe_join(base, "/etc/passwd"), None);
        assert_eq!(safe_join(base, "a\0b"), None);
    }

    #[test]
    fn annotations_select_the_folder() {
        assert_eq!(
            split_annotation("x.png [output]"),
            ("x.png", Some("output"))
        );
        assert_eq!(split_annotation("x.png [temp]"), ("x.png", Some("temp")));
        assert_eq!(split_annotation("x.png"), ("x.png", None));
        let env = Env::under(Path::new("/d"));
        assert_eq!(
            env.annotated_path("x.png [output]", "input"),
            Some(PathBuf::from("/d/output/x.png"))
        );
        assert_eq!(
            env.annotated_path("x.png", "input"),
            Some(PathBuf::from("/d/input/x.png"))
        );
    }

    #[test]
    fn model_lists_are_recursive_sorted_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("loras/sub")).unwrap();
        std::fs::create_dir_all(root.join("clip")).unwrap();
        std::fs::write(root.join("loras/b.safetensors"), b"x").unwrap();
        std::fs::write(root.join("loras/sub/a.safetensors"), b"x").unwrap();
        std::fs::write(root.join("loras/readme.txt"), b"x").unwrap();
        std::fs::write(root.join("clip/gemma.safetensors"), b"x").unwrap();
        let folders = ModelFolders::under(root);
        assert_eq!(
            folders.list("loras"),
            vec!["b.safetensors", "sub/a.safetensors"]
        );
        assert_eq!(folders.list("text_encoders"), vec!["gemma.safetensors"]);
        assert!(folders.full_path("loras", "sub/a.safetensors").is_some());
        assert!(
            folders
                .full_path("loras", "../clip/gemma.safetensors")
                .is_none()
        );
    }
}

/// Errors reading `extra_model_paths.yaml`.
#[derive(Debug, thiserror::Error)]
pub enum ModelPathsError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The YAML is malformed.
    #[error("{path}: {message}")]
    Yaml {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl ModelFolders {
    /// Adds the search paths of an `extra_model_paths.yaml` (ComfyUI's format: groups with an
    /// optional `base_path`, then `folder: path` entries, several paths separated by newlines;
    /// relative paths are taken from `base_path`, or from the YAML's folder).
    pub fn load_extra_paths(&mut self, path: &Path) -> Result<(), ModelPathsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelPathsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let yaml_err = |message: String| ModelPathsError::Yaml {
            path: path.display().to_string(),
            message,
        };
        let docs =
            yaml_rust2::YamlLoader::load_from_str(&text).map_err(|e| yaml_err(e.to_string()))?;
        let yaml_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let Some(doc) = docs.first() else {
            return Ok(());
        };
        let Some(groups) = doc.as_hash() else {
            return if doc.is_null() {
                Ok(())
            } else {
                Err(yaml_err("expected a mapping of groups".into()))
            };
        };
        for (group_name, group) in groups {
            let Some(entries) = group.as_hash() else {
                return Err(yaml_err(format!(
                    "group {:?} is not a mapping",
                    group_name.as_str().unwrap_or("?")
                )));
            };
            let key = |k: &str| yaml_rust2::Yaml::String(k.to_string());
            let base = entries
                .get(&key("base_path"))
                .and_then(|b| b.as_str())
                .map(|b| resolve(&yaml_dir, &expand_home(b)))
                .unwrap_or_else(|| yaml_dir.clone());
            for (folder, value) in entries {
                let Some(folder) = folder.as_str() else {
                    continue;
                };
                if matches!(folder, "base_path" | "is_default" | "download_model_base") {
                    continue;
                }
                let folder = LEGACY_ALIASES
                    .iter()
                    .find(|(l, _)| *l == folder)
                    .map(|(_, c)| *c)
                    .unwrap_or(folder);
                let Some(paths) = value.as_str() else {
                    continue;
                };
                for line in paths.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    self.add_path(folder, resolve(&base, &expand_home(line)));
                }
            }
        }
        Ok(())
    }
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod extra_paths_tests {
    use super::*;

    #[test]
    fn reads_comfyui_extra_model_paths() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("extra_model_paths.yaml");
        std::fs::write(
            &yaml,
            "comfyui:\n  base_path: /srv/comfy\n  checkpoints: models/checkpoints/\n  clip: models/clip/\n  loras: |\n    models/loras\n    /abs/loras\nother:\n  vae: vaes\n",
        )
        .unwrap();
        let mut folders = ModelFolders::default();
        folders.load_extra_paths(&yaml).unwrap();
        assert_eq!(
            folders.paths("checkpoints"),
            [PathBuf::from("/srv/comfy/models/checkpoints/")]
        );
        assert_eq!(
            folders.paths("text_encoders"),
            [PathBuf::from("/srv/comfy/models/clip/")]
        );
        assert_eq!(
            folders.paths("loras"),
            [
                PathBuf::from("/srv/comfy/models/loras"),
                PathBuf::from("/abs/loras")
            ]
        );
        assert_eq!(folders.paths("vae"), [dir.path().join("vaes")]);
    }

    #[test]
    fn malformed_yaml_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("bad.yaml");
        std::fs::write(&yaml, "comfyui: [unclosed").unwrap();
        assert!(ModelFolders::default().load_extra_paths(&yaml).is_err());
        std::fs::write(&yaml, "comfyui: 5\n").unwrap();
        assert!(ModelFolders::default().load_extra_paths(&yaml).is_err());
    }
}

impl Services {
    /// Drops every service (loaded models are released once no running job holds them; the
    /// next prompt recreates what it needs).
    pub fn clear(&self) {
        self.entries.lock().clear();
    }
}

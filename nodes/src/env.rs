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

//! ComfyUI nodes: the node-authoring API (schemas, values, inputs/outputs, context, registry)
//! and the node implementations, with ComfyUI's names, inputs and `/object_info` schema.
//!
//! A node is a [`schema::NodeSchema`] plus one function ([`registry::RunFn`]); families of
//! nodes live one file (or folder, `video/`) each (`image.rs`, `latent.rs`, ...) and
//! [`builtin_registry`] lists them.

pub mod canny;
pub mod context;
pub mod dev;
pub mod env;
pub mod error;
pub mod files;
pub mod image;
pub mod image_utils;
pub mod imageops;
pub mod io;
pub mod latent;
pub mod ltxv;
pub mod model_cache;
pub mod primitive;
pub mod registry;
pub mod resize;
pub mod sampling;
pub mod schema;
pub mod value;
pub mod video;

pub use context::{Ctx, Interrupt, Preview, Reporter};
pub use env::Env;
pub use error::{NodeError, NodeResult};
pub use io::{Inputs, Outputs, Slot};
pub use registry::{Fingerprint, NodeDef, Registry};
pub use schema::{Hidden, InputDef, NodeSchema, OutputDef};
pub use value::{Json, Latent, LatentSamples, Object, Value};

/// A registry with every built-in node.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    image::register(&mut r);
    latent::register(&mut r);
    primitive::register(&mut r);
    image_utils::register(&mut r);
    resize::register(&mut r);
    canny::register(&mut r);
    ltxv::register(&mut r);
    sampling::register(&mut r);
    video::register(&mut r);
    r
}

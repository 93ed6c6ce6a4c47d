//! Push mode, for serverless GPU platforms that start a container per request (RunPod, Modal,
//! Verda): the server claims a job itself and sends it over HTTP to a `comfyrs worker --http`
//! endpoint, which runs it and streams back its events, its output files and its outcome.
//! Both sides share this module: the wire format ([`protocol`]) and the file handling
//! ([`files`]) that carries inputs to the worker and outputs back, since the two machines
//! share no filesystem.

pub mod files;
pub mod protocol;

pub use files::{FileError, listed_outputs, read_listed, referenced_inputs, write_file};
pub use protocol::{FileData, Health, Line, LineReader, RunRequest, StreamError};

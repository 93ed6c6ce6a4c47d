//! The push protocol. `POST /run` carries a [`RunRequest`] (JSON) with the shared secret as a
//! bearer token; the response is NDJSON: one [`Line`] per line: the job's events as they
//! happen (keep-alives between them), then its output files, then its outcome. A stream that
//! ends without an outcome means the attempt was lost (the worker died or the network broke).
//! `GET /health` answers a [`Health`].

use serde::{Deserialize, Serialize};

use crate::job::{Job, JobEvent, Outcome, bytes_b64};

/// The route that runs a job.
pub const RUN_PATH: &str = "/run";
/// The route that reports readiness (authenticated).
pub const HEALTH_PATH: &str = "/health";
/// The unauthenticated readiness probe for the platform's load balancer (200 once ready).
pub const PING_PATH: &str = "/ping";

/// The body of `POST /run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// The job as claimed (id, user, prompt, outputs, extra_data, client_id).
    pub job: Job,
    /// The attempt the server's lease belongs to (for logs: the server fences the result).
    pub attempt: u32,
    /// The files the prompt names (uploaded images, ...), from the server's user folders.
    pub files: Vec<FileData>,
}

/// One file moving between the server's and the worker's user folders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileData {
    /// `input`, `output` or `temp` (ComfyUI's file types).
    pub folder: String,
    /// The path inside that folder (`subfolder/name.png`).
    pub name: String,
    /// The contents (base64 on the wire).
    #[serde(with = "bytes_b64")]
    pub bytes: Vec<u8>,
}

/// The body of `GET /health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Startup work (model preloading) is done.
    pub ready: bool,
    /// A job is running (the worker takes one at a time).
    pub busy: bool,
}

/// One line of the `POST /run` response stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// An execution event, as a pull worker publishes it.
    Event(JobEvent),
    /// Nothing new: sent periodically so both ends notice a dead connection.
    Keepalive,
    /// An output file the result lists.
    File(FileData),
    /// How the attempt ended: the last line of a complete stream.
    Outcome(Outcome),
    /// The worker could not run the job (it sends no outcome).
    Error(String),
}

impl Line {
    /// The line as NDJSON (JSON plus a newline).
    pub fn to_ndjson(&self) -> Vec<u8> {
        // Serialising these plain data types cannot fail (string keys, no non-finite floats
        // reach JSON values).
        let mut bytes = serde_json::to_vec(self).unwrap_or_else(|e| {
            serde_json::to_vec(&Line::Error(format!("unserialisable line: {e}")))
                .unwrap_or_default()
        });
        bytes.push(b'\n');
        bytes
    }
}

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A line grew past the limit.
    #[error("a stream line is longer than {0} bytes")]
    TooLong(usize),
    /// A line is not a [`Line`].
    #[error("bad stream line: {0}")]
    Bad(#[from] serde_json::Error),
}

/// Splits a byte stream arriving in chunks into [`Line`]s.
#[derive(Debug)]
pub struct LineReader {
    buffer: Vec<u8>,
    max_line: usize,
}

impl LineReader {
    /// A reader refusing lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            buffer: Vec::new(),
            max_line,
        }
    }

    /// Adds a chunk; returns the lines it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Line>, StreamError> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.buffer.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.buffer);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines.push(serde_json::from_slice(&line)?);
        }
        self.buffer.extend_from_slice(rest);
        if self.buffer.len() > self.max_line {
            return Err(StreamError::TooLong(self.max_line));
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{EventMessage, JobResult};

    fn event(n: u64) -> Line {
        Line::Event(JobEvent {
            job_id: "j".into(),
            user: "u".into(),
            client_id: None,
            message: EventMessage::Preview {
                node: n.to_string(),
                mime: "image/png".into(),
                bytes: vec![0, 1, 2, 255],
            },
        })
    }

    #[test]
    fn lines_survive_any_chunking() {
        let lines = [
            event(1),
            Line::Keepalive,
            Line::File(FileData {
                folder: "output".into(),
                name: "a/b.png".into(),
                bytes: b"\n\x00png".to_vec(),
            }),
            Line::Outcome(Outcome::Finished(JobResult::default())),
        ];
        let wire: Vec<u8> = lines.iter().flat_map(Line::to_ndjson).collect();
        for chunk in [1, 3, 7, wire.len()] {
            let mut reader = LineReader::new(1 << 20);
            let read: Vec<Line> = wire
                .chunks(chunk)
                .flat_map(|c| reader.push(c).unwrap())
                .collect();
            let again: Vec<u8> = read.iter().flat_map(Line::to_ndjson).collect();
            assert_eq!(again, wire, "chunks of {chunk}");
        }
    }

    #[test]
    fn overlong_and_malformed_lines_are_refused() {
        let mut reader = LineReader::new(16);
        assert!(matches!(
            reader.push(&[b'x'; 17]),
            Err(StreamError::TooLong(16))
        ));
        let mut reader = LineReader::new(1 << 10);
        assert!(matches!(
            reader.push(b"{\"nope\":1}\n"),
            Err(StreamError::Bad(_))
        ));
    }
}

//! The fuzz targets on stable Rust, without libFuzzer: replays each target's corpus
//! (`corpus/<target>/`, plus `artifacts/<target>/` so past crashes stay fixed), then mutates
//! corpus entries at random for a bounded time. A panic, an allocation over the limit (the
//! allocator refuses it and the process aborts) or an input slower than `--max-ms` fails the
//! run; the input is kept in `artifacts/<target>/`.
//!
//! `fuzz-stable <target|all> [--seconds N] [--seed N] [--max-ms N]` (seconds per target).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use comfyrs_fuzz::{TARGETS, Target, json_mutate};

/// Largest single allocation allowed (libFuzzer's `-malloc_limit_mb` plays this role).
const MALLOC_LIMIT: usize = 512 << 20;

/// The system allocator, refusing single allocations over [`MALLOC_LIMIT`].
struct Limited;

// SAFETY: delegates to the system allocator; refusing (null) is allowed by GlobalAlloc.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Limited = Limited;

/// Stack of the thread the targets run on: tokio's blocking threads (where the server parses
/// and validates) get 2 MiB.
const STACK_BYTES: usize = 2 << 20;

/// Longest a mutated input may grow.
const MAX_LEN: usize = 256 << 10;

struct Args {
    targets: Vec<&'static Target>,
    seconds: f64,
    seed: u64,
    max_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let which = args
        .next()
        .ok_or("usage: fuzz-stable <target|all> [--seconds N] [--seed N] [--max-ms N]")?;
    let targets: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| which == "all" || t.name == which)
        .collect();
    if targets.is_empty() {
        let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
        return Err(format!(
            "unknown target {which}; targets: {}",
            names.join(", ")
        ));
    }
    let mut parsed = Args {
        targets,
        seconds: 10.0,
        seed: 0x5eed_c0ff_ee00_0001,
        max_ms: 2000,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--seconds" => parsed.seconds = value.parse().map_err(|e| bad(&e))?,
            "--seed" => parsed.seed = value.parse().map_err(|e| bad(&e))?,
            "--max-ms" => parsed.max_ms = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(parsed)
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .iter()
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "last-input"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// A small xorshift generator: reproducible runs from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

impl json_mutate::Random for Rng {
    fn below(&mut self, n: usize) -> usize {
        Rng::below(self, n)
    }
}

/// Tokens that reach the interesting branches of JSON, paths and multipart bodies.
const TOKENS: &[&str] = &[
    "..",
    "/",
    "../",
    "\\",
    "\0",
    "%2e%2e",
    " [output]",
    " [input]",
    "{}",
    "[]",
    "null",
    "true",
    "false",
    "\"\"",
    "[\"1\",0]",
    "[\"1\",-1]",
    "[\"999\",0]",
    "-1",
    "0",
    "1e308",
    "-1e308",
    "4294967296",
    "18446744073709551616",
    "-9223372036854775808",
    "99999999",
    "0.5",
    "NaN",
    "\"inputs\"",
    "\"class_type\"",
    "\"links\"",
    "\"nodes\"",
    "\"subgraphs\"",
    "\"widgets_values\"",
    "\"mode\":4",
    "\"mode\":2",
    "\r\n",
    "--comfyrsfuzzboundary",
    "filename=\"",
    "Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n",
    "\"__metadata__\"",
    "\"dtype\":\"BF16\"",
    "\"shape\":[",
    "\"data_offsets\":[0,",
    "\"type\":\"feature_flags\"",
    "\u{1F600}",
    "\u{FEFF}",
];

/// Interesting little-endian 64-bit values (safetensors' length prefix).
const WORDS: &[u64] = &[
    0,
    1,
    7,
    8,
    0xFF,
    0xFFFF,
    1 << 31,
    1 << 32,
    u64::MAX,
    u64::MAX - 7,
    256 << 20,
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                let bytes = b"\0\xff\"{[\\./\x80:,0";
                input[i] = bytes[rng.below(bytes.len())];
            }
            2 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                input.drain(start..end);
            }
            3 => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(256)).min(len);
                let chunk = input[start..end].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let cut = rng.below(len + 1);
                    let from = rng.below(other.len());
                    input.truncate(cut);
                    input.extend_from_slice(&other[from..]);
                }
            }
            6 => replace_number(rng, input),
            7 if len >= 8 => {
                let at = if rng.below(2) == 0 {
                    0
                } else {
                    rng.below(len - 7)
                };
                let word = WORDS[rng.below(WORDS.len())].to_le_bytes();
                input[at..at + 8].copy_from_slice(&word);
            }
            _ => {
                let at = rng.below(len + 1);
                let byte = rng.next() as u8;
                input.insert(at, byte);
            }
        }
    }
    input.truncate(MAX_LEN);
}

/// Replaces one decimal number in the input with an extreme one.
fn replace_number(rng: &mut Rng, input: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..input.len())
        .filter(|&i| input[i].is_ascii_digit() && (i == 0 || !input[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[rng.below(starts.len())];
    let end = (start..input.len())
        .find(|&i| !input[i].is_ascii_digit())
        .unwrap_or(input.len());
    let numbers = [
        "0",
        "1",
        "2",
        "65536",
        "16384",
        "99999999",
        "4294967297",
        "18446744073709551616",
        "-1",
        "1e400",
    ];
    let number = numbers[rng.below(numbers.len())].as_bytes();
    input.splice(start..end, number.iter().copied());
}

/// FNV-1a: a stable name for an artifact, and a per-target seed.
fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs one input; `Err` names what went wrong.
fn run_one(
    target: &Target,
    input: &[u8],
    last_input: &mut std::fs::File,
    max: Duration,
) -> Result<(), String> {
    // Kept on disk while it runs: a stack overflow or an abort leaves it behind to replay.
    use std::io::{Seek, Write};
    let _ = last_input
        .seek(std::io::SeekFrom::Start(0))
        .and_then(|_| last_input.write_all(input))
        .and_then(|()| last_input.set_len(input.len() as u64));
    let start = Instant::now();
    let outcome = std::panic::catch_unwind(|| (target.run)(input));
    let took = start.elapsed();
    match outcome {
        Err(_) => Err("panicked".into()),
        Ok(()) if took > max => Err(format!("took {took:?} (limit {max:?})")),
        Ok(()) => Ok(()),
    }
}

/// Replays and mutates one target's corpus; returns the number of inputs run.
fn fuzz_target(target: &Target, args: &Args) -> Result<u64, String> {
    let corpus_dir = fuzz_dir().join("corpus").join(target.name);
    let artifacts = fuzz_dir().join("artifacts").join(target.name);
    std::fs::create_dir_all(&artifacts).map_err(|e| format!("{}: {e}", artifacts.display()))?;
    let last_input_path = artifacts.join("last-input");
    let mut last_input = std::fs::File::create(&last_input_path)
        .map_err(|e| format!("{}: {e}", last_input_path.display()))?;
    let mut corpus = read_dir_files(&corpus_dir);
    let known_crashes = read_dir_files(&artifacts);
    if corpus.is_empty() {
        return Err(format!("no corpus in {}", corpus_dir.display()));
    }
    let max = Duration::from_millis(args.max_ms);
    let fail = |input: &[u8], why: String| {
        let path = artifacts.join(format!("crash-{:016x}", hash(input)));
        let _ = std::fs::write(&path, input);
        format!("{}: input {} {why}", target.name, path.display())
    };
    let mut runs = 0u64;
    for input in corpus.iter().chain(&known_crashes) {
        run_one(target, input, &mut last_input, max).map_err(|why| fail(input, why))?;
        runs += 1;
    }
    let mut rng = Rng((args.seed ^ hash(target.name.as_bytes())) | 1);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    while Instant::now() < deadline {
        let mut input = corpus[rng.below(corpus.len())].clone();
        let doc = (rng.below(2) == 0)
            .then(|| serde_json::from_slice::<serde_json::Value>(&input).ok())
            .flatten();
        match doc {
            Some(mut doc) => {
                json_mutate::mutate(&mut rng, &mut doc);
                input = serde_json::to_vec(&doc).unwrap_or(input);
            }
            None => mutate(&mut rng, &mut input, &corpus),
        }
        run_one(target, &input, &mut last_input, max).map_err(|why| fail(&input, why))?;
        runs += 1;
        // Keep some mutants as new parents, so mutations stack up over the run.
        if rng.below(64) == 0 && corpus.len() < 4096 {
            corpus.push(input);
        }
    }
    drop(last_input);
    let _ = std::fs::remove_file(&last_input_path);
    Ok(runs)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Quiet panics: the runner reports each failing input once.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let worker = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || {
            for target in &args.targets {
                let start = Instant::now();
                match fuzz_target(target, &args) {
                    Ok(runs) => println!(
                        "{}: {runs} inputs in {:.1}s, no failure",
                        target.name,
                        start.elapsed().as_secs_f64()
                    ),
                    Err(e) => {
                        eprintln!("FAILED {e}");
                        return false;
                    }
                }
            }
            true
        });
    match worker.map(|w| w.join()) {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

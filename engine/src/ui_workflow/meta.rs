//! The `_meta` of an API node (`{title, cnr_id?, aux_id?, ver?}`, the pack identity kept only
//! when it passes the frontend's workflow-schema checks) and the filename search-and-replace
//! the frontend applies to save nodes' `filename_prefix` (`%Node.widget%`, `%date:...%`).

use serde_json::{Map, Value as Json};

/// Nodes whose `filename_prefix` the frontend runs through search-and-replace.
pub(crate) const SAVE_NODES: &[&str] = &[
    "SaveImage",
    "SaveImageAdvanced",
    "SaveSVGNode",
    "SaveVideo",
    "SaveAnimatedWEBP",
    "SaveWEBM",
    "SaveAudio",
    "SaveAudioMP3",
    "SaveAudioOpus",
    "SaveAudioAdvanced",
    "SaveGLB",
    "Save3DAdvanced",
    "SaveGaussianSplat",
    "SavePointCloud",
    "SaveAnimatedPNG",
    "CLIPSave",
    "VAESave",
    "ModelSave",
    "LoraSave",
    "SaveLatent",
];

fn repo_like(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    let first_last = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    (1..=100).contains(&s.len())
        && s.chars().all(ok_char)
        && first_last(s.chars().next())
        && first_last(s.chars().last())
}

fn github_user(s: &str) -> bool {
    (1..=39).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn numeric_part(s: &str) -> bool {
    s == "0" || (!s.is_empty() && !s.starts_with('0') && s.chars().all(|c| c.is_ascii_digit()))
}

fn identifiers(s: &str) -> bool {
    s.split('.').all(|p| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == '-')
    })
}

fn semver(s: &str) -> bool {
    let (core, build) = match s.split_once('+') {
        Some((c, b)) => (c, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric_part(p))
        && pre.is_none_or(identifiers)
        && build.is_none_or(identifiers)
}

fn git_hash(s: &str) -> bool {
    (4..=40).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The pack fields of `properties` the frontend copies into `_meta` (after its schema checks;
/// `ver` loses a leading `v`).
pub(crate) fn pack_meta(properties: &Map<String, Json>) -> Map<String, Json> {
    let mut out = Map::new();
    if let Some(id) = properties.get("cnr_id").and_then(Json::as_str)
        && repo_like(id)
    {
        out.insert("cnr_id".into(), Json::from(id));
    }
    if let Some(aux) = properties.get("aux_id").and_then(Json::as_str)
        && let Some((user, repo)) = aux.split_once('/')
        && !repo.contains('/')
        && github_user(user)
        && repo_like(repo)
    {
        out.insert("aux_id".into(), Json::from(aux));
    }
    if let Some(ver) = properties.get("ver").and_then(Json::as_str) {
        let stripped = ver.strip_prefix('v').unwrap_or(ver);
        if ver == "unknown" {
            out.insert("ver".into(), Json::from("unknown"));
        } else if semver(stripped) || git_hash(stripped) {
            out.insert("ver".into(), Json::from(stripped));
        }
    }
    out
}

/// A node the replacement can read: its S&R name, title and widget values.
pub(crate) struct Named<'a> {
    pub sr_name: Option<&'a str>,
    pub title: &'a str,
    /// `(name, value)` of each widget (`None`: undefined).
    pub widgets: Vec<(&'a str, Option<&'a Json>)>,
}

/// `applyTextReplacements`: `%Node.widget%` becomes that widget's value (characters illegal in
/// file names replaced by `_`), `%date:FORMAT%` the local time; anything else stays.
pub(crate) fn replace_text(
    value: &str,
    nodes: &[Named],
    now: &chrono::DateTime<chrono::Local>,
) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(len) = after.find('%') else { break };
        if len == 0 {
            out.push_str(&rest[..=start]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..start]);
        let text = &after[..len];
        out.push_str(&replacement(text, nodes, now).unwrap_or_else(|| format!("%{text}%")));
        rest = &after[len + 1..];
    }
    out.push_str(rest);
    out
}

fn replacement(
    text: &str,
    nodes: &[Named],
    now: &chrono::DateTime<chrono::Local>,
) -> Option<String> {
    let split: Vec<&str> = text.split('.').collect();
    if split.len() != 2 {
        return split[0]
            .strip_prefix("date:")
            .map(|format| format_date(format, now));
    }
    let by_sr: Vec<&Named> = nodes
        .iter()
        .filter(|n| n.sr_name == Some(split[0]))
        .collect();
    let candidates = if by_sr.is_empty() {
        nodes.iter().filter(|n| n.title == split[0]).collect()
    } else {
        by_sr
    };
    let node = candidates.first()?;
    let (_, value) = node.widgets.iter().find(|(name, _)| *name == split[1])?;
    let text = match value {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(v) => js_string(v),
    };
    Some(
        text.chars()
            .map(|c| {
                if "/?<>\\:*|\"".contains(c) || (c as u32) < 0x20 || c as u32 == 0x7f {
                    '_'
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// JavaScript's `String(value)` for JSON values.
fn js_string(v: &Json) -> String {
    match v {
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i128),
            _ => n.to_string(),
        },
        Json::Array(a) => a.iter().map(js_string).collect::<Vec<_>>().join(","),
        Json::Object(_) => "[object Object]".into(),
        Json::String(s) => s.clone(),
        Json::Null => "null".into(),
    }
}

/// The frontend's `formatDate`: `d`, `M`, `h`, `m`, `s` (doubled: zero-padded), `yy`, `yyyy`.
fn format_date(format: &str, now: &chrono::DateTime<chrono::Local>) -> String {
    use chrono::{Datelike, Timelike};
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = |max: usize| {
            let mut n = 1;
            while n < max && chars.get(i + n) == Some(&c) {
                n += 1;
            }
            n
        };
        let part = match c {
            'd' => Some(now.day()),
            'M' => Some(now.month()),
            'h' => Some(now.hour()),
            'm' => Some(now.minute()),
            's' => Some(now.second()),
            _ => None,
        };
        if let Some(p) = part {
            let n = run(2);
            out.push_str(&format!("{p:0n$}"));
            i += n;
        } else if c == 'y' && chars.get(i + 1) == Some(&'y') {
            let n = run(4);
            let year = now.year().to_string();
            match n {
                2 => out.push_str(year.get(2..).unwrap_or_default()),
                4 => out.push_str(&year),
                _ => out.push_str(&"y".repeat(n)),
            }
            i += n;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn pack_metadata_is_checked_like_the_frontend() {
        let props =
            json!({"cnr_id": "comfy-core", "ver": "v0.3.56", "aux_id": "kijai/ComfyUI-KJNodes"});
        let meta = pack_meta(props.as_object().unwrap());
        assert_eq!(
            Json::Object(meta),
            json!({"cnr_id": "comfy-core", "aux_id": "kijai/ComfyUI-KJNodes", "ver": "0.3.56"})
        );
        let bad = json!({"cnr_id": "-x", "ver": "1.2", "aux_id": "a/b/c"});
        assert!(pack_meta(bad.as_object().unwrap()).is_empty());
        let hash = json!({"ver": "a1b2c3d"});
        assert_eq!(pack_meta(hash.as_object().unwrap())["ver"], "a1b2c3d");
    }

    #[test]
    fn text_replacements() {
        let now = chrono::Local.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        let width = json!(512);
        let nodes = [Named {
            sr_name: Some("Empty Latent Image"),
            title: "Empty",
            widgets: vec![("width", Some(&width))],
        }];
        assert_eq!(
            replace_text(
                "a/%Empty Latent Image.width%_%date:yyyy-MM-dd hh%_%x%",
                &nodes,
                &now
            ),
            "a/512_2026-03-04 05_%x%"
        );
        assert_eq!(replace_text("video/LTX-2", &nodes, &now), "video/LTX-2");
    }
}

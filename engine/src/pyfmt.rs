//! Python's formatting and conversion rules, as far as ComfyUI's error JSON exposes them:
//! `repr`/`str` of JSON values, `repr` of floats, and the messages of `int()`, `float()`.
//! Validation messages ("Value 0.5 smaller than min of 1.0") must read exactly as ComfyUI's.

use serde_json::Value as Json;

/// Python's `repr(float)`: shortest round-trip digits, scientific below 1e-4 and from 1e16.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point as usize >= digits.len() {
        format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
    } else {
        let (int_part, frac) = digits.split_at(point as usize);
        format!("{int_part}.{frac}")
    };
    format!("{sign}{body}")
}

/// An integral float written as Python writes the int a JSON parser would have kept: the
/// shortest round-trip digits padded with zeros (`1.8446744073709552e19` -> `18446744073709552000`).
pub fn integral_float_digits(x: f64) -> String {
    let sci = format!("{:e}", x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let point = exp + 1;
    if point <= 0 || (point as usize) < digits.len() {
        return float_repr(x);
    }
    let zeros = "0".repeat(point as usize - digits.len());
    format!("{}{digits}{zeros}", if negative { "-" } else { "" })
}

/// Python's `repr(str)`.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn number_repr(n: &serde_json::Number) -> String {
    if n.is_f64() {
        float_repr(n.as_f64().unwrap_or(f64::NAN))
    } else {
        n.to_string()
    }
}

/// Python's `repr()` of the value `json.loads` would produce.
pub fn repr(v: &Json) -> String {
    match v {
        Json::Null => "None".into(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Number(n) => number_repr(n),
        Json::String(s) => str_repr(s),
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", str_repr(k), repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `str()`: strings bare, everything else as `repr`.
pub fn str_of(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => repr(other),
    }
}

/// Python's type name of a JSON value (`NoneType`, `bool`, `int`, `float`, `str`, ...).
pub fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "NoneType",
        Json::Bool(_) => "bool",
        Json::Number(n) if n.is_f64() => "float",
        Json::Number(_) => "int",
        Json::String(_) => "str",
        Json::Array(_) => "list",
        Json::Object(_) => "dict",
    }
}

/// Python's `int(v)`, with Python's error message on failure.
pub fn to_int(v: &Json) -> Result<i128, String> {
    match v {
        Json::Bool(b) => Ok(*b as i128),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i as i128)
            } else if let Some(u) = n.as_u64() {
                Ok(u as i128)
            } else {
                float_to_int(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => parse_int(s)
            .ok_or_else(|| format!("invalid literal for int() with base 10: {}", str_repr(s))),
        other => Err(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            type_name(other)
        )),
    }
}

fn float_to_int(f: f64) -> Result<i128, String> {
    if f.is_nan() {
        Err("cannot convert float NaN to integer".into())
    } else if f.is_infinite() {
        Err("cannot convert float infinity to integer".into())
    } else if f.abs() >= 1.7e38 {
        Err("integer too large for this server".into())
    } else {
        Ok(f.trunc() as i128)
    }
}

fn strip_underscores(body: &str) -> Option<String> {
    // Python allows single underscores between digits only.
    if body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    Some(body.replace('_', ""))
}

fn parse_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let body = strip_underscores(body)?;
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i128 = body.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Python's `float(v)`, with Python's error message on failure.
pub fn to_float(v: &Json) -> Result<f64, String> {
    match v {
        Json::Bool(b) => Ok(*b as i32 as f64),
        Json::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => parse_float(s)
            .ok_or_else(|| format!("could not convert string to float: {}", str_repr(s))),
        other => Err(format!(
            "float() argument must be a string or a real number, not '{}'",
            type_name(other)
        )),
    }
}

fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse::<f64>().ok().or(Some(f64::NAN));
    }
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE_".contains(&b))
    {
        return None;
    }
    strip_underscores(t)?.parse().ok()
}

/// Python's `bool(v)`: truthiness.
pub fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_python() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(0.5), "0.5");
        assert_eq!(float_repr(0.01), "0.01");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e16), "1.5e+16");
        assert_eq!(float_repr(123456789012345.0), "123456789012345.0");
        assert_eq!(float_repr(-2.5), "-2.5");
        assert_eq!(float_repr(100.0), "100.0");
        assert_eq!(float_repr(1.8446744073709552e19), "1.8446744073709552e+19");
        assert_eq!(float_repr(f64::INFINITY), "inf");
        assert_eq!(
            integral_float_digits(1.8446744073709552e19),
            "18446744073709552000"
        );
    }

    #[test]
    fn reprs_match_python() {
        assert_eq!(repr(&json!(["euler", "ddim"])), "['euler', 'ddim']");
        assert_eq!(
            repr(&json!({"a": [1, 2.0, null, true]})),
            "{'a': [1, 2.0, None, True]}"
        );
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a\nb"), "'a\\nb'");
        assert_eq!(str_of(&json!("x")), "x");
    }

    #[test]
    fn conversions_match_python() {
        assert_eq!(to_int(&json!(5.9)), Ok(5));
        assert_eq!(to_int(&json!(-5.9)), Ok(-5));
        assert_eq!(to_int(&json!(" 42 ")), Ok(42));
        assert_eq!(to_int(&json!("1_000")), Ok(1000));
        assert_eq!(to_int(&json!(true)), Ok(1));
        assert_eq!(
            to_int(&json!(18446744073709551615u64)),
            Ok(18446744073709551615)
        );
        assert_eq!(
            to_int(&json!("5.5")).unwrap_err(),
            "invalid literal for int() with base 10: '5.5'"
        );
        assert_eq!(
            to_int(&json!(null)).unwrap_err(),
            "int() argument must be a string, a bytes-like object or a real number, not 'NoneType'"
        );
        assert_eq!(to_float(&json!("1e3")), Ok(1000.0));
        assert_eq!(
            to_float(&json!("abc")).unwrap_err(),
            "could not convert string to float: 'abc'"
        );
        assert!(to_float(&json!("inf")).unwrap().is_infinite());
        assert!(truthy(&json!("false")));
        assert!(!truthy(&json!("")));
        assert!(!truthy(&json!(0)));
    }
}

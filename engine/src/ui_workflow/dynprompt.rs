//! The frontend's dynamic prompts (`processDynamicPrompt`), applied when a workflow is queued to
//! text widgets declared with `dynamicPrompts: true` (e.g. CLIPTextEncode's `text`):
//! `//` and `/* */` comments are removed and each `{a|b|c}` becomes one of its options, chosen
//! at random (nested braces allowed, `\` escapes the next character and is kept).

/// Picks one of `n` options (`n >= 1`). `Send`: conversion runs on a thread of its own.
pub trait Chooser: Send {
    /// An index in `0..n`.
    fn choose(&mut self, n: usize) -> usize;
}

/// A small deterministic generator (SplitMix64) for choices.
#[derive(Debug, Clone)]
pub struct SeededChooser(u64);

impl SeededChooser {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl Chooser for SeededChooser {
    fn choose(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n.max(1) as u64) as usize
    }
}

/// Removes `/* ... */` blocks and `//` to the end of the line.
fn strip_comments(input: &str) -> String {
    let mut out = String::new();
    let mut rest = input;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => match rest[b + 2..].find("*/") {
                Some(end) => {
                    out.push_str(&rest[..b]);
                    rest = &rest[b + 2 + end + 2..];
                }
                // An unclosed block is not a comment; a later `//` still is.
                None => match line {
                    Some(l) => {
                        out.push_str(&rest[..l]);
                        rest = rest[l..].find('\n').map_or("", |n| &rest[l + n..]);
                    }
                    None => break,
                },
            },
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |n| &rest[l + n..]);
            }
            _ => break,
        }
    }
    out.push_str(rest);
    out
}

/// Resolves comments and `{a|b}` choices in `input`.
pub fn process(input: &str, chooser: &mut dyn Chooser) -> String {
    let chars: Vec<char> = strip_comments(input).chars().collect();
    let mut i = 0;
    let mut out = String::new();
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '\\' => {
                out.push('\\');
                if let Some(&next) = chars.get(i) {
                    out.push(next);
                }
                i += 1;
            }
            '{' => out.push_str(&choice_block(&chars, &mut i, chooser)),
            _ => out.push(c),
        }
    }
    out
}

fn choice_block(chars: &[char], i: &mut usize, chooser: &mut dyn Chooser) -> String {
    let mut options: Vec<String> = Vec::new();
    let mut choice = String::new();
    let mut depth = 0;
    while *i < chars.len() {
        let c = chars[*i];
        *i += 1;
        match c {
            '\\' => {
                choice.push('\\');
                if let Some(&next) = chars.get(*i) {
                    choice.push(next);
                }
                *i += 1;
                continue;
            }
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            '|' if depth == 0 => {
                options.push(std::mem::take(&mut choice));
                continue;
            }
            _ => {}
        }
        choice.push(c);
    }
    options.push(choice);
    let picked = &options[chooser.choose(options.len())];
    process(picked, chooser)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Always(usize);
    impl Chooser for Always {
        fn choose(&mut self, n: usize) -> usize {
            self.0.min(n - 1)
        }
    }

    #[test]
    fn comments_and_choices() {
        let mut first = Always(0);
        assert_eq!(
            process("a {b|c} d // gone\nnext", &mut first),
            "a b d \nnext"
        );
        assert_eq!(process("x /* y */z", &mut first), "x z");
        let mut last = Always(9);
        assert_eq!(process("{a|{b|c}}", &mut last), "c");
        assert_eq!(process(r"\{a\}", &mut last), r"\{a\}");
        assert_eq!(process("see https://x.org", &mut last), "see https:");
    }
}

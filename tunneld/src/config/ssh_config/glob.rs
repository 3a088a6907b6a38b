//! The files an `Include` pattern names, as glob(3) finds them: `*`, `?`
//! and `[…]` within one path component, a leading `.` matched only
//! explicitly, results sorted, nothing when nothing matches.

use std::path::PathBuf;

/// Most directory entries looked at for one pattern.
const MAX_ENTRIES: usize = 100_000;

/// The existing paths matching the absolute `pattern`, sorted; at most
/// `max` of them (more is an error).
pub(super) fn glob(pattern: &str, max: usize) -> Result<Vec<PathBuf>, String> {
    if !pattern.starts_with('/') {
        return Err(format!("{pattern} is not an absolute path"));
    }
    let mut found = vec![PathBuf::from("/")];
    let mut seen = 0usize;
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        if !has_magic(part) {
            let literal = unescape(part);
            for p in &mut found {
                p.push(&literal);
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names = Vec::new();
            for entry in entries.flatten() {
                seen += 1;
                if seen > MAX_ENTRIES {
                    return Err(format!(
                        "more than {MAX_ENTRIES} directory entries to look at"
                    ));
                }
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if component_matches(name, part) {
                    names.push(name.to_string());
                }
            }
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
        if found.len() > max {
            return Err(format!("matches more than {max} paths"));
        }
    }
    let mut found: Vec<PathBuf> = found
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    found.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    Ok(found)
}

fn has_magic(part: &str) -> bool {
    part.contains(['*', '?', '[', '\\'])
}

fn unescape(part: &str) -> String {
    let mut out = String::new();
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One element of a compiled component pattern.
#[derive(Debug)]
enum Tok {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

fn compile(pattern: &str) -> Vec<Tok> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::Any),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                toks.push(Tok::Char(chars[i]));
            }
            '[' => {
                if let Some((tok, end)) = class(&chars, i) {
                    toks.push(tok);
                    i = end;
                } else {
                    toks.push(Tok::Char('['));
                }
            }
            c => toks.push(Tok::Char(c)),
        }
        i += 1;
    }
    toks
}

/// A `[…]` class starting at `start`, and the index of its `]`; `None`
/// when it is not closed (then `[` is literal, as in glob(3)).
fn class(chars: &[char], start: usize) -> Option<(Tok, usize)> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class { negated, ranges }, i));
        }
        first = false;
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|e| *e != ']') {
            let end = *chars.get(i + 2)?;
            ranges.push((c, end));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
}

/// Whether `name` matches the component pattern `pattern`.
fn component_matches(name: &str, pattern: &str) -> bool {
    let toks = compile(pattern);
    let name: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point (the last `*`): linear
    // in practice, never exponential.
    let (mut t, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(Tok::Any) => true,
            Some(Tok::Char(c)) => *c == name[n],
            Some(Tok::Class { negated, ranges }) => {
                ranges.iter().any(|(a, b)| *a <= name[n] && name[n] <= *b) != *negated
            }
            None => false,
        };
        if step {
            t += 1;
            n += 1;
        } else if let Some((st, sn)) = star {
            t = st + 1;
            n = sn + 1;
            star = Some((st, sn + 1));
        } else {
            return false;
        }
    }
    toks[t.min(toks.len())..]
        .iter()
        .all(|t| matches!(t, Tok::Star))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert!(component_matches("a.conf", "*.conf"));
        assert!(!component_matches("a.conf", "*.cfg"));
        assert!(component_matches("a1", "a[0-9]"));
        assert!(!component_matches("ab", "a[!b]"));
        assert!(component_matches("a*", "a\\*"));
        assert!(!component_matches("ab", "a\\*"));
        assert!(component_matches("x[", "x["));
        assert!(!component_matches(
            &"a".repeat(60),
            &format!("{}b", "a*".repeat(30))
        ));
    }

    #[test]
    fn finds_sorted_files_and_skips_dot_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        let pattern = format!("{}/*.conf", dir.path().display());
        let got = glob(&pattern, 10).expect("glob");
        assert_eq!(
            got,
            vec![dir.path().join("a.conf"), dir.path().join("b.conf")]
        );
        assert_eq!(
            glob(&format!("{}/none*", dir.path().display()), 10),
            Ok(vec![])
        );
        assert_eq!(
            glob(&format!("{}/c.txt", dir.path().display()), 10),
            Ok(vec![dir.path().join("c.txt")])
        );
        assert!(glob(&pattern, 1).is_err());
    }
}

//! `~` and `%` expansion of paths, as `ssh` does it once the final host,
//! user and port are known.

use std::{collections::BTreeMap, path::Path};

/// `s` with a leading `~` or `~/` replaced by `home` (the passwd home
/// directory, as `ssh` takes it, not `$HOME`). `~user` is refused: tunneld
/// does not look other users up.
pub(super) fn expand_tilde(s: &str, home: &Path) -> Result<String, String> {
    let Some(rest) = s.strip_prefix('~') else {
        return Ok(s.to_string());
    };
    let (user, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if !user.is_empty() {
        return Err(format!(
            "~{user} names another user's home; write the path out in full"
        ));
    }
    let home = home.to_string_lossy();
    let sep = if home.ends_with('/') { "" } else { "/" };
    Ok(format!("{home}{sep}{path}"))
}

/// The values of `%` tokens, by letter.
pub(super) type Tokens<'a> = [(char, &'a str)];

/// `s` with `%x` replaced by the token `x`'s value and `%%` by `%`, and,
/// when `env` is given, `${NAME}` by that environment variable. Unknown
/// tokens and unset variables are errors, as in `ssh`.
pub(super) fn expand_percent(
    s: &str,
    tokens: &Tokens<'_>,
    env: Option<&BTreeMap<String, String>>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let (Some(env), Some(after)) = (env, rest.strip_prefix("${")) {
            let Some(end) = after.find('}') else {
                return Err(format!("${{ without a closing }} in {s:?}"));
            };
            let name = &after[..end];
            if !valid_env_name(name) {
                return Err(format!(
                    "${{{name}}} is not a valid environment variable name"
                ));
            }
            let Some(value) = env.get(name) else {
                return Err(format!(
                    "environment variable {name} (${{{name}}}) is not set"
                ));
            };
            out.push_str(value);
            rest = &after[end + 1..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(key) = rest.chars().next() else {
            return Err(format!(
                "{s:?} ends with a lone %; write %% for a percent sign"
            ));
        };
        rest = &rest[key.len_utf8()..];
        if key == '%' {
            out.push('%');
        } else if let Some((_, value)) = tokens.iter().find(|(k, _)| *k == key) {
            out.push_str(value);
        } else {
            return Err(format!("unknown token %{key} in {s:?}"));
        }
    }
    Ok(out)
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn tilde() {
        let home = PathBuf::from("/home/u");
        assert_eq!(expand_tilde("~/.ssh/x", &home), Ok("/home/u/.ssh/x".into()));
        assert_eq!(expand_tilde("~", &home), Ok("/home/u/".into()));
        assert_eq!(expand_tilde("/a/~", &home), Ok("/a/~".into()));
        assert_eq!(expand_tilde("~/x", Path::new("/")), Ok("/x".into()));
        assert!(expand_tilde("~other/x", &home).is_err());
    }

    #[test]
    fn percent_and_dollar() {
        let tokens = [('h', "host"), ('p', "22")];
        let env = BTreeMap::from([("V".to_string(), "val".to_string())]);
        assert_eq!(
            expand_percent("/k/%h_%p%%/${V}", &tokens, Some(&env)),
            Ok("/k/host_22%/val".into())
        );
        assert_eq!(expand_percent("${V}", &tokens, None), Ok("${V}".into()));
        assert!(expand_percent("%x", &tokens, None).is_err());
        assert!(expand_percent("a%", &tokens, None).is_err());
        assert!(expand_percent("${W}", &tokens, Some(&env)).is_err());
        assert!(expand_percent("${V", &tokens, Some(&env)).is_err());
        assert_eq!(expand_percent("é%hé", &tokens, None), Ok("éhosté".into()));
    }
}

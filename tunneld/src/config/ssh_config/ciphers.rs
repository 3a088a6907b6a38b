//! The `Ciphers` list as OpenSSH 9.2 assembles it: a plain list replaces
//! the default, `+list` appends to it, `^list` puts names first, `-list`
//! removes names matching patterns; duplicates keep their first place.

use super::matching::pattern_list;

/// OpenSSH 9.2's default client cipher list (`KEX_CLIENT_ENCRYPT`).
pub(super) const DEFAULT_CIPHERS: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";

/// Every cipher OpenSSH 9.2 knows (`ssh -Q cipher`), in its order.
pub(super) const ALL_CIPHERS: &[&str] = &[
    "3des-cbc",
    "aes128-cbc",
    "aes192-cbc",
    "aes256-cbc",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
];

/// The cipher list `spec` (a `Ciphers` value) stands for, comma-joined.
pub(super) fn assemble(spec: &str) -> Result<String, String> {
    let names = |list: &str| -> Result<Vec<String>, String> {
        list.split(',')
            .map(|n| {
                if ALL_CIPHERS.contains(&n) {
                    Ok(n.to_string())
                } else {
                    Err(format!(
                        "bad cipher {n:?} in Ciphers {spec:?} (known: {})",
                        ALL_CIPHERS.join(",")
                    ))
                }
            })
            .collect()
    };
    let default = DEFAULT_CIPHERS.split(',').map(String::from);
    let list: Vec<String> = if let Some(add) = spec.strip_prefix('+') {
        default.chain(names(add)?).collect()
    } else if let Some(first) = spec.strip_prefix('^') {
        names(first)?.into_iter().chain(default).collect()
    } else if let Some(remove) = spec.strip_prefix('-') {
        default
            .filter(|n| !pattern_list(n, remove, false))
            .collect()
    } else {
        names(spec)?
    };
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for name in list {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err(format!("Ciphers {spec:?} leaves no cipher"));
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            assemble("aes256-cbc,aes128-cbc,aes256-cbc"),
            Ok("aes256-cbc,aes128-cbc".into())
        );
        assert_eq!(
            assemble("+aes128-ctr,3des-cbc"),
            Ok(format!("{DEFAULT_CIPHERS},3des-cbc"))
        );
        assert_eq!(
            assemble("^aes256-cbc,aes128-ctr"),
            Ok("aes256-cbc,aes128-ctr,chacha20-poly1305@openssh.com,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com".into())
        );
        assert_eq!(
            assemble("-aes*-ctr,chacha*"),
            Ok("aes128-gcm@openssh.com,aes256-gcm@openssh.com".into())
        );
        assert!(assemble("aes*").is_err());
        assert!(assemble("+bogus").is_err());
        assert!(assemble("-*").is_err());
    }
}

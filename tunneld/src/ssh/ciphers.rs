//! Which ciphers tunneld offers, best first (OpenSSH's `Ciphers`).
//!
//! By default AES-GCM comes first when the CPU has AES instructions: there
//! it moves about twice the bytes per CPU second of chacha20-poly1305,
//! russh's own first choice, which stays first on CPUs without them. Only
//! the cipher list is reordered; russh's key-exchange list, which carries
//! the strict-kex countermeasure to Terrapin, is never touched.

use russh::cipher::{self, Name};

/// The ciphers tunneld may offer: russh's default set (no CBC, no `none`).
const SUPPORTED: &[Name] = &[
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// Whether the CPU has the instructions AES-GCM is fast with.
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The default order for this CPU.
pub fn default_order() -> Vec<Name> {
    if hardware_aes() {
        SUPPORTED.to_vec()
    } else {
        let mut order = SUPPORTED.to_vec();
        order.swap(0, 1); // chacha20-poly1305 first
        order
    }
}

/// Checks a configured list (`aes256-gcm@openssh.com`, …) and returns it in
/// russh's terms; an empty list means the default order.
pub fn parse(names: &[String]) -> Result<Vec<Name>, String> {
    if names.is_empty() {
        return Ok(default_order());
    }
    names
        .iter()
        .map(|n| {
            SUPPORTED
                .iter()
                .find(|s| s.as_ref() == n.trim())
                .copied()
                .ok_or_else(|| {
                    let known: Vec<&str> = SUPPORTED.iter().map(|s| s.as_ref()).collect();
                    format!("unknown cipher {n:?}; tunneld offers {}", known.join(", "))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_order_puts_gcm_first_only_with_hardware_aes() {
        let order = default_order();
        assert_eq!(order.len(), SUPPORTED.len());
        let first = if hardware_aes() {
            cipher::AES_256_GCM
        } else {
            cipher::CHACHA20_POLY1305
        };
        assert_eq!(order[0], first);
    }

    #[test]
    fn configured_lists_are_checked() {
        let chosen = parse(&["chacha20-poly1305@openssh.com".into(), "aes256-ctr".into()]).unwrap();
        assert_eq!(chosen, vec![cipher::CHACHA20_POLY1305, cipher::AES_256_CTR]);
        let e = parse(&["3des-cbc".into()]).unwrap_err();
        assert!(
            e.contains("3des-cbc") && e.contains("aes256-gcm@openssh.com"),
            "{e}"
        );
        assert_eq!(parse(&[]).unwrap(), default_order());
    }
}

//! Random payloads and their digests, to check bytes went through intact.

use rand::Rng;
use sha2::{Digest, Sha256};

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// A random lowercase-hex token, for markers in command lines and bodies.
pub fn random_token() -> String {
    hex(&random_bytes(8))
}

/// SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

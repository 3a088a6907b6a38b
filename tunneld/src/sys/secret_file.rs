//! Files that hold secrets — private keys, API tokens, passphrases — are
//! read only when no one but their owner can read or write them, as OpenSSH
//! demands of private keys ("UNPROTECTED PRIVATE KEY FILE").
//!
//! The mode is checked on the opened file, so the file read is the file
//! checked.

use std::{
    fmt,
    io::{self, Read},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// Why a secret file could not be used.
#[derive(Debug)]
pub enum SecretFileError {
    /// The file does not exist.
    NotFound,
    /// Group or others may read or write it.
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Any other failure to read it.
    Io(io::Error),
}

impl fmt::Display for SecretFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretFileError::NotFound => f.write_str("file not found"),
            SecretFileError::TooOpen { path, mode } => write!(
                f,
                "permissions {mode:04o} are too open: other users may read it; run `chmod 600 {}`",
                path.display()
            ),
            SecretFileError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SecretFileError {}

/// Reads `path` as text if only its owner may access it.
pub fn read_private(path: &Path) -> Result<String, SecretFileError> {
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SecretFileError::NotFound,
        _ => SecretFileError::Io(e),
    })?;
    let mode = file
        .metadata()
        .map_err(SecretFileError::Io)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(SecretFileError::Io)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_only_files_are_read() {
        let dir = std::env::temp_dir().join(format!("tunneld-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();

        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_private(&path).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, SecretFileError::TooOpen { .. }), "{mode:o}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_private(&path).unwrap(), "s3cret\n");
        }
        assert!(matches!(
            read_private(&dir.join("absent")),
            Err(SecretFileError::NotFound)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

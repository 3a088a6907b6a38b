//! Unix-domain socket listeners only their owner can connect to, with
//! OpenSSH's `StreamLocalBindMask 0177` and `StreamLocalBindUnlink yes`
//! semantics: the socket is bound inside a fresh private directory, made
//! 0600, and only then renamed into place, so there is no moment when
//! another user could connect; a stale socket at the path is replaced, a
//! live one (or anything that is not a socket) refused; the file is removed
//! when the listener's [`SocketFile`] is dropped, if it is still ours.

use std::{
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// The socket file of a unix listener, removed on drop if it is still ours.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode, to avoid removing a socket someone else put there.
    id: (u64, u64),
}

impl SocketFile {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a private (0600) unix socket at `path`, non-blocking. A live socket
/// there is refused with `AddrInUse`, anything else but a socket with
/// `AlreadyExists`.
pub fn bind(path: &Path) -> io::Result<(std::os::unix::net::UnixListener, SocketFile)> {
    remove_stale(path)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // A private directory next to the target: bound and restricted there,
    // then renamed into place.
    let private = parent.join(format!(
        ".tunneld-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| {
            with_context(
                e,
                &format!("cannot create a directory in {}", parent.display()),
            )
        })?;
    let staged = private.join("s.sock");
    let bound = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        listener.set_nonblocking(true)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok::<_, io::Error>((listener, (meta.dev(), meta.ino())))
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    let (listener, id) = bound?;
    let file = SocketFile {
        path: path.to_path_buf(),
        id,
    };
    Ok((listener, file))
}

/// Removes a socket left by a process that died; refuses to touch a live
/// socket or anything that is not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; remove it or choose another path",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is serving on this socket",
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

fn with_context(e: io::Error, context: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{context}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_is_private_replaces_stale_refuses_live_and_goes_on_drop() {
        let dir = std::env::temp_dir().join(format!("tunneld-unix-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.sock");

        // A stale socket (nobody listening) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (listener, file) = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(file.path(), path);

        // A live one is not.
        let err = bind(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

        // Nor is a file that is not a socket.
        let plain = dir.join("plain");
        std::fs::write(&plain, b"keep").unwrap();
        assert_eq!(
            bind(&plain).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read(&plain).unwrap(), b"keep");
        std::fs::remove_file(&plain).unwrap();

        // Dropping the file removes the socket; nothing else is left.
        drop(listener);
        drop(file);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

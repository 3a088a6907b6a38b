//! Spill files: where a forwarded connection's bytes wait on disk once its
//! local reader has fallen further behind than its memory buffer
//! (`--max-connection-buffer`) allows, so that a slow reader loses nothing.
//!
//! russh 0.65 re-opens a channel's window as soon as data arrives, so a
//! connection that shares its SSH connection cannot slow its sender down
//! without slowing every other channel (see ARCHITECTURE.md, the byte path).
//! Instead of resetting it, its queue overflows into a file, as nginx's
//! `proxy_temp_file` does for slow clients: memory stays bounded by the
//! buffer, the disk by `--max-connection-spill` per connection and
//! `--max-spill` in all. Only past those is the connection reset.
//!
//! A spill file never has a name: it is opened with `O_TMPFILE` (or created
//! and unlinked at once where the file system lacks it), mode 0600, in a
//! directory tunneld owns, so nothing is left behind even after a SIGKILL.
//! Its bytes are a FIFO: appended at the end, read from the front; the
//! space of what was read is given back as it goes (hole punching) and the
//! whole file is emptied whenever the reader catches up.

use std::{
    fs::File,
    io::{self, IoSlice},
    os::unix::fs::{DirBuilderExt, MetadataExt},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Bytes, BytesMut};

/// Default `--max-connection-spill`: bytes one connection may hold on disk.
pub const DEFAULT_MAX_CONNECTION_SPILL: u64 = 1 << 30;

/// Default `--max-spill`: bytes all spill files together may hold.
pub const DEFAULT_MAX_SPILL: u64 = 8 << 30;

/// Appended bytes are gathered up to this much before one `pwritev`
/// (one write per 32 KiB SSH packet would cost a syscall each).
const WRITE_GATHER: usize = 256 * 1024;

/// Most chunks in one `pwritev`.
const MAX_SLICES: usize = 64;

/// The space of bytes already read is given back once this much has gathered
/// (one `fallocate` per MiB read).
const RECLAIM_STEP: u64 = 1 << 20;

/// Where spill files go and how much they may hold; shared by every
/// connection of the daemon.
#[derive(Debug, Clone)]
pub struct SpillPolicy {
    dir: PathBuf,
    per_connection: u64,
    total: Arc<SpillTotal>,
}

/// Bytes on disk in all spill files, against `--max-spill`.
#[derive(Debug)]
struct SpillTotal {
    used: AtomicU64,
    limit: u64,
}

/// Why a connection's bytes could not be spilled.
#[derive(Debug)]
pub enum SpillError {
    /// Spilling is off (`--max-connection-spill 0`).
    Disabled,
    /// The connection already has `--max-connection-spill` on disk.
    ConnectionLimit,
    /// Every spill file together already holds `--max-spill`.
    TotalLimit,
    /// The file could not be created or written.
    Io(io::Error),
}

impl Default for SpillPolicy {
    /// The default directory and limits.
    fn default() -> Self {
        SpillPolicy::new(
            SpillPolicy::default_dir(),
            DEFAULT_MAX_CONNECTION_SPILL,
            DEFAULT_MAX_SPILL,
        )
    }
}

impl SpillPolicy {
    /// Spill files in `dir`, at most `per_connection` bytes on disk for one
    /// connection (0: never spill) and `total` for all of them.
    pub fn new(dir: PathBuf, per_connection: u64, total: u64) -> Self {
        SpillPolicy {
            dir,
            per_connection,
            total: Arc::new(SpillTotal {
                used: AtomicU64::new(0),
                limit: total,
            }),
        }
    }

    /// The default directory: `tunneld-UID` under `$TMPDIR`, else under
    /// `/var/tmp` (on a disk, where `/tmp` is often memory).
    pub fn default_dir() -> PathBuf {
        let base = std::env::var_os("TMPDIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp"));
        base.join(format!("tunneld-{}", rustix::process::geteuid().as_raw()))
    }

    /// Where spill files go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Most bytes one connection may hold on disk (0: spilling is off).
    pub fn per_connection(&self) -> u64 {
        self.per_connection
    }

    /// Most bytes all spill files together may hold.
    pub fn total(&self) -> u64 {
        self.total.limit
    }

    /// Bytes all spill files hold now.
    pub fn used(&self) -> u64 {
        self.total.used.load(Ordering::Relaxed)
    }

    /// Makes sure spill files can be created: creates the directory (0700)
    /// if it is missing, refuses one owned by another user, and creates
    /// one spill file. Called once at start, so a bad `--spill-dir` is
    /// reported then, not when the first reader lags.
    pub fn prepare(&self) -> Result<(), String> {
        if self.per_connection == 0 {
            return Ok(());
        }
        let dir = &self.dir;
        let fix = "give --spill-dir a directory on a disk that tunneld may write to, \
                   or --max-connection-spill 0 to reset lagging connections instead";
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "cannot create the spill directory {}: {e}; {fix}",
                    dir.display()
                ));
            }
        }
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("spill directory {}: {e}; {fix}", dir.display()))?;
        let me = rustix::process::geteuid().as_raw();
        if !meta.is_dir() {
            return Err(format!(
                "spill directory {} is not a directory; {fix}",
                dir.display()
            ));
        }
        if meta.uid() != me {
            return Err(format!(
                "spill directory {} belongs to uid {}, not to uid {me} that tunneld runs as; {fix}",
                dir.display(),
                meta.uid()
            ));
        }
        create_file(dir)
            .map(drop)
            .map_err(|e| format!("cannot create spill files in {}: {e}; {fix}", dir.display()))
    }

    /// Counts `n` more bytes on disk, unless that goes over `--max-spill`.
    fn reserve(&self, n: u64) -> bool {
        let t = &self.total;
        let before = t.used.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > t.limit {
            t.used.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives `n` bytes back to `--max-spill`.
    fn release(&self, n: u64) {
        if n > 0 {
            self.total.used.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// A file with no name, readable only by tunneld's user.
fn create_file(dir: &Path) -> io::Result<File> {
    // O_TMPFILE with mode 0600 where the file system has it, else a random
    // name created with O_EXCL, 0600, and unlinked at once.
    tempfile::tempfile_in(dir)
}

/// What the reader gets next from a [`SpillFile`].
pub enum Next {
    /// Bytes that never reached the disk (the reader caught up with them).
    Ready(Bytes),
    /// Read `len` bytes at `offset` of `file`, then call
    /// [`SpillFile::consumed`].
    Read {
        /// The spill file.
        file: Arc<File>,
        /// Where the bytes are.
        offset: u64,
        /// How many to read.
        len: usize,
    },
    /// Nothing is waiting: the file is empty again.
    Empty,
}

/// One connection's spill file: a FIFO of bytes, created on first use.
///
/// Offsets: `[reclaimed, read)` was read and its space is still held,
/// `[read, written)` is in the file, `[written, appended)` is gathered in
/// memory (at most [`WRITE_GATHER`]) for the next write.
pub struct SpillFile {
    policy: SpillPolicy,
    file: Option<Arc<File>>,
    reclaimed: u64,
    read: u64,
    written: u64,
    appended: u64,
    gathered: Vec<Bytes>,
    /// Whether the file system gives back the space of a range
    /// (`FALLOC_FL_PUNCH_HOLE`); if not, space comes back only when the
    /// reader catches up and the file is emptied.
    can_punch: bool,
}

impl SpillFile {
    /// An empty spill, creating nothing yet.
    pub fn new(policy: SpillPolicy) -> Self {
        SpillFile {
            policy,
            file: None,
            reclaimed: 0,
            read: 0,
            written: 0,
            appended: 0,
            gathered: Vec::new(),
            can_punch: true,
        }
    }

    /// Bytes appended and not yet read.
    #[cfg(test)]
    pub fn unread(&self) -> u64 {
        self.appended - self.read
    }

    /// Appends `data` after everything appended before, or says why not
    /// (a limit reached: nothing was appended; a write that failed: the
    /// spill is broken and the connection must end).
    pub fn append(&mut self, data: Bytes) -> Result<(), SpillError> {
        let n = data.len() as u64;
        if self.policy.per_connection == 0 {
            return Err(SpillError::Disabled);
        }
        // Disk held: everything appended whose space is not given back yet.
        if self.appended - self.reclaimed + n > self.policy.per_connection {
            return Err(SpillError::ConnectionLimit);
        }
        if !self.policy.reserve(n) {
            return Err(SpillError::TotalLimit);
        }
        if self.file.is_none() {
            match create_file(&self.policy.dir) {
                Ok(f) => self.file = Some(Arc::new(f)),
                Err(e) => {
                    self.policy.release(n);
                    return Err(SpillError::Io(e));
                }
            }
        }
        self.appended += n;
        self.gathered.push(data);
        if self.appended - self.written >= WRITE_GATHER as u64 {
            self.write_gathered().map_err(SpillError::Io)?;
        }
        Ok(())
    }

    /// Writes what is gathered to the file. Synchronous: a write into the
    /// page cache, as nginx writes its temp files (see ARCHITECTURE.md).
    fn write_gathered(&mut self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut next = 0;
        while next < self.gathered.len() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let pending = &self.gathered[next..];
            let k = pending.len().min(MAX_SLICES);
            for (slot, chunk) in slices.iter_mut().zip(&pending[..k]) {
                *slot = IoSlice::new(chunk);
            }
            let mut n = rustix::io::pwritev(&**file, &slices[..k], self.written)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.written += n as u64;
            while n > 0 {
                let chunk = &mut self.gathered[next];
                if n >= chunk.len() {
                    n -= chunk.len();
                    next += 1;
                } else {
                    bytes::Buf::advance(chunk, n);
                    n = 0;
                }
            }
        }
        self.gathered.clear();
        Ok(())
    }

    /// The next bytes for the reader, at most `max`: straight from memory
    /// if they were never written, else where to read them in the file.
    /// [`Next::Empty`] once everything appended was read; the file is then
    /// emptied and its space given back.
    pub fn next(&mut self, max: usize) -> Next {
        if self.read == self.appended {
            self.empty_file();
            return Next::Empty;
        }
        if self.read < self.written {
            let len = (self.written - self.read).min(max as u64) as usize;
            return match &self.file {
                Some(file) => Next::Read {
                    file: file.clone(),
                    offset: self.read,
                    len,
                },
                None => Next::Empty, // unreachable: written > 0 means a file
            };
        }
        // The reader caught up with bytes still gathered in memory: hand
        // them over without writing them (their range stays a hole).
        let mut out = BytesMut::new();
        let mut taken = 0;
        let mut chunks = std::mem::take(&mut self.gathered).into_iter();
        for chunk in chunks.by_ref() {
            if taken > 0 && taken + chunk.len() > max {
                self.gathered.push(chunk);
                break;
            }
            taken += chunk.len();
            out.extend_from_slice(&chunk);
        }
        self.gathered.extend(chunks);
        self.written += taken as u64;
        self.consumed(taken);
        Next::Ready(out.freeze())
    }

    /// Marks `len` more bytes as read, after a [`Next::Read`]; gives the
    /// space of what was read back every [`RECLAIM_STEP`].
    pub fn consumed(&mut self, len: usize) {
        self.read += len as u64;
        if self.read - self.reclaimed >= RECLAIM_STEP {
            self.punch();
        }
    }

    /// Gives back the space of `[reclaimed, read)`.
    fn punch(&mut self) {
        let (Some(file), true) = (&self.file, self.can_punch) else {
            return;
        };
        use rustix::fs::FallocateFlags;
        let len = self.read - self.reclaimed;
        match rustix::fs::fallocate(
            &**file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            self.reclaimed,
            len,
        ) {
            Ok(()) => {
                self.policy.release(len);
                self.reclaimed = self.read;
            }
            Err(e) => {
                tracing::debug!(
                    "the spill directory's file system cannot punch holes ({e}); \
                     spilled space comes back when the reader catches up"
                );
                self.can_punch = false;
            }
        }
    }

    /// Empties the file once everything in it was read, and gives its space
    /// back.
    fn empty_file(&mut self) {
        if self.appended == 0 {
            return;
        }
        if let Some(Err(e)) = self.file.as_ref().map(|f| f.set_len(0)) {
            // Keep the offsets growing instead; the space is given back
            // when the file is dropped.
            tracing::debug!("emptying a spill file failed: {e}");
            return;
        }
        self.policy.release(self.appended - self.reclaimed);
        (self.reclaimed, self.read, self.written, self.appended) = (0, 0, 0, 0);
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        self.policy.release(self.appended - self.reclaimed);
    }
}

/// Reads `len` bytes at `offset` of `file`, off the async threads: the
/// pages may have gone to disk.
pub async fn read_at(file: Arc<File>, offset: u64, len: usize) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dir: &Path, per_connection: u64, total: u64) -> SpillPolicy {
        SpillPolicy::new(dir.to_path_buf(), per_connection, total)
    }

    async fn drain(spill: &mut SpillFile) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match spill.next(100_000) {
                Next::Ready(b) => out.extend_from_slice(&b),
                Next::Read { file, offset, len } => {
                    out.extend_from_slice(&read_at(file, offset, len).await.unwrap());
                    spill.consumed(len);
                }
                Next::Empty => return out,
            }
        }
    }

    #[tokio::test]
    async fn bytes_come_back_in_order_from_disk_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path(), 64 << 20, 64 << 20);
        let mut spill = SpillFile::new(p.clone());
        let mut sent = Vec::new();
        for i in 0..300u32 {
            let chunk: Vec<u8> = (0..(1000 + i * 37)).map(|j| (i * 7 + j) as u8).collect();
            sent.extend_from_slice(&chunk);
            spill.append(Bytes::from(chunk)).unwrap();
        }
        assert_eq!(spill.unread(), sent.len() as u64);
        assert_eq!(drain(&mut spill).await, sent);
        assert_eq!(spill.unread(), 0);
        assert_eq!(p.used(), 0, "an emptied file gives its space back");
        // Used again after emptying.
        spill.append(Bytes::from_static(b"again")).unwrap();
        assert_eq!(drain(&mut spill).await, b"again");
        drop(spill);
        assert_eq!(p.used(), 0);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no name left"
        );
    }

    #[tokio::test]
    async fn limits_per_connection_and_in_all() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path(), 1000, 1500);
        let mut a = SpillFile::new(p.clone());
        let mut b = SpillFile::new(p.clone());
        a.append(Bytes::from(vec![1; 900])).unwrap();
        assert!(matches!(
            a.append(Bytes::from(vec![1; 101])),
            Err(SpillError::ConnectionLimit)
        ));
        b.append(Bytes::from(vec![2; 600])).unwrap();
        assert!(matches!(
            b.append(Bytes::from(vec![2; 1])),
            Err(SpillError::TotalLimit)
        ));
        assert_eq!(p.used(), 1500);
        drop(a);
        assert_eq!(p.used(), 600);
        b.append(Bytes::from(vec![2; 400])).unwrap();
        drop(b);
        assert_eq!(p.used(), 0);
        let off = policy(dir.path(), 0, 1500);
        assert!(matches!(
            SpillFile::new(off).append(Bytes::from_static(b"x")),
            Err(SpillError::Disabled)
        ));
    }

    #[tokio::test]
    async fn space_of_what_was_read_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(dir.path(), 8 << 20, 8 << 20);
        let mut spill = SpillFile::new(p.clone());
        // A reader that keeps up just behind the writer: the file is never
        // empty, yet what was read stops counting against the limit.
        for _ in 0..64 {
            spill.append(Bytes::from(vec![7; 1 << 20])).unwrap();
            match spill.next(1 << 20) {
                Next::Read { file, offset, len } => {
                    read_at(file, offset, len).await.unwrap();
                    spill.consumed(len);
                }
                Next::Ready(b) => assert_eq!(b.len(), 1 << 20),
                Next::Empty => panic!("bytes were appended"),
            }
            spill.append(Bytes::from(vec![7; 1000])).unwrap();
        }
        assert!(spill.unread() <= 64 * 1000);
        assert!(p.used() < 2 << 20, "held {} bytes", p.used());
    }

    #[test]
    fn prepare_creates_a_private_dir_and_refuses_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        policy(&spill_dir, 1, 1).prepare().unwrap();
        let mode = std::fs::metadata(&spill_dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = policy(&file, 1, 1).prepare().unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        assert!(err.contains("--spill-dir"), "{err}");
        // Spilling off: nothing is checked.
        policy(&file, 0, 1).prepare().unwrap();
    }
}

//! A pseudo-terminal a test runs a program under, as a user's terminal
//! would: the program's stdin, stdout and stderr are the pty, which is also
//! its controlling terminal with the program in the foreground, so it sees
//! `isatty`, a window size, and `SIGWINCH` on [`Pty::resize`].
//!
//! The test plays the user at the other end: [`Pty::write`] types,
//! [`Pty::wait_for`] waits for something to appear on the screen, and
//! [`Pty::stty_g`] reads the terminal's modes, to check a program put back
//! what it changed.
//!
//! The calls block (a reader thread feeds them); from async tests use a
//! `multi_thread` runtime, as the e2e tests do, so fixtures on the runtime
//! keep running meanwhile.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Mode, OFlags};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

use crate::procs;

/// The `TERM` a program gets unless its command sets one.
pub const DEFAULT_TERM: &str = "xterm";

/// How much of the end of the screen an error message shows.
const ERROR_TAIL: usize = 2000;

/// How long the reader thread waits for output before checking whether the
/// [`Pty`] was dropped: the most a drop waits for the thread.
const READ_POLL: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 50_000_000,
};

/// How often [`PtyChild::wait`] checks whether the program has exited.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// A pseudo-terminal: the master end (the test's side) and the slave (the
/// program's). Dropping it stops the reader thread; programs spawned on it
/// live on in their [`PtyChild`].
pub struct Pty {
    master: Arc<File>,
    /// Held open for the pty's whole life, not only while a program runs:
    /// once no slave descriptor is open the master reads `EIO`, which would
    /// stop the reader thread after the first program exits (and could lose
    /// that program's last output). Also the `stty -g` stdin.
    slave: OwnedFd,
    path: PathBuf,
    screen: Arc<Screen>,
    reader: Option<JoinHandle<()>>,
}

/// Everything the program wrote, shared between the reader thread and the
/// test (and [`PtyChild`], for its error messages).
struct Screen {
    /// A std `Mutex` with a `Condvar`: the reader thread appends and
    /// notifies, [`Pty::wait_for`] sleeps on it until its needle shows up.
    state: Mutex<ScreenState>,
    changed: Condvar,
    /// Set when the [`Pty`] is dropped; the reader thread then ends.
    stop: AtomicBool,
}

struct ScreenState {
    bytes: Vec<u8>,
    /// Where the next [`Pty::wait_for`] starts looking: just past the last
    /// match.
    searched_to: usize,
    /// Why the reader thread stopped reading, if it did.
    ended: Option<String>,
}

impl Screen {
    fn lock(&self) -> MutexGuard<'_, ScreenState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last [`ERROR_TAIL`] bytes, printable, for error messages.
    fn tail(&self) -> String {
        let state = self.lock();
        let start = state.bytes.len().saturating_sub(ERROR_TAIL);
        let text = String::from_utf8_lossy(&state.bytes[start..]);
        format!("{:?}", text.as_ref())
    }

    fn end(&self, why: String) {
        self.lock().ended = Some(why);
        self.changed.notify_all();
    }
}

impl Pty {
    /// A new pty of `columns` x `rows`, in the kernel's default (cooked,
    /// echoing) modes.
    pub fn open(columns: u16, rows: u16) -> Result<Pty> {
        // NOCTTY: neither end may become the test process's own terminal.
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .context("opening /dev/ptmx")?;
        grantpt(&master).context("grantpt")?;
        unlockpt(&master).context("unlockpt")?;
        let name = ptsname(&master, Vec::new()).context("ptsname")?;
        let path = PathBuf::from(OsStr::from_bytes(name.as_bytes()));
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {}", path.display()))?;
        tcsetwinsize(&master, winsize(columns, rows)).context("setting the pty's size")?;

        let master = Arc::new(File::from(master));
        let screen = Arc::new(Screen {
            state: Mutex::new(ScreenState {
                bytes: Vec::new(),
                searched_to: 0,
                ended: None,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let reader = std::thread::Builder::new()
            .name(format!("pty reader {}", path.display()))
            .spawn({
                let master = master.clone();
                let screen = screen.clone();
                move || read_screen(&master, &screen)
            })
            .context("starting the pty reader thread")?;
        Ok(Pty {
            master,
            slave,
            path,
            screen,
            reader: Some(reader),
        })
    }

    /// The slave's path, `/dev/pts/N`: what `tty` prints in the program.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts `command` on the pty, as a shell would start a job in a
    /// terminal: stdin, stdout and stderr are the pty, it leads a new
    /// session whose controlling terminal is the pty, and its process group
    /// is the terminal's foreground group. `TERM` is [`DEFAULT_TERM`] unless
    /// the command sets or removes it.
    ///
    /// Only the program, arguments, environment changes and working
    /// directory of `command` are used (not its stdio, nor `env_clear`):
    /// it runs under util-linux `setsid --ctty`, which makes the pty the
    /// controlling terminal without `unsafe` `pre_exec` code here.
    pub fn spawn(&self, command: &Command) -> Result<PtyChild> {
        let mut setsid = Command::new("setsid");
        // `--ctty` is TIOCSCTTY on stdin after setsid(2). A child of this
        // process is never a process-group leader, so setsid does not fork:
        // the program keeps its pid, which leads the session and the
        // terminal's foreground group (checked by the tests below).
        setsid
            .arg("--ctty")
            .arg("--")
            .arg(command.get_program())
            .args(command.get_args());
        if !command.get_envs().any(|(key, _)| key == "TERM") {
            setsid.env("TERM", DEFAULT_TERM);
        }
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => setsid.env(key, value),
                None => setsid.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            setsid.current_dir(dir);
        }
        let stdio = || -> Result<Stdio> { Ok(Stdio::from(self.slave.try_clone()?)) };
        setsid.stdin(stdio()?).stdout(stdio()?).stderr(stdio()?);
        let shown = format!(
            "{} {}",
            command.get_program().to_string_lossy(),
            command
                .get_args()
                .map(OsStr::to_string_lossy)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let child = setsid
            .spawn()
            .with_context(|| format!("starting `setsid --ctty {shown}`"))?;
        Ok(PtyChild {
            child,
            shown,
            screen: self.screen.clone(),
            status: None,
        })
    }

    /// Types `bytes` at the terminal.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        (&*self.master)
            .write_all(bytes)
            .with_context(|| format!("writing to {}", self.path.display()))
    }

    /// Waits until `needle` appears in the output after the previous match
    /// (so waiting for the same prompt twice waits for two prompts). The
    /// error shows the end of what was read.
    pub fn wait_for(&self, needle: &[u8], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut state = self.screen.lock();
        loop {
            let from = state.searched_to;
            if let Some(at) = find(&state.bytes[from..], needle) {
                state.searched_to = from + at + needle.len();
                return Ok(());
            }
            let waited = match (
                &state.ended,
                deadline.checked_duration_since(Instant::now()),
            ) {
                (Some(why), _) => format!("the terminal stopped ({why})"),
                (None, Some(left)) if !left.is_zero() => {
                    state = self
                        .screen
                        .changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    continue;
                }
                (None, _) => format!("timed out after {timeout:?}"),
            };
            drop(state);
            bail!(
                "{waited} waiting for {:?} on {}; the screen ends with {}",
                String::from_utf8_lossy(needle),
                self.path.display(),
                self.screen.tail()
            );
        }
    }

    /// Everything the terminal showed so far.
    pub fn output(&self) -> Vec<u8> {
        self.screen.lock().bytes.clone()
    }

    /// Changes the window size, as a user resizing the window: the kernel
    /// sends `SIGWINCH` to the terminal's foreground process group.
    pub fn resize(&self, columns: u16, rows: u16) -> Result<()> {
        tcsetwinsize(&*self.master, winsize(columns, rows))
            .with_context(|| format!("resizing {}", self.path.display()))
    }

    /// The terminal's current modes as `stty -g` prints them: compare the
    /// value before and after a program to check it restored the modes.
    pub fn stty_g(&self) -> Result<String> {
        let out = Command::new("stty")
            .arg("-g")
            .stdin(Stdio::from(self.slave.try_clone()?))
            .stderr(Stdio::piped())
            .output()
            .context("running stty -g")?;
        ensure!(
            out.status.success(),
            "stty -g on {} failed ({}): {}",
            self.path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.screen.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl std::fmt::Debug for Pty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pty").field("path", &self.path).finish()
    }
}

fn winsize(columns: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The reader thread: appends what the master reads to the screen until the
/// [`Pty`] is dropped. It polls with a timeout rather than blocking in
/// `read`, since the slave held open by the `Pty` means no end-of-file ever
/// comes to wake it.
fn read_screen(master: &File, screen: &Screen) {
    let mut buf = [0u8; 4096];
    while !screen.stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(master, PollFlags::IN)];
        match poll(&mut fds, Some(&READ_POLL)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return screen.end(format!("poll: {e}")),
        }
        match (&*master).read(&mut buf) {
            Ok(0) => return screen.end("end of file".into()),
            Ok(n) => {
                screen.lock().bytes.extend_from_slice(&buf[..n]);
                screen.changed.notify_all();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: no slave is open any more.
            Err(e) => return screen.end(format!("read: {e}")),
        }
    }
}

/// A program running on a [`Pty`]. Dropping it kills the program and
/// everything in its session that is still running, and reaps it.
pub struct PtyChild {
    child: Child,
    shown: String,
    screen: Arc<Screen>,
    status: Option<ExitStatus>,
}

impl PtyChild {
    /// The program's pid, which is also its process group and session id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the program to exit and returns how it did; kills it (and
    /// fails) if it is still running after `timeout`. Once it has exited,
    /// anything it left running in its process group is killed.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill()?;
                bail!(
                    "`{}` still running after {timeout:?}, killed; the screen ends with {}",
                    self.shown,
                    self.screen.tail()
                );
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// Kills the program and the rest of its session (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        let pid = self.child.id();
        procs::kill_descendants(pid);
        self.sweep_group();
        // The program itself, should it not have reached setsid(2) yet.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .with_context(|| format!("reaping `{}`", self.shown))?;
        self.status = Some(status);
        Ok(())
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        // Peek without reaping: while the exited program is a zombie its pid
        // cannot be reused, so its group can be swept without hitting
        // another process's.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        if matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive)) {
            return Ok(None);
        }
        self.sweep_group();
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("waiting for `{}`", self.shown))?;
        self.status = status;
        Ok(status)
    }

    /// SIGKILL to the program's process group (its pid: it leads it), for
    /// what it started and left behind. Call only before reaping it.
    fn sweep_group(&self) {
        // No such group (already empty) is what we want anyway.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

impl std::fmt::Debug for PtyChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtyChild")
            .field("pid", &self.child.id())
            .field("command", &self.shown)
            .field("status", &self.status)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    fn run(pty: &Pty, command: &Command) -> ExitStatus {
        pty.spawn(command)
            .unwrap()
            .wait(TIMEOUT)
            .expect("program exits")
    }

    #[test]
    fn stdio_is_the_pty() {
        let pty = Pty::open(80, 24).unwrap();
        assert!(run(&pty, &Command::new("tty")).success());
        let screen = String::from_utf8_lossy(&pty.output()).into_owned();
        assert!(screen.contains("/dev/pts/"), "{screen:?}");
        assert!(
            screen.contains(&*pty.path().to_string_lossy()),
            "{screen:?}"
        );
        // stdout and stderr too, and TERM is set.
        let status = run(
            &pty,
            &sh("test -t 0 && test -t 1 && test -t 2 && echo \"term=$TERM\""),
        );
        assert!(status.success());
        pty.wait_for(b"term=xterm", TIMEOUT).unwrap();
    }

    #[test]
    fn term_can_be_set() {
        let pty = Pty::open(80, 24).unwrap();
        let mut cmd = sh("echo \"term=$TERM.\"");
        cmd.env("TERM", "vt100");
        run(&pty, &cmd);
        pty.wait_for(b"term=vt100.", TIMEOUT).unwrap();
        let mut cmd = sh("echo \"term=${TERM-unset}.\"");
        cmd.env_remove("TERM");
        run(&pty, &cmd);
        pty.wait_for(b"term=unset.", TIMEOUT).unwrap();
    }

    #[test]
    fn the_size_is_set() {
        let pty = Pty::open(100, 37).unwrap();
        run(&pty, &sh("stty size"));
        pty.wait_for(b"37 100", TIMEOUT).unwrap();
    }

    #[test]
    fn the_program_leads_the_foreground_group() {
        let pty = Pty::open(80, 24).unwrap();
        // `read` holds it on the terminal until the test types a line.
        let mut child = pty
            .spawn(&sh("echo \"pid=$$.\"; read line; exit 3"))
            .unwrap();
        pty.wait_for(format!("pid={}.", child.id()).as_bytes(), TIMEOUT)
            .expect("setsid must exec the program, not fork it");
        let foreground = rustix::termios::tcgetpgrp(&*pty.master).unwrap();
        assert_eq!(foreground.as_raw_nonzero().get() as u32, child.id());
        pty.write(b"done\n").unwrap();
        assert_eq!(child.wait(TIMEOUT).unwrap().code(), Some(3));
    }

    #[test]
    fn resize_delivers_sigwinch() {
        let pty = Pty::open(80, 24).unwrap();
        let mut child = pty
            .spawn(&sh(
                "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.1; done",
            ))
            .unwrap();
        pty.wait_for(b"ready", TIMEOUT).unwrap();
        pty.resize(120, 40).unwrap();
        pty.wait_for(b"40 120", TIMEOUT).unwrap();
        assert!(child.wait(TIMEOUT).unwrap().success());
    }

    #[test]
    fn stty_g_sees_modes_left_behind() {
        let pty = Pty::open(80, 24).unwrap();
        let cooked = pty.stty_g().unwrap();
        assert!(!cooked.is_empty());

        // A program that puts the modes back leaves no trace...
        run(
            &pty,
            &sh("saved=$(stty -g); stty raw -echo; stty \"$saved\""),
        );
        assert_eq!(pty.stty_g().unwrap(), cooked);
        // ...one that does not is caught: the check can fail.
        run(&pty, &sh("stty raw; exit 0"));
        assert_ne!(pty.stty_g().unwrap(), cooked);
    }

    #[test]
    fn a_hung_program_is_killed_with_its_session() {
        let pty = Pty::open(80, 24).unwrap();
        let mut child = pty.spawn(&sh("sleep 30 & echo \"bg=$!.\"; wait")).unwrap();
        pty.wait_for(b"bg=", TIMEOUT).unwrap();
        pty.wait_for(b".", TIMEOUT).unwrap();
        let screen = String::from_utf8_lossy(&pty.output()).into_owned();
        let background: u32 = screen
            .split("bg=")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {screen:?}"));

        let err = child.wait(Duration::from_millis(300)).unwrap_err();
        assert!(format!("{err:#}").contains("still running"), "{err:#}");
        // The background sleep went with it (it may linger a moment as a
        // zombie until init reaps it, but no longer runs).
        let alive = || {
            std::fs::read_to_string(format!("/proc/{background}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        let deadline = Instant::now() + TIMEOUT;
        while alive() && Instant::now() < deadline {
            std::thread::sleep(EXIT_POLL);
        }
        assert!(!alive(), "background pid {background} survived");
    }

    #[test]
    fn wait_for_fails_with_the_screen() {
        let pty = Pty::open(80, 24).unwrap();
        run(&pty, &sh("echo hello"));
        pty.wait_for(b"hello", TIMEOUT).unwrap();
        // Past the match now: a second "hello" never comes.
        let err = pty
            .wait_for(b"hello", Duration::from_millis(200))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("timed out") && msg.contains("hello\\r\\n"),
            "{msg}"
        );
    }
}

//! The local terminal, for commands that give the remote side a
//! pseudo-terminal (`exec -t`, `ssh`): whether to ask for one at all
//! ([`want_tty`], OpenSSH's rule), what to tell the remote about it
//! ([`term_name`], [`size`]), raw mode while the remote owns the screen
//! ([`RawMode`]), and window-size changes to pass on ([`resizes`]).
//!
//! Knows nothing of gRPC or tunneld: sizes are plain numbers, and the caller
//! decides what to send.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::termios::{
    InputModes, LocalModes, OptionalActions, OutputModes, SpecialCodeIndex, Termios, isatty,
    tcgetattr, tcgetwinsize, tcsetattr,
};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Longest `$TERM` passed on; longer values are sent as `dumb`.
const MAX_TERM_LEN: usize = 64;

/// The `$TERM` sent when the local one is unset or unusable.
const DUMB_TERM: &str = "dumb";

/// What OpenSSH prints when `-t` asks for a terminal that stdin cannot back.
pub const NO_TTY_WARNING: &str =
    "Pseudo-terminal will not be allocated because stdin is not a terminal.";

/// A terminal's window size, as `TIOCGWINSZ` reports it and as an SSH
/// `pty-req` or `window-change` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Width in characters.
    pub columns: u32,
    /// Height in lines.
    pub rows: u32,
    /// Width in pixels; 0 when the terminal does not say.
    pub width_pixels: u32,
    /// Height in pixels; 0 when the terminal does not say.
    pub height_pixels: u32,
}

/// The window size of the terminal on `fd`; `None` if `fd` is not a
/// terminal, or if the terminal reports no columns or no rows (a pty nobody
/// has sized yet reports 0x0).
pub fn size(fd: impl AsFd) -> Option<TerminalSize> {
    let ws = tcgetwinsize(fd).ok()?;
    if ws.ws_col == 0 || ws.ws_row == 0 {
        return None;
    }
    Some(TerminalSize {
        columns: ws.ws_col.into(),
        rows: ws.ws_row.into(),
        width_pixels: ws.ws_xpixel.into(),
        height_pixels: ws.ws_ypixel.into(),
    })
}

/// The size of the user's terminal: stdin's if stdin is a terminal, else
/// stdout's (as `ssh` reads it from stdin).
pub fn current_size() -> Option<TerminalSize> {
    let stdin = io::stdin();
    if isatty(&stdin) {
        size(stdin)
    } else {
        size(io::stdout())
    }
}

/// The terminal type to ask the remote for: `$TERM`, or `dumb` when it is
/// unset, empty, longer than 64 bytes or holds anything but
/// `[A-Za-z0-9._+-]` (the remote looks it up in terminfo; nothing else
/// belongs there).
pub fn term_name() -> String {
    sanitize_term(std::env::var_os("TERM").as_deref())
}

fn sanitize_term(term: Option<&OsStr>) -> String {
    let usable = |t: &str| {
        !t.is_empty()
            && t.len() <= MAX_TERM_LEN
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
    };
    match term.and_then(OsStr::to_str) {
        Some(t) if usable(t) => t.to_owned(),
        _ => DUMB_TERM.to_owned(),
    }
}

/// What the command line asked for, as OpenSSH's `RequestTTY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyRequest {
    /// Neither `-t` nor `-T`: a terminal for an interactive login only.
    Auto,
    /// `-t` given this many times: once asks for a terminal if stdin is one,
    /// twice or more forces one. `Force(0)` is [`TtyRequest::Auto`].
    Force(u8),
    /// `-T`: never.
    Never,
}

/// Whether to request a pseudo-terminal, and the warning to print (to
/// stderr, before anything else) if one was asked for but will not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Request a pseudo-terminal.
    pub tty: bool,
    /// [`NO_TTY_WARNING`] when a terminal was wanted but stdin is not one.
    pub warning: Option<&'static str>,
}

/// OpenSSH's rule (`ssh.c`, `main`): a terminal is wanted with `-t`, or with
/// no remote command unless `-T`; then it is dropped, with
/// [`NO_TTY_WARNING`], when stdin is not a terminal, unless forced (`-tt`).
/// As in ssh, `echo ls | tunnelctl ssh HOST` (no command, stdin a pipe)
/// prints the warning too.
pub fn want_tty(request: TtyRequest, has_command: bool, stdin_is_tty: bool) -> Decision {
    let (wanted, forced) = match request {
        TtyRequest::Never => (false, false),
        TtyRequest::Auto | TtyRequest::Force(0) => (!has_command, false),
        TtyRequest::Force(1) => (true, false),
        TtyRequest::Force(_) => (true, true),
    };
    if wanted && !forced && !stdin_is_tty {
        return Decision {
            tty: false,
            warning: Some(NO_TTY_WARNING),
        };
    }
    Decision {
        tty: wanted,
        warning: None,
    }
}

/// The terminal modes a [`RawMode`] replaced, and where to put them back.
struct Saved {
    /// A duplicate of the terminal's descriptor, so restoring works whatever
    /// became of the one `enable` was given.
    fd: OwnedFd,
    termios: Termios,
    /// Set by the first restore: the guard, [`RawMode::restore`] and
    /// [`restore_saved`] may all run, and only the first writes.
    restored: AtomicBool,
}

impl Saved {
    fn restore(&self) {
        if self.restored.swap(true, Ordering::SeqCst) {
            return;
        }
        // TCSADRAIN as ssh's leave_raw_mode: output already written is shown
        // in raw mode's layout before the modes change. A signal during the
        // drain interrupts it; try again rather than leave the terminal raw.
        for _ in 0..3 {
            match tcsetattr(&self.fd, OptionalActions::Drain, &self.termios) {
                Err(rustix::io::Errno::INTR) => continue,
                _ => return,
            }
        }
    }
}

/// The terminal modes of the [`RawMode`] enabled last, for
/// [`restore_saved`]. A std `Mutex`: held only to swap an `Arc`, never
/// across an `.await`.
static SAVED: Mutex<Option<Arc<Saved>>> = Mutex::new(None);

/// Raw mode on a terminal while the guard lives: bytes pass through
/// unchanged (no echo, no line editing, no `^C` turned into a signal, no
/// `\n` turned into `\r\n`), for the remote pty to interpret. The saved
/// modes come back when the guard is dropped, on [`RawMode::restore`], or
/// on [`restore_saved`].
pub struct RawMode {
    saved: Arc<Saved>,
}

impl RawMode {
    /// Saves the modes of the terminal on `fd` (stdin, for the CLI) and
    /// switches it to raw mode as OpenSSH's `enter_raw_mode` does. Fails
    /// with `ENOTTY` if `fd` is not a terminal.
    pub fn enable(fd: impl AsFd) -> io::Result<RawMode> {
        let fd = fd.as_fd().try_clone_to_owned()?;
        let termios = tcgetattr(&fd)?;
        tcsetattr(&fd, OptionalActions::Drain, &raw_modes(&termios))?;
        let saved = Arc::new(Saved {
            fd,
            termios,
            restored: false.into(),
        });
        *SAVED.lock().unwrap_or_else(PoisonError::into_inner) = Some(saved.clone());
        Ok(RawMode { saved })
    }

    /// Puts the saved modes back now, e.g. before `std::process::exit`
    /// (which runs no destructors). Only the first call (of this, the drop
    /// and [`restore_saved`]) changes the terminal; errors are ignored, as
    /// there is nothing better to do with a terminal that will not listen.
    pub fn restore(&self) {
        self.saved.restore();
        let mut global = SAVED.lock().unwrap_or_else(PoisonError::into_inner);
        if global.as_ref().is_some_and(|g| Arc::ptr_eq(g, &self.saved)) {
            *global = None;
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

impl std::fmt::Debug for RawMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMode").finish_non_exhaustive()
    }
}

/// Restores the modes saved by the live [`RawMode`], if any, without the
/// guard: for code that must leave the process from elsewhere (a signal
/// handler task about to `exit`). Idempotent, as [`RawMode::restore`].
pub fn restore_saved() {
    let saved = SAVED.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(saved) = saved {
        saved.restore();
    }
}

/// `termios` in OpenSSH's raw mode (`sshtty.c`, `enter_raw_mode`). Unlike
/// `cfmakeraw` it leaves the character size, parity and break handling
/// alone, as ssh does.
fn raw_modes(termios: &Termios) -> Termios {
    let mut raw = termios.clone();
    raw.input_modes |= InputModes::IGNPAR;
    raw.input_modes -= InputModes::ISTRIP
        | InputModes::INLCR
        | InputModes::IGNCR
        | InputModes::ICRNL
        | InputModes::IXON
        | InputModes::IXANY
        | InputModes::IXOFF
        | InputModes::IUCLC;
    raw.local_modes -= LocalModes::ISIG
        | LocalModes::ICANON
        | LocalModes::ECHO
        | LocalModes::ECHOE
        | LocalModes::ECHOK
        | LocalModes::ECHONL
        | LocalModes::IEXTEN;
    raw.output_modes -= OutputModes::OPOST;
    raw.special_codes[SpecialCodeIndex::VMIN] = 1;
    raw.special_codes[SpecialCodeIndex::VTIME] = 0;
    raw
}

/// Window-size changes of the user's terminal (`SIGWINCH`), each read as a
/// new [`TerminalSize`]; from [`resizes`].
#[derive(Debug)]
pub struct Resizes {
    signal: Signal,
    tty: OwnedFd,
    last: Option<TerminalSize>,
}

/// Starts listening for `SIGWINCH` and reading the size of stdin's terminal,
/// or stdout's if stdin is not one. Must be called within a tokio runtime.
pub fn resizes() -> io::Result<Resizes> {
    let stdin = io::stdin();
    if isatty(&stdin) {
        Resizes::watch(stdin)
    } else {
        Resizes::watch(io::stdout())
    }
}

impl Resizes {
    fn watch(tty: impl AsFd) -> io::Result<Resizes> {
        let tty = tty.as_fd().try_clone_to_owned()?;
        Ok(Resizes {
            signal: signal(SignalKind::window_change())?,
            last: size(&tty),
            tty,
        })
    }

    /// The terminal's next size: waits for a `SIGWINCH` after which the
    /// size differs from the last one seen. A signal that changed nothing is
    /// skipped, and several resizes before a call come as one, the latest.
    /// `None` once the signal stream ends; never returns if neither stdin
    /// nor stdout is a terminal.
    pub async fn next(&mut self) -> Option<TerminalSize> {
        loop {
            self.signal.recv().await?;
            let now = size(&self.tty);
            if now.is_some() && now != self.last {
                self.last = now;
                return now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use rustix::termios::{Winsize, tcsetwinsize};

    use super::*;

    /// Held by the tests that enable raw mode: [`SAVED`] is process-global,
    /// and one test's [`restore_saved`] must not restore another's terminal.
    static RAW_MODE_TESTS: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        RAW_MODE_TESTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A pty pair: (master, slave). The slave is opened without becoming
    /// this process's controlling terminal.
    fn pty_pair() -> (OwnedFd, OwnedFd) {
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open the pty slave");
        (master, slave)
    }

    fn set_size(fd: impl AsFd, columns: u16, rows: u16) {
        let ws = Winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        tcsetwinsize(fd, ws).expect("TIOCSWINSZ");
    }

    #[test]
    fn term_name_is_kept_when_plain() {
        for t in [
            "xterm-256color",
            "screen.xterm-256color",
            "rxvt-unicode+x",
            "vt100",
            "foot_x",
        ] {
            assert_eq!(sanitize_term(Some(OsStr::new(t))), t);
        }
        let longest = "x".repeat(MAX_TERM_LEN);
        assert_eq!(sanitize_term(Some(OsStr::new(&longest))), longest);
    }

    #[test]
    fn term_name_falls_back_to_dumb() {
        let too_long = "x".repeat(MAX_TERM_LEN + 1);
        for t in [
            "",
            "xterm 256",
            "xterm\n",
            "../../etc/x",
            "x;rm",
            "ünï",
            &too_long,
        ] {
            assert_eq!(sanitize_term(Some(OsStr::new(t))), "dumb", "{t:?}");
        }
        assert_eq!(sanitize_term(None), "dumb");
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(sanitize_term(Some(OsStr::from_bytes(b"xterm\xff"))), "dumb");
    }

    #[test]
    fn want_tty_follows_openssh() {
        use TtyRequest::*;
        let yes = Decision {
            tty: true,
            warning: None,
        };
        let no = Decision {
            tty: false,
            warning: None,
        };
        let warned = Decision {
            tty: false,
            warning: Some(NO_TTY_WARNING),
        };
        // (request, has_command, stdin_is_tty) -> decision, as ssh decides.
        let table = [
            // No flag: a login shell gets a terminal, a command does not.
            (Auto, false, true, yes),
            (Auto, false, false, warned),
            (Auto, true, true, no),
            (Auto, true, false, no),
            (Force(0), false, true, yes),
            (Force(0), true, true, no),
            // -t: a terminal if stdin is one, with or without a command.
            (Force(1), false, true, yes),
            (Force(1), false, false, warned),
            (Force(1), true, true, yes),
            (Force(1), true, false, warned),
            // -tt (and more): always.
            (Force(2), false, true, yes),
            (Force(2), false, false, yes),
            (Force(2), true, true, yes),
            (Force(2), true, false, yes),
            (Force(3), true, false, yes),
            // -T: never, and no warning.
            (Never, false, true, no),
            (Never, false, false, no),
            (Never, true, true, no),
            (Never, true, false, no),
        ];
        for (request, has_command, stdin_is_tty, expected) in table {
            assert_eq!(
                want_tty(request, has_command, stdin_is_tty),
                expected,
                "{request:?} command={has_command} stdin_tty={stdin_is_tty}"
            );
        }
    }

    #[test]
    fn size_reads_the_window_size() {
        let (master, slave) = pty_pair();
        assert_eq!(size(&slave), None, "a fresh pty is 0x0");
        set_size(&master, 132, 43);
        let expected = TerminalSize {
            columns: 132,
            rows: 43,
            width_pixels: 0,
            height_pixels: 0,
        };
        assert_eq!(size(&slave), Some(expected));
        let devnull = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(size(&devnull), None);
    }

    #[test]
    fn raw_mode_is_set_and_restored() {
        let _serial = serial();
        let (_master, slave) = pty_pair();
        let before = tcgetattr(&slave).unwrap();
        assert!(
            before
                .local_modes
                .contains(LocalModes::ICANON | LocalModes::ECHO)
        );

        let guard = RawMode::enable(&slave).unwrap();
        let raw = tcgetattr(&slave).unwrap();
        assert!(!raw.local_modes.intersects(
            LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG | LocalModes::IEXTEN
        ));
        assert!(
            !raw.input_modes
                .intersects(InputModes::ICRNL | InputModes::IXON)
        );
        assert!(!raw.output_modes.contains(OutputModes::OPOST));
        assert_eq!(raw.special_codes[SpecialCodeIndex::VMIN], 1);
        assert_eq!(raw.special_codes[SpecialCodeIndex::VTIME], 0);
        // Only what ssh clears: the character size stays.
        assert_eq!(raw.control_modes, before.control_modes);

        drop(guard);
        let after = tcgetattr(&slave).unwrap();
        assert_eq!(format!("{after:?}"), format!("{before:?}"));
    }

    #[test]
    fn restore_is_idempotent() {
        let _serial = serial();
        let (_master, slave) = pty_pair();
        let before = format!("{:?}", tcgetattr(&slave).unwrap());
        let guard = RawMode::enable(&slave).unwrap();
        guard.restore();
        assert_eq!(format!("{:?}", tcgetattr(&slave).unwrap()), before);

        // Someone (the remote, a later program) changes the modes again:
        // a second restore, or the drop, must not undo that.
        let mut changed = tcgetattr(&slave).unwrap();
        changed.local_modes -= LocalModes::ECHO;
        tcsetattr(&slave, OptionalActions::Now, &changed).unwrap();
        let changed = format!("{changed:?}");
        guard.restore();
        restore_saved();
        drop(guard);
        assert_eq!(format!("{:?}", tcgetattr(&slave).unwrap()), changed);
    }

    #[test]
    fn restore_saved_restores_without_the_guard() {
        let _serial = serial();
        let (_master, slave) = pty_pair();
        let before = format!("{:?}", tcgetattr(&slave).unwrap());
        let guard = RawMode::enable(&slave).unwrap();
        restore_saved();
        assert_eq!(format!("{:?}", tcgetattr(&slave).unwrap()), before);
        drop(guard);
        assert_eq!(format!("{:?}", tcgetattr(&slave).unwrap()), before);
    }

    #[test]
    fn raw_mode_needs_a_terminal() {
        let _serial = serial();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let err = RawMode::enable(&devnull).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::NOTTY.raw_os_error())
        );
    }

    #[tokio::test]
    async fn resizes_report_changed_sizes_only() {
        use rustix::process::{Signal, getpid, kill_process};

        let (master, slave) = pty_pair();
        set_size(&master, 80, 24);
        let mut resizes = Resizes::watch(&slave).unwrap();
        let winch = || kill_process(getpid(), Signal::WINCH).unwrap();

        // A signal that changes nothing is not reported.
        winch();
        let unchanged = tokio::time::timeout(Duration::from_millis(300), resizes.next()).await;
        assert!(
            unchanged.is_err(),
            "reported {unchanged:?} for an unchanged size"
        );

        set_size(&master, 120, 40);
        winch();
        let next = tokio::time::timeout(Duration::from_secs(10), resizes.next())
            .await
            .expect("a resize within 10 s");
        assert_eq!(
            next,
            Some(TerminalSize {
                columns: 120,
                rows: 40,
                width_pixels: 0,
                height_pixels: 0
            })
        );
    }
}

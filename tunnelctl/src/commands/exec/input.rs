//! What tunnelctl sends a running command besides the start: its stdin as
//! it comes, the terminal's new sizes, signals.

use std::io::{self, Read};

use tokio::sync::mpsc;
use tunnel_proto::v1::exec_stream_request::Message;
use tunnel_proto::v1::{ExecStreamRequest, TerminalSize};

use crate::commands::report;
use crate::terminal;

/// Largest stdin chunk read and sent at once: big enough that a pipe's
/// throughput is the SSH channel's, small enough that tunneld holds little
/// per call. A read returns what is there, so an interactive line goes at
/// once.
const STDIN_CHUNK: usize = 256 * 1024;

/// One message of the call.
pub fn message(m: Message) -> ExecStreamRequest {
    ExecStreamRequest { message: Some(m) }
}

/// The terminal size as the API carries it.
pub fn size(s: terminal::TerminalSize) -> TerminalSize {
    TerminalSize {
        columns: s.columns,
        rows: s.rows,
        width_pixels: s.width_pixels,
        height_pixels: s.height_pixels,
    }
}

/// Sends our stdin to `tx` as it comes, then its end, from a thread of its
/// own: a read of a terminal cannot be cancelled, and a thread blocked in
/// one must not keep the process alive once the command has ended.
/// `blocking_send` waits while the call's queue is full, so stdin is read
/// only as fast as tunneld takes it.
pub fn forward_stdin(tx: mpsc::Sender<ExecStreamRequest>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = vec![0u8; STDIN_CHUNK];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(message(Message::Stdin(buf[..n].to_vec())))
                            .is_err()
                        {
                            // The call is over.
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        report(&format!(
                            "cannot read standard input ({e}); the command's input ends here (use -n to not forward it)"
                        ));
                        break;
                    }
                }
            }
            let _ = tx.blocking_send(message(Message::StdinEof(true)));
        })
        .map(|_| ())
}

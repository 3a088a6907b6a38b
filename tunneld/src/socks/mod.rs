//! The server side of SOCKS4, SOCKS4a and SOCKS5 (RFC 1928) for dynamic
//! forwards (`ssh -D` style): read a client's CONNECT request, let the
//! caller open the target, then answer it.
//!
//! - `handshake`: the protocol as a state machine fed bytes ([`Handshake`],
//!   [`Step`]); no I/O, so it reads a local TCP client and the
//!   `ChannelMsg::Data` messages of a reverse dynamic forward alike, and
//!   hands back the bytes past the request (`leftover`) instead of losing
//!   them.
//! - `request`: what was asked ([`Request`], [`Version`], [`Target`]).
//! - `reply`: the success and failure replies, and why a CONNECT failed
//!   ([`Refusal`]).
//! - `stream`: [`read_request`], the handshake over an `AsyncRead +
//!   AsyncWrite`, bounded by [`HANDSHAKE_TIMEOUT`].
//!
//! **Architecture Invariant**: this module knows nothing of SSH, tunnels or
//! policy. It never resolves a name (the SSH server does: socks5h
//! semantics), never connects, and writes nothing but the handshake's own
//! method-selection and refusal replies; the success or failure of the
//! CONNECT is written by the caller, after it has tried the target.
//!
//! Why not fast-socks5 (1.0.0, MIT), checked against this need: its server
//! API, `Socks5ServerProtocol::accept_no_auth(inner: T)` then
//! `read_command()` then `reply_success(SocketAddr)` or
//! `reply_error(&ReplyError)`, takes the stream by value, reads each field
//! with `read_exact` (so nothing past the request is read) and does let us
//! reply after our own connect with our own code. But it needs `T:
//! AsyncRead + AsyncWrite`: there is no sans-IO entry point to feed
//! `ChannelMsg::Data` to, it has no SOCKS4/4a server (its `socks4` feature
//! is a client), its handshake has no time bound of its own, it accepts an
//! empty domain name, and it writes replies with `write`, not `write_all`.
//! Its dependencies are anyhow, async-trait, log, thiserror 1, socket2 0.5
//! and tokio-stream: thiserror 1 and socket2 0.5 would be second copies
//! beside the thiserror 2 and socket2 0.6 tunneld builds, and anyhow in a
//! library is against our own rule. SOCKS4/4a had to be written here
//! anyway; the SOCKS5 request is a few dozen lines more.

mod handshake;
mod reply;
mod request;
mod stream;

pub use handshake::{Handshake, Step};
pub use reply::Refusal;
pub use request::{Request, Target, Version};
pub use stream::{HANDSHAKE_TIMEOUT, read_request};

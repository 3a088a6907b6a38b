//! The server side of the SOCKS4, SOCKS4a and SOCKS5 handshakes as a state
//! machine fed bytes: no I/O, so the same code reads a local TCP client and
//! the `ChannelMsg::Data` messages of a reverse dynamic forward's channel.
//!
//! Each message is parsed from the start of the bytes held so far, field
//! by field, and a field is judged only once it has fully arrived: the
//! outcome depends on the bytes, never on how they were split.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    Request, Target, Version,
    reply::{self, SOCKS4_REJECTED, rep},
};

/// The longest SOCKS4 USERID and SOCKS4a or SOCKS5 host name, in bytes
/// (NUL excluded): SOCKS5's length byte allows no more, and SOCKS4 clients
/// send far less.
const NAME_MAX: usize = 255;

/// The longest message tunneld accepts: a SOCKS4a request with both its
/// USERID and host name at [`NAME_MAX`]. It bounds what a handshake holds
/// while a message is incomplete (a SOCKS5 greeting is at most 257 bytes,
/// a request 262).
const MESSAGE_MAX: usize = 8 + NAME_MAX + 1 + NAME_MAX + 1;

/// SOCKS5 method: no authentication required.
const NO_AUTHENTICATION: u8 = 0x00;
/// SOCKS5 method reply: no acceptable methods.
const NO_ACCEPTABLE_METHODS: u8 = 0xFF;

/// A server-side SOCKS handshake, fed the client's bytes as they arrive.
#[derive(Debug)]
pub struct Handshake {
    phase: Phase,
    /// Bytes received and not yet consumed: the message being read (at
    /// most [`MESSAGE_MAX`] while incomplete), plus, right after a
    /// `Reply`, whatever the same feed carried past the greeting.
    pending: Vec<u8>,
}

/// Which message the handshake is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first byte, which names the version.
    Start,
    /// A SOCKS4 or SOCKS4a request.
    Socks4,
    /// The SOCKS5 method selection.
    Socks5Greeting,
    /// The SOCKS5 request, after the method reply.
    Socks5Request,
    /// Nothing: a request was returned, or the client refused.
    Ended,
}

/// What to do after feeding a [`Handshake`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Feed more bytes.
    NeedMore,
    /// Write these bytes to the client (SOCKS5 method selection), then
    /// feed again: first with no bytes, since the client may have sent its
    /// request in the same read, then with whatever it sends next.
    Reply(Vec<u8>),
    /// The request is complete. `leftover`: bytes the client sent after
    /// it, in order; they are data for the target.
    Request {
        /// What the client asked for.
        request: Request,
        /// The bytes after the request, to send to the target first.
        leftover: Vec<u8>,
    },
    /// Refused by the protocol itself: write `reply` (empty when the
    /// protocol has none, e.g. an unknown first byte), then close.
    Refuse {
        /// The reply to write before closing; may be empty.
        reply: Vec<u8>,
        /// Why, for the log; names the field and what tunneld accepts.
        reason: String,
    },
}

/// The outcome of parsing one message from the bytes held so far.
enum Parsed<T> {
    /// Some field has not fully arrived.
    Incomplete,
    /// The message is `len` bytes long.
    Complete { value: T, len: usize },
    /// The client is refused.
    Refused { reply: Vec<u8>, reason: String },
}

impl Handshake {
    /// A handshake waiting for the client's first byte.
    pub fn new() -> Self {
        Handshake {
            phase: Phase::Start,
            pending: Vec::new(),
        }
    }

    /// Takes the next bytes from the client (any split, even one byte at a
    /// time, or none) and says what to do. After `Request` or `Refuse` the
    /// handshake is over: further calls are a bug in the caller and return
    /// `Refuse` again.
    pub fn feed(&mut self, bytes: &[u8]) -> Step {
        if self.phase == Phase::Ended {
            return Step::Refuse {
                reply: Vec::new(),
                reason: ended(),
            };
        }
        self.pending.extend_from_slice(bytes);
        let mut step = self.advance();
        // Every parser judges a field once it is complete, and no field is
        // longer than NAME_MAX, so an incomplete message never exceeds
        // MESSAGE_MAX; this keeps the bound true whatever a change breaks.
        if step == Step::NeedMore && self.pending.len() > MESSAGE_MAX {
            step = Step::Refuse {
                reply: Vec::new(),
                reason: format!(
                    "SOCKS message is longer than {MESSAGE_MAX} bytes and still incomplete; \
                     a bug in tunneld's SOCKS parser"
                ),
            };
        }
        if matches!(step, Step::Request { .. } | Step::Refuse { .. }) {
            self.phase = Phase::Ended;
            self.pending = Vec::new();
        }
        step
    }

    fn advance(&mut self) -> Step {
        match self.phase {
            Phase::Start => {
                self.phase = match self.pending.first() {
                    None => return Step::NeedMore,
                    Some(4) => Phase::Socks4,
                    Some(5) => Phase::Socks5Greeting,
                    Some(&byte) => {
                        return Step::Refuse {
                            reply: Vec::new(),
                            reason: not_socks(byte),
                        };
                    }
                };
                self.advance()
            }
            Phase::Socks4 => self.finish(socks4(&self.pending)),
            Phase::Socks5Greeting => match socks5_greeting(&self.pending) {
                Parsed::Incomplete => Step::NeedMore,
                Parsed::Complete { value: (), len } => {
                    self.pending.drain(..len.min(self.pending.len()));
                    self.phase = Phase::Socks5Request;
                    Step::Reply(vec![5, NO_AUTHENTICATION])
                }
                Parsed::Refused { reply, reason } => Step::Refuse { reply, reason },
            },
            Phase::Socks5Request => self.finish(socks5_request(&self.pending)),
            Phase::Ended => Step::Refuse {
                reply: Vec::new(),
                reason: ended(),
            },
        }
    }

    /// The step for a parsed request: what follows it is leftover.
    fn finish(&mut self, parsed: Parsed<Request>) -> Step {
        match parsed {
            Parsed::Incomplete => Step::NeedMore,
            Parsed::Complete { value, len } => {
                let leftover = self.pending.split_off(len.min(self.pending.len()));
                Step::Request {
                    request: value,
                    leftover,
                }
            }
            Parsed::Refused { reply, reason } => Step::Refuse { reply, reason },
        }
    }
}

impl Default for Handshake {
    fn default() -> Self {
        Self::new()
    }
}

fn ended() -> String {
    "SOCKS handshake fed after it ended; a bug in tunneld: after a request or a refusal \
     the caller owns the stream"
        .to_string()
}

/// Why a first byte that is neither 4 nor 5 is refused, with a guess at
/// what the client speaks instead.
fn not_socks(byte: u8) -> String {
    let guess = match byte {
        // The initials of HTTP's methods: CONNECT and GET are what HTTP
        // proxy clients send.
        b'C' | b'G' | b'P' | b'H' | b'O' | b'D' | b'T' => {
            "is this HTTP? point the client at the proxy as SOCKS \
             (e.g. socks5h://), not as an HTTP proxy"
        }
        0x16 => "is this TLS? point the client at the proxy as plain SOCKS",
        _ => "the client must speak SOCKS4, SOCKS4a or SOCKS5",
    };
    format!("not a SOCKS4/5 greeting (first byte {byte:#04x}: {guess})")
}

/// The length of the NUL-terminated field at the start of `bytes`, NUL
/// excluded.
enum Field {
    Incomplete,
    TooLong,
    Len(usize),
}

fn nul_terminated(bytes: &[u8]) -> Field {
    let window = bytes.get(..=NAME_MAX).unwrap_or(bytes);
    match window.iter().position(|&b| b == 0) {
        Some(len) => Field::Len(len),
        None if window.len() > NAME_MAX => Field::TooLong,
        None => Field::Incomplete,
    }
}

fn refuse4<T>(reason: String) -> Parsed<T> {
    Parsed::Refused {
        reply: reply::socks4(SOCKS4_REJECTED, None),
        reason,
    }
}

fn refuse5<T>(code: u8, reason: String) -> Parsed<T> {
    Parsed::Refused {
        reply: reply::socks5(code, None),
        reason,
    }
}

/// A SOCKS4 or SOCKS4a request: `VN=4 CD DSTPORT DSTIP USERID NUL`, then
/// for SOCKS4a (DSTIP 0.0.0.x, x != 0) `HOST NUL`.
fn socks4(bytes: &[u8]) -> Parsed<Request> {
    let Some(&command) = bytes.get(1) else {
        return Parsed::Incomplete;
    };
    match command {
        1 => {}
        2 => return refuse4("SOCKS4 command BIND (2) is not supported; only CONNECT (1)".into()),
        other => {
            return refuse4(format!(
                "SOCKS4 command {other} is unknown; only CONNECT (1) is supported"
            ));
        }
    }
    let Some(&[_, _, p0, p1, a, b, c, d]) = bytes.get(..8) else {
        return Parsed::Incomplete;
    };
    let port = u16::from_be_bytes([p0, p1]);
    let ip = Ipv4Addr::new(a, b, c, d);
    let after_header = bytes.get(8..).unwrap_or_default();
    // The USERID is skipped, never kept nor logged: it may be a secret.
    let user_len = match nul_terminated(after_header) {
        Field::Incomplete => return Parsed::Incomplete,
        Field::TooLong => {
            return refuse4(format!("SOCKS4 user id is longer than {NAME_MAX} bytes"));
        }
        Field::Len(len) => len,
    };
    let mut len = 8 + user_len + 1;
    let (version, target) = if a == 0 && b == 0 && c == 0 && d != 0 {
        let after_user = bytes.get(len..).unwrap_or_default();
        let name = match nul_terminated(after_user) {
            Field::Incomplete => return Parsed::Incomplete,
            Field::TooLong => {
                return refuse4(format!("SOCKS4a host name is longer than {NAME_MAX} bytes"));
            }
            Field::Len(0) => return refuse4("SOCKS4a host name is empty".into()),
            Field::Len(name_len) => {
                len += name_len + 1;
                match std::str::from_utf8(after_user.get(..name_len).unwrap_or_default()) {
                    Ok(name) => name.to_string(),
                    Err(_) => return refuse4("SOCKS4a host name is not valid UTF-8".into()),
                }
            }
        };
        (Version::Socks4a, Target::Domain { name, port })
    } else {
        (
            Version::Socks4,
            Target::Ip(SocketAddr::new(IpAddr::V4(ip), port)),
        )
    };
    if port == 0 {
        return refuse4(format!(
            "{} request asks for port 0, which nothing listens on",
            name(version)
        ));
    }
    Parsed::Complete {
        value: Request { version, target },
        len,
    }
}

fn name(version: Version) -> &'static str {
    match version {
        Version::Socks4 => "SOCKS4",
        Version::Socks4a => "SOCKS4a",
        Version::Socks5 => "SOCKS5",
    }
}

/// A SOCKS5 method selection: `VER=5 NMETHODS METHODS`.
fn socks5_greeting(bytes: &[u8]) -> Parsed<()> {
    let no_methods = vec![5, NO_ACCEPTABLE_METHODS];
    let Some(&count) = bytes.get(1) else {
        return Parsed::Incomplete;
    };
    if count == 0 {
        return Parsed::Refused {
            reply: no_methods,
            reason: "SOCKS5 greeting offers no authentication method (NMETHODS is 0)".into(),
        };
    }
    let len = 2 + usize::from(count);
    let Some(methods) = bytes.get(2..len) else {
        return Parsed::Incomplete;
    };
    if methods.contains(&NO_AUTHENTICATION) {
        return Parsed::Complete { value: (), len };
    }
    let offered: Vec<String> = methods.iter().map(|&m| method_name(m)).collect();
    Parsed::Refused {
        reply: no_methods,
        reason: format!(
            "no acceptable methods: tunneld offers only no-authentication (0x00), the client \
             offered {}; turn the client's SOCKS authentication off",
            offered.join(", ")
        ),
    }
}

fn method_name(method: u8) -> String {
    match method {
        0x01 => "0x01 (GSSAPI)".to_string(),
        0x02 => "0x02 (username/password)".to_string(),
        other => format!("{other:#04x}"),
    }
}

/// A SOCKS5 request: `VER=5 CMD RSV ATYP DST.ADDR DST.PORT`.
fn socks5_request(bytes: &[u8]) -> Parsed<Request> {
    let Some(&version) = bytes.first() else {
        return Parsed::Incomplete;
    };
    if version != 5 {
        return refuse5(
            rep::GENERAL_FAILURE,
            format!(
                "SOCKS5 request has version {version}, expected 5; the client does not follow RFC 1928"
            ),
        );
    }
    let Some(&command) = bytes.get(1) else {
        return Parsed::Incomplete;
    };
    let unsupported = match command {
        1 => None,
        2 => Some("SOCKS5 command BIND (2) is not supported; only CONNECT (1)".to_string()),
        3 => {
            Some("SOCKS5 command UDP ASSOCIATE (3) is not supported; only CONNECT (1)".to_string())
        }
        other => Some(format!(
            "SOCKS5 command {other} is unknown; only CONNECT (1) is supported"
        )),
    };
    if let Some(reason) = unsupported {
        return refuse5(rep::COMMAND_NOT_SUPPORTED, reason);
    }
    // RSV (byte 2) is ignored, as RFC 1928 leaves it.
    let Some(&address_type) = bytes.get(3) else {
        return Parsed::Incomplete;
    };
    let (host, port_at) = match address_type {
        1 => match bytes.get(4..8).and_then(|s| <[u8; 4]>::try_from(s).ok()) {
            Some(octets) => (Host::Ip(IpAddr::V4(Ipv4Addr::from(octets))), 8),
            None => return Parsed::Incomplete,
        },
        4 => match bytes.get(4..20).and_then(|s| <[u8; 16]>::try_from(s).ok()) {
            Some(octets) => (Host::Ip(IpAddr::V6(Ipv6Addr::from(octets))), 20),
            None => return Parsed::Incomplete,
        },
        3 => {
            let Some(&name_len) = bytes.get(4) else {
                return Parsed::Incomplete;
            };
            // No code fits a malformed name; general failure, as for port 0.
            if name_len == 0 {
                return refuse5(rep::GENERAL_FAILURE, "SOCKS5 host name is empty".into());
            }
            let end = 5 + usize::from(name_len);
            let Some(raw) = bytes.get(5..end) else {
                return Parsed::Incomplete;
            };
            let Ok(name) = std::str::from_utf8(raw) else {
                return refuse5(
                    rep::GENERAL_FAILURE,
                    "SOCKS5 host name is not valid UTF-8".into(),
                );
            };
            if name.contains('\0') {
                return refuse5(
                    rep::GENERAL_FAILURE,
                    "SOCKS5 host name contains a NUL byte".into(),
                );
            }
            (Host::Name(name.to_string()), end)
        }
        other => {
            return refuse5(
                rep::ADDRESS_TYPE_NOT_SUPPORTED,
                format!(
                    "SOCKS5 address type {other} is not supported; only IPv4 (1), domain name (3) \
                     and IPv6 (4)"
                ),
            );
        }
    };
    let Some(&[p0, p1]) = bytes.get(port_at..port_at + 2) else {
        return Parsed::Incomplete;
    };
    let port = u16::from_be_bytes([p0, p1]);
    if port == 0 {
        return refuse5(
            rep::GENERAL_FAILURE,
            "SOCKS5 request asks for port 0, which nothing listens on".into(),
        );
    }
    let target = match host {
        Host::Ip(ip) => Target::Ip(SocketAddr::new(ip, port)),
        Host::Name(name) => Target::Domain { name, port },
    };
    Parsed::Complete {
        value: Request {
            version: Version::Socks5,
            target,
        },
        len: port_at + 2,
    }
}

/// A SOCKS5 DST.ADDR, before its port is read.
enum Host {
    Ip(IpAddr),
    Name(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a handshake over `input` fed `chunk` bytes at a time, as
    /// `read_request` does (a `Reply` is followed by an empty feed); returns
    /// the replies and the last step, with the bytes never fed appended to
    /// a request's leftover.
    fn drive(input: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Step) {
        let mut handshake = Handshake::new();
        let mut replies = Vec::new();
        let mut chunks = input.chunks(chunk.max(1));
        let mut next: &[u8] = &[];
        loop {
            match handshake.feed(next) {
                Step::NeedMore => match chunks.next() {
                    Some(bytes) => next = bytes,
                    None => return (replies, Step::NeedMore),
                },
                Step::Reply(reply) => {
                    replies.push(reply);
                    next = &[];
                }
                Step::Request {
                    request,
                    mut leftover,
                } => {
                    leftover.extend(chunks.flatten());
                    return (replies, Step::Request { request, leftover });
                }
                refuse => return (replies, refuse),
            }
        }
    }

    /// The outcome of `input`, the same whole and one byte at a time.
    fn outcome(input: &[u8]) -> (Vec<Vec<u8>>, Step) {
        let whole = drive(input, input.len());
        assert_eq!(
            whole,
            drive(input, 1),
            "whole and byte by byte differ for {input:?}"
        );
        whole
    }

    fn socks5(greeting: &[u8], request: &[u8]) -> Vec<u8> {
        [greeting, request].concat()
    }

    fn domain(name: &str, port: u16) -> Target {
        Target::Domain {
            name: name.into(),
            port,
        }
    }

    fn socks4a(name: &[u8]) -> Vec<u8> {
        [&[4, 1, 0x15, 0x38, 0, 0, 0, 1, b'u', 0][..], name, &[0]].concat()
    }

    fn socks5_domain(name: &[u8]) -> Vec<u8> {
        let len = u8::try_from(name.len()).unwrap();
        [&[5, 1, 0, 5, 1, 0, 3, len][..], name, &[0x15, 0x38]].concat()
    }

    /// What, the client's bytes, the method replies, the request.
    type Accepted = (&'static str, Vec<u8>, Vec<Vec<u8>>, Version, Target);
    /// What, the client's bytes, the method replies, the refusal's reply
    /// and a part of its reason.
    type Refused = (&'static str, Vec<u8>, Vec<Vec<u8>>, Vec<u8>, &'static str);

    #[test]
    fn requests_whole_and_byte_by_byte() {
        let long_name = "n".repeat(255);
        let cases: Vec<Accepted> = vec![
            (
                "SOCKS4 by IP",
                [&[4, 1, 0, 80, 10, 0, 0, 1][..], b"alice\0"].concat(),
                vec![],
                Version::Socks4,
                Target::Ip("10.0.0.1:80".parse().unwrap()),
            ),
            (
                "SOCKS4, empty user id",
                vec![4, 1, 0, 80, 10, 0, 0, 1, 0],
                vec![],
                Version::Socks4,
                Target::Ip("10.0.0.1:80".parse().unwrap()),
            ),
            (
                "SOCKS4, 255-byte user id",
                [&[4, 1, 0, 80, 10, 0, 0, 1][..], &[b'u'; 255], &[0]].concat(),
                vec![],
                Version::Socks4,
                Target::Ip("10.0.0.1:80".parse().unwrap()),
            ),
            (
                "SOCKS4 to 0.0.0.0 is not 4a",
                vec![4, 1, 0, 80, 0, 0, 0, 0, 0],
                vec![],
                Version::Socks4,
                Target::Ip("0.0.0.0:80".parse().unwrap()),
            ),
            (
                "SOCKS4a by name",
                socks4a(b"db.internal"),
                vec![],
                Version::Socks4a,
                domain("db.internal", 5432),
            ),
            (
                "SOCKS4a, 255-byte name and user id",
                [
                    &[4, 1, 0x15, 0x38, 0, 0, 0, 9][..],
                    &[b'u'; 255],
                    &[0],
                    long_name.as_bytes(),
                    &[0],
                ]
                .concat(),
                vec![],
                Version::Socks4a,
                domain(&long_name, 5432),
            ),
            (
                "SOCKS5 IPv4",
                socks5(&[5, 1, 0], &[5, 1, 0, 1, 10, 0, 0, 1, 0, 80]),
                vec![vec![5, 0]],
                Version::Socks5,
                Target::Ip("10.0.0.1:80".parse().unwrap()),
            ),
            (
                "SOCKS5 IPv6, no-auth offered second, RSV not 0",
                socks5(
                    &[5, 2, 2, 0],
                    &[
                        5, 1, 9, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xBB,
                    ],
                ),
                vec![vec![5, 0]],
                Version::Socks5,
                Target::Ip("[::1]:443".parse().unwrap()),
            ),
            (
                "SOCKS5 domain",
                socks5_domain(b"db.internal"),
                vec![vec![5, 0]],
                Version::Socks5,
                domain("db.internal", 5432),
            ),
            (
                "SOCKS5 255-byte domain",
                socks5_domain(long_name.as_bytes()),
                vec![vec![5, 0]],
                Version::Socks5,
                domain(&long_name, 5432),
            ),
        ];
        for (what, input, replies, version, target) in cases {
            let request = Request { version, target };
            assert_eq!(
                outcome(&input),
                (
                    replies.clone(),
                    Step::Request {
                        request: request.clone(),
                        leftover: vec![]
                    }
                ),
                "{what}"
            );
            // What follows the request in the same read is kept, exactly.
            let data = b"GET / HTTP/1.1\r\n";
            let with_data = [&input[..], data].concat();
            assert_eq!(
                outcome(&with_data),
                (
                    replies,
                    Step::Request {
                        request,
                        leftover: data.to_vec()
                    }
                ),
                "{what}, with data"
            );
            let mut handshake = Handshake::new();
            let mut steps = Vec::new();
            loop {
                let step = handshake.feed(if steps.is_empty() { &with_data } else { &[] });
                let done = !matches!(step, Step::Reply(_));
                steps.push(step);
                if done {
                    break;
                }
            }
            match steps.last() {
                Some(Step::Request { leftover, .. }) => assert_eq!(leftover, data, "{what}"),
                other => panic!("{what}: one feed gave {other:?}"),
            }
        }
    }

    #[test]
    fn refusals() {
        const S4: [u8; 8] = [0, 0x5B, 0, 0, 0, 0, 0, 0];
        let s5 = |code: u8| vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0];
        let no_auth = &[5, 1, 0][..];
        let cases: Vec<Refused> = vec![
            (
                "SOCKS4 BIND",
                vec![4, 2, 0, 80, 10, 0, 0, 1, 0],
                vec![],
                S4.to_vec(),
                "SOCKS4 command BIND (2) is not supported; only CONNECT (1)",
            ),
            (
                "SOCKS4 unknown command",
                vec![4, 9],
                vec![],
                S4.to_vec(),
                "SOCKS4 command 9 is unknown",
            ),
            (
                "SOCKS4 user id over 255 bytes",
                [&[4, 1, 0, 80, 10, 0, 0, 1][..], &[b'u'; 256], &[0]].concat(),
                vec![],
                S4.to_vec(),
                "SOCKS4 user id is longer than 255 bytes",
            ),
            (
                "SOCKS4 port 0",
                vec![4, 1, 0, 0, 10, 0, 0, 1, 0],
                vec![],
                S4.to_vec(),
                "port 0",
            ),
            (
                "SOCKS4a empty name",
                socks4a(b""),
                vec![],
                S4.to_vec(),
                "SOCKS4a host name is empty",
            ),
            (
                "SOCKS4a name over 255 bytes",
                socks4a(&[b'n'; 256]),
                vec![],
                S4.to_vec(),
                "SOCKS4a host name is longer than 255 bytes",
            ),
            (
                "SOCKS4a name not UTF-8",
                socks4a(&[0xFF]),
                vec![],
                S4.to_vec(),
                "not valid UTF-8",
            ),
            (
                "SOCKS4a port 0",
                vec![4, 1, 0, 0, 0, 0, 0, 1, 0, b'h', 0],
                vec![],
                S4.to_vec(),
                "SOCKS4a request asks for port 0",
            ),
            (
                "SOCKS5 without no-auth",
                vec![5, 2, 1, 2],
                vec![],
                vec![5, 0xFF],
                "no acceptable methods: tunneld offers only no-authentication (0x00), the client \
                 offered 0x01 (GSSAPI), 0x02 (username/password)",
            ),
            (
                "SOCKS5 no methods",
                vec![5, 0],
                vec![],
                vec![5, 0xFF],
                "NMETHODS is 0",
            ),
            (
                "SOCKS5 request version 4",
                socks5(no_auth, &[4, 1, 0, 1]),
                vec![vec![5, 0]],
                s5(0x01),
                "SOCKS5 request has version 4, expected 5",
            ),
            (
                "SOCKS5 BIND",
                socks5(no_auth, &[5, 2, 0, 1, 10, 0, 0, 1, 0, 80]),
                vec![vec![5, 0]],
                s5(0x07),
                "SOCKS5 command BIND (2) is not supported; only CONNECT",
            ),
            (
                "SOCKS5 UDP ASSOCIATE",
                socks5(no_auth, &[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]),
                vec![vec![5, 0]],
                s5(0x07),
                "SOCKS5 command UDP ASSOCIATE (3) is not supported",
            ),
            (
                "SOCKS5 unknown command",
                socks5(no_auth, &[5, 0x42]),
                vec![vec![5, 0]],
                s5(0x07),
                "SOCKS5 command 66 is unknown",
            ),
            (
                "SOCKS5 unknown address type",
                socks5(no_auth, &[5, 1, 0, 2, 1, 2, 3, 4]),
                vec![vec![5, 0]],
                s5(0x08),
                "SOCKS5 address type 2 is not supported",
            ),
            (
                "SOCKS5 empty name",
                socks5(no_auth, &[5, 1, 0, 3, 0, 0, 80]),
                vec![vec![5, 0]],
                s5(0x01),
                "SOCKS5 host name is empty",
            ),
            (
                "SOCKS5 name not UTF-8",
                socks5_domain(&[b'a', 0xC0]),
                vec![vec![5, 0]],
                s5(0x01),
                "SOCKS5 host name is not valid UTF-8",
            ),
            (
                "SOCKS5 name with NUL",
                socks5_domain(b"a\0b"),
                vec![vec![5, 0]],
                s5(0x01),
                "SOCKS5 host name contains a NUL byte",
            ),
            (
                "SOCKS5 port 0",
                socks5(no_auth, &[5, 1, 0, 1, 10, 0, 0, 1, 0, 0]),
                vec![vec![5, 0]],
                s5(0x01),
                "SOCKS5 request asks for port 0",
            ),
            (
                "HTTP GET",
                b"GET / HTTP/1.1\r\n".to_vec(),
                vec![],
                vec![],
                "not a SOCKS4/5 greeting (first byte 0x47: is this HTTP?",
            ),
            (
                "HTTP CONNECT",
                b"CONNECT db:5432 HTTP/1.1\r\n".to_vec(),
                vec![],
                vec![],
                "first byte 0x43: is this HTTP?",
            ),
            (
                "TLS",
                vec![0x16, 3, 1],
                vec![],
                vec![],
                "first byte 0x16: is this TLS?",
            ),
            (
                "zero",
                vec![0],
                vec![],
                vec![],
                "first byte 0x00: the client must speak SOCKS4",
            ),
        ];
        for (what, input, replies, reply, reason) in cases {
            match outcome(&input) {
                (
                    got_replies,
                    Step::Refuse {
                        reply: got_reply,
                        reason: got_reason,
                    },
                ) => {
                    assert_eq!(got_replies, replies, "{what}");
                    assert_eq!(got_reply, reply, "{what}");
                    assert!(got_reason.contains(reason), "{what}: {got_reason:?}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn incomplete_messages_need_more() {
        let cases: [&[u8]; 7] = [
            &[],
            &[4, 1, 0, 80, 10, 0, 0],
            &[4, 1, 0, 80, 10, 0, 0, 1, b'u'],
            &[4, 1, 0, 80, 0, 0, 0, 1, 0, b'h'],
            &[5, 2, 0],
            &[5, 1, 0, 5, 1, 0, 3, 4, b'h', b'o', b's', b't', 0],
            &[5, 1, 0, 5, 1, 0, 4, 0, 0],
        ];
        for input in cases {
            assert_eq!(outcome(input).1, Step::NeedMore, "{input:?}");
        }
    }

    #[test]
    fn ended_handshake_refuses_without_panicking() {
        for input in [&[4, 1, 0, 80, 10, 0, 0, 1, 0][..], b"GET /"] {
            let mut handshake = Handshake::new();
            assert!(matches!(
                handshake.feed(input),
                Step::Request { .. } | Step::Refuse { .. }
            ));
            for more in [&b"more"[..], &[]] {
                match handshake.feed(more) {
                    Step::Refuse { reply, reason } => {
                        assert!(reply.is_empty());
                        assert!(reason.contains("fed after it ended"), "{reason}");
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn holds_at_most_one_message() {
        // The longest valid message, then junk that never completes one:
        // byte by byte, the handshake never holds more than MESSAGE_MAX.
        let inputs = [
            [
                &[4, 1, 0, 80, 0, 0, 0, 1][..],
                &[b'u'; 255],
                &[0],
                &[b'n'; 300],
            ]
            .concat(),
            [&[4, 1, 0, 80, 10, 0, 0, 1][..], &[b'u'; 300]].concat(),
            [&[5, 255][..], &[1; 255], &[0]].concat(),
        ];
        for input in inputs {
            let mut handshake = Handshake::new();
            for byte in &input {
                let step = handshake.feed(&[*byte]);
                assert!(handshake.pending.len() <= MESSAGE_MAX);
                if !matches!(step, Step::NeedMore | Step::Reply(_)) {
                    break;
                }
            }
        }
    }

    /// Starts of messages, so random tails reach past the first checks.
    fn prefix() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::sample::select(vec![
            vec![],
            vec![4, 1],
            vec![4, 1, 0, 80, 0, 0, 0, 1],
            vec![5],
            vec![5, 1, 0],
            vec![5, 1, 0, 5, 1, 0],
            vec![5, 1, 0, 5, 1, 0, 3],
        ])
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// The fuzz target's property on stable: any bytes, in pieces of
        /// any size, give what they give in one piece, without a panic.
        #[test]
        fn split_never_matters(
            start in prefix(),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            piece in 1usize..40,
        ) {
            let input = [start, tail].concat();
            proptest::prop_assert_eq!(drive(&input, piece), drive(&input, input.len()));
        }
    }
}

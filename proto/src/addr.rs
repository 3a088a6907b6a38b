//! Addresses both ends spell the same way: tunneld's default API address,
//! and `host:port` with IPv6 addresses in brackets.

/// Port of tunneld's API unless `--listen` (tunneld) or `--addr`
/// (tunnelctl) says otherwise.
pub const DEFAULT_API_PORT: u16 = 4522;

/// tunneld's default `--listen` and tunnelctl's default `--addr`:
/// loopback, [`DEFAULT_API_PORT`].
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:4522";

/// `host:port`, with an IPv6 address in brackets (`[::1]:22`); a host
/// already in brackets is left as it is (as Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_in_brackets_once() {
        assert_eq!(join_host_port("db", 5432), "db:5432");
        assert_eq!(join_host_port("127.0.0.1", 22), "127.0.0.1:22");
        assert_eq!(join_host_port("::1", 22), "[::1]:22");
        assert_eq!(join_host_port("[::1]", 22), "[::1]:22");
    }

    #[test]
    fn the_default_address_uses_the_default_port() {
        assert_eq!(
            DEFAULT_API_ADDR,
            join_host_port("127.0.0.1", DEFAULT_API_PORT)
        );
    }
}

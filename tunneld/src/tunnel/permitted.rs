//! Whether a forward may be opened: the host's `permit_open` and
//! `permit_listen`, and tunneld's `allow_local_bind`. Checked before
//! anything is bound, dialled or asked: by the daemon at every open, and by
//! the config for each declared tunnel (so `tunneld --check-config` and a
//! reload refuse what could never open).

use std::net::{IpAddr, Ipv4Addr};

use super::{Endpoint, ForwardSpec};
use crate::{
    error::Result,
    policy::{BindPolicy, HostPolicy},
};

impl ForwardSpec {
    /// Checks this forward over host `host` (whose rules are `policy`),
    /// local binds against `binds`. `bind_ip` is what a local forward's TCP
    /// bind address resolved to; `None` leaves that check to the open (a
    /// name, not looked up before anything runs). A dynamic forward's
    /// targets are checked per SOCKS request.
    pub fn check_permitted(
        &self,
        host: &str,
        policy: &HostPolicy,
        binds: &BindPolicy,
        bind_ip: Option<IpAddr>,
    ) -> Result<()> {
        match self {
            ForwardSpec::Local(l) => {
                if let (Endpoint::Tcp { host: bind, .. }, Some(ip)) = (&l.listen, bind_ip) {
                    binds.check(bind, ip)?;
                }
                match &l.target {
                    Endpoint::Tcp { host: to, port } => policy.check_open(host, to, *port),
                    Endpoint::Unix { path } => {
                        policy.check_open_path(host, &path.to_string_lossy())
                    }
                    Endpoint::Socks => Ok(()),
                }
            }
            ForwardSpec::Remote(r) => match &r.listen {
                Endpoint::Tcp { host: bind, port } => policy.check_listen(host, bind, *port),
                Endpoint::Unix { path } => policy.check_listen_path(host, &path.to_string_lossy()),
                Endpoint::Socks => Ok(()),
            },
        }
    }

    /// A local forward's TCP bind address when it needs no lookup: an IP
    /// address (bracketed or not) or `localhost`.
    pub fn literal_bind_ip(&self) -> Option<IpAddr> {
        let ForwardSpec::Local(l) = self else {
            return None;
        };
        let Endpoint::Tcp { host, .. } = &l.listen else {
            return None;
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse() {
            Ok(ip) => Some(ip),
            Err(_) if bare.eq_ignore_ascii_case("localhost") => Some(Ipv4Addr::LOCALHOST.into()),
            Err(_) => None,
        }
    }
}

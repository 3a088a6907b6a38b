//! Conversions between `tunnel.v1` messages and domain types, with the
//! request validation that belongs to the wire format (port ranges, defaults
//! for empty fields).

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tunnel_proto::{clip::clipped, duration::BoundedDuration, pbjson_types, v1 as pb};

use crate::{
    daemon::{
        DaemonInfo, HostRemoved, HostRequest, HostSource, HostStatus, OpenOptions, Reloaded,
        watch::{Change, WatchEvent},
    },
    error::{Error, Result},
    exec::{ExecEvent, ExecSpec, ExitStatus, valid_env_name},
    policy::RemoteOpenPolicy,
    ssh::ConnectionState,
    tunnel::{
        AttachmentEvent, ConnectionLimits, Endpoint, ForwardSpec, LocalForwardSpec,
        RemoteForwardSpec, TunnelEvent, TunnelKind, TunnelSnapshot, TunnelSource, TunnelState,
    },
};

// The defaults of empty fields are the domain's, shared with the config
// file's tunnels.
pub(super) use crate::tunnel::{DEFAULT_LOCAL_BIND, DEFAULT_REMOTE_BIND, DEFAULT_TARGET_HOST};

pub(super) fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// A port that must be 1..65535.
fn port(field: &str, value: u32) -> Result<u16> {
    match u16::try_from(value) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(invalid(format!(
            "{field} must be a TCP port from 1 to 65535, got {value}"
        ))),
    }
}

/// A port that may be 0 ("pick one").
fn port_or_any(field: &str, value: u32) -> Result<u16> {
    u16::try_from(value).map_err(|_| {
        invalid(format!(
            "{field} must be 0 (any) or a TCP port up to 65535, got {value}"
        ))
    })
}

/// A host name or address; `default` when empty.
fn host_field(field: &str, value: String, default: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(default.to_string());
    }
    crate::tunnel::check_host(field, v)
}

/// Validates an ExecRequest.
pub fn exec_request(r: pb::ExecRequest) -> Result<(String, ExecSpec)> {
    if r.command.trim().is_empty() {
        return Err(invalid(
            "command is empty; give the command line to run".into(),
        ));
    }
    Ok((
        r.host,
        ExecSpec {
            command: r.command,
            stdin: r.stdin.into(),
            env: exec_env(r.env)?,
            timeout: optional_duration("timeout", r.timeout)?,
            terminal: None,
        },
    ))
}

/// A command's environment, sorted by name, each name checked.
pub(super) fn exec_env(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    if let Some((k, _)) = env.iter().find(|(k, _)| !valid_env_name(k)) {
        return Err(invalid(format!(
            "environment variable name {} is not valid; use letters, digits and '_', not starting with a digit",
            clipped(k)
        )));
    }
    Ok(env)
}

/// One end of a forward: the socket path when `path` is set (then the
/// host and port fields must be empty), else a host (`default` when empty)
/// and port (0 allowed when `any_port`).
fn end(
    (path_field, path): (&str, &str),
    (host_field_name, host): (&str, String),
    default: &str,
    (port_field, port_value): (&str, u32),
    any_port: bool,
) -> Result<Endpoint> {
    if !path.is_empty() {
        if !host.trim().is_empty() || port_value != 0 {
            return Err(invalid(format!(
                "{path_field} names a unix socket, so {host_field_name} and {port_field} must be empty; \
                 give either a socket path or a host and port"
            )));
        }
        return Endpoint::unix(path_field, path);
    }
    Ok(Endpoint::Tcp {
        host: host_field(host_field_name, host, default)?,
        port: if any_port {
            port_or_any(port_field, port_value)?
        } else {
            port(port_field, port_value)?
        },
    })
}

/// A request's `name` and `persist`.
fn open_options(name: String, persist: bool) -> Result<OpenOptions> {
    let name = if name.is_empty() {
        None
    } else {
        tunnel_proto::name::check_tunnel_name(&name).map_err(invalid)?;
        Some(name)
    };
    Ok(OpenOptions { name, persist })
}

/// An open request, checked: its host, forward and options.
pub type Open<S> = (String, S, OpenOptions);

/// Validates an OpenLocalForwardRequest.
pub fn local_request(r: pb::OpenLocalForwardRequest) -> Result<Open<LocalForwardSpec>> {
    let options = open_options(r.name, r.persist)?;
    Ok((
        r.host,
        LocalForwardSpec {
            listen: end(
                ("local_path", &r.local_path),
                ("bind_address", r.bind_address),
                DEFAULT_LOCAL_BIND,
                ("local_port", r.local_port),
                true,
            )?,
            target: end(
                ("remote_path", &r.remote_path),
                ("remote_host", r.remote_host),
                DEFAULT_TARGET_HOST,
                ("remote_port", r.remote_port),
                false,
            )?,
            limits: connection_limits(r.max_connections, r.idle_timeout)?,
        },
        options,
    ))
}

/// Validates an OpenDynamicForwardRequest: a local forward whose target is
/// SOCKS.
pub fn dynamic_request(r: pb::OpenDynamicForwardRequest) -> Result<Open<LocalForwardSpec>> {
    let options = open_options(r.name, r.persist)?;
    Ok((
        r.host,
        LocalForwardSpec {
            listen: Endpoint::Tcp {
                host: host_field("bind_address", r.bind_address, DEFAULT_LOCAL_BIND)?,
                port: port_or_any("local_port", r.local_port)?,
            },
            target: Endpoint::Socks,
            limits: connection_limits(r.max_connections, r.idle_timeout)?,
        },
        options,
    ))
}

/// Validates an OpenRemoteForwardRequest.
pub fn remote_request(r: pb::OpenRemoteForwardRequest) -> Result<Open<RemoteForwardSpec>> {
    let options = open_options(r.name, r.persist)?;
    let listen = end(
        ("remote_path", &r.remote_path),
        ("remote_bind_address", r.remote_bind_address),
        DEFAULT_REMOTE_BIND,
        ("remote_port", r.remote_port),
        true,
    )?;
    let target = if r.dynamic {
        if !r.local_host.trim().is_empty() || r.local_port != 0 || !r.local_path.is_empty() {
            return Err(invalid(
                "dynamic is set, so local_host, local_port and local_path must be empty: \
                 each connection names its own target over SOCKS"
                    .into(),
            ));
        }
        Endpoint::Socks
    } else {
        if !r.permit_remote_open.is_empty() {
            return Err(invalid(
                "permit_remote_open applies only to a reverse dynamic forward (dynamic: true)"
                    .into(),
            ));
        }
        end(
            ("local_path", &r.local_path),
            ("local_host", r.local_host),
            DEFAULT_TARGET_HOST,
            ("local_port", r.local_port),
            false,
        )?
    };
    let permit_remote_open = RemoteOpenPolicy::parse(&r.permit_remote_open)
        .map_err(|e| invalid(clipped(&e).to_string()))?;
    Ok((
        r.host,
        RemoteForwardSpec {
            listen,
            target,
            permit_remote_open,
            limits: connection_limits(r.max_connections, r.idle_timeout)?,
        },
        options,
    ))
}

/// The connection limits of an open request: 0 and an unset or zero
/// duration mean "the default"; a negative duration is refused.
fn connection_limits(
    max_connections: u32,
    idle_timeout: Option<pbjson_types::Duration>,
) -> Result<ConnectionLimits> {
    Ok(ConnectionLimits {
        max_connections: (max_connections != 0).then_some(max_connections),
        idle_timeout: optional_duration("idle_timeout", idle_timeout)?,
    })
}

/// An optional duration field: unset or zero means none; negative or past
/// the range (0s to 365d) is refused, naming the field.
pub(super) fn optional_duration(
    field: &str,
    d: Option<pbjson_types::Duration>,
) -> Result<Option<Duration>> {
    match d {
        None => Ok(None),
        Some(d) => {
            let d = BoundedDuration::from_proto(field, &d).map_err(invalid)?;
            Ok((!d.is_zero()).then(|| d.get()))
        }
    }
}

/// Validates an OpenAttachedRequest: exactly one forward, checked as its
/// own RPC checks it, and not persisted (an attached tunnel lives as long
/// as its call).
pub fn attached_request(
    r: pb::OpenAttachedRequest,
) -> Result<(String, ForwardSpec, Option<String>)> {
    use pb::open_attached_request::Forward;
    let (host, spec, options) = match r.forward {
        Some(Forward::Local(l)) => {
            local_request(l).map(|(h, s, o)| (h, ForwardSpec::Local(s), o))?
        }
        Some(Forward::Remote(r)) => {
            remote_request(r).map(|(h, s, o)| (h, ForwardSpec::Remote(s), o))?
        }
        Some(Forward::Dynamic(d)) => {
            dynamic_request(d).map(|(h, s, o)| (h, ForwardSpec::Local(s), o))?
        }
        None => {
            return Err(invalid(
                "forward is not set; set `local` (as OpenLocalForward), `dynamic` (as OpenDynamicForward) \
                 or `remote` (as OpenRemoteForward)"
                    .into(),
            ));
        }
    };
    if options.persist {
        return Err(invalid(
            "persist is set on an attached tunnel, which lives only as long as its call; \
             open it with OpenLocalForward, OpenRemoteForward or OpenDynamicForward to keep it"
                .into(),
        ));
    }
    Ok((host, spec, options.name))
}

/// Validates a CloseRequest.
pub fn close_request(r: pb::CloseRequest) -> Result<String> {
    let id = r.id.trim();
    if id.is_empty() {
        return Err(invalid(
            "id is empty; give the id or name of the tunnel to close (see List)".into(),
        ));
    }
    Ok(id.to_string())
}

fn timestamp(t: SystemTime) -> pbjson_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn endpoint(e: Endpoint) -> pb::Endpoint {
    match e {
        Endpoint::Tcp { host, port } => pb::Endpoint {
            host,
            port: u32::from(port),
            path: String::new(),
        },
        Endpoint::Unix { path } => pb::Endpoint {
            path: path.to_string_lossy().into_owned(),
            ..Default::default()
        },
        Endpoint::Socks => pb::Endpoint::default(),
    }
}

/// A tunnel as the API shows it.
pub fn tunnel(t: TunnelSnapshot) -> pb::Tunnel {
    pb::Tunnel {
        id: t.id,
        kind: match t.kind {
            TunnelKind::Local => pb::TunnelKind::Local,
            TunnelKind::Remote => pb::TunnelKind::Remote,
            TunnelKind::Dynamic => pb::TunnelKind::Dynamic,
            TunnelKind::RemoteDynamic => pb::TunnelKind::RemoteDynamic,
        } as i32,
        host: t.host,
        local: Some(endpoint(t.local)),
        remote: Some(endpoint(t.remote)),
        state: match t.state {
            TunnelState::Open => pb::TunnelState::Open,
            TunnelState::Reconnecting => pb::TunnelState::Reconnecting,
            TunnelState::Failed => pb::TunnelState::Failed,
            TunnelState::Closed => pb::TunnelState::Closed,
        } as i32,
        state_detail: t.detail,
        created_at: Some(timestamp(t.created_at)),
        counters: Some(pb::TunnelCounters {
            active_connections: t.counters.active,
            total_connections: t.counters.total,
            failed_connections: t.counters.failed,
            bytes_to_target: t.counters.bytes_to_target,
            bytes_from_target: t.counters.bytes_from_target,
            refused_connections: t.counters.refused,
            spilled_bytes: t.counters.spilled_bytes,
            buffer_limit_resets: t.counters.limit_resets,
        }),
        attached: t.attached,
        max_connections: t.max_connections,
        idle_timeout: t.idle_timeout.map(duration),
        restores: t.restores,
        permit_remote_open: t.permit_remote_open,
        name: t.name.unwrap_or_default(),
        source: match t.source {
            TunnelSource::Api => pb::TunnelSource::Api,
            TunnelSource::Persisted => pb::TunnelSource::Persisted,
            TunnelSource::Declared => pb::TunnelSource::Declared,
        } as i32,
    }
}

/// What a reload did.
pub fn reloaded(done: Reloaded, tokens: usize) -> pb::ReloadResponse {
    pb::ReloadResponse {
        unchanged: done.unchanged,
        changed: done.changed,
        removed: done.removed,
        added: done.added,
        hosts_pending: done.hosts_pending,
        tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
        hosts_added: done.hosts_added,
        hosts_changed: done.hosts_changed,
        hosts_removed: done.hosts_removed,
    }
}

/// The first message of an OpenAttached call.
pub fn attached_opened(t: TunnelSnapshot) -> pb::OpenAttachedResponse {
    attached_response(pb::open_attached_response::Event::Opened(tunnel(t)))
}

/// A later message of an OpenAttached call; `None` for what the API does
/// not carry (events a slow caller missed).
pub fn attachment_event(id: &str, e: AttachmentEvent) -> Option<pb::OpenAttachedResponse> {
    use pb::open_attached_response::Event;
    let event = match e {
        AttachmentEvent::Tunnel(e) => match connection_event(id, e) {
            Connection::Opened(o) => Event::ConnectionOpened(o),
            Connection::Closed(c) => Event::ConnectionClosed(c),
        },
        AttachmentEvent::StateChanged(t) => Event::StateChanged(tunnel(*t)),
        AttachmentEvent::Missed => return None,
    };
    Some(attached_response(event))
}

/// A connection event as the API carries it.
enum Connection {
    Opened(pb::ConnectionOpened),
    Closed(pb::ConnectionClosed),
}

fn connection_event(tunnel_id: &str, e: TunnelEvent) -> Connection {
    match e {
        TunnelEvent::ConnectionOpened { id, peer } => Connection::Opened(pb::ConnectionOpened {
            connection_id: id,
            peer,
            tunnel_id: tunnel_id.to_string(),
        }),
        TunnelEvent::ConnectionClosed(c) => Connection::Closed(pb::ConnectionClosed {
            connection_id: c.id,
            peer: c.peer,
            bytes_to_target: c.bytes_to_target,
            bytes_from_target: c.bytes_from_target,
            error: c.error.unwrap_or_default(),
            duration: Some(duration(c.duration)),
            tunnel_id: tunnel_id.to_string(),
        }),
    }
}

/// One message of a Watch call.
pub fn watch_event(e: WatchEvent) -> pb::WatchResponse {
    use pb::watch_response::Event;
    let event = match e {
        WatchEvent::Change(c) => match *c {
            Change::Host(h) => Event::Host(host(h)),
            Change::HostRemoved(h) => Event::Host(pb::SshHost {
                state: pb::SshConnectionState::Removed as i32,
                state_detail: String::new(),
                connected_at: None,
                reconnect_attempt: 0,
                next_attempt_at: None,
                ..host(h)
            }),
            Change::Tunnel(t) => Event::Tunnel(tunnel(t)),
            Change::Connection { tunnel_id, event } => match connection_event(&tunnel_id, event) {
                Connection::Opened(o) => Event::ConnectionOpened(o),
                Connection::Closed(c) => Event::ConnectionClosed(c),
            },
        },
        WatchEvent::Synced => Event::Synced(pb::WatchSynced {}),
        WatchEvent::Missed(n) => Event::MissedEvents(n),
    };
    pb::WatchResponse {
        time: Some(timestamp(SystemTime::now())),
        event: Some(event),
    }
}

fn attached_response(event: pb::open_attached_response::Event) -> pb::OpenAttachedResponse {
    pb::OpenAttachedResponse { event: Some(event) }
}

fn duration(d: Duration) -> pbjson_types::Duration {
    tunnel_proto::duration::to_proto(d)
}

/// The daemon's description of itself.
pub fn info(i: DaemonInfo) -> pb::GetInfoResponse {
    pb::GetInfoResponse {
        version: i.version.to_string(),
        started_at: Some(timestamp(i.started_at)),
        pid: i.pid,
    }
}

/// A host as the API shows it.
pub fn host(h: HostStatus) -> pb::SshHost {
    pb::SshHost {
        name: h.host.name,
        address: h.host.address,
        via: h.host.via,
        state: match &h.host.state {
            ConnectionState::Idle => pb::SshConnectionState::Idle,
            ConnectionState::Connecting => pb::SshConnectionState::Connecting,
            ConnectionState::Connected => pb::SshConnectionState::Connected,
            ConnectionState::Reconnecting { .. } => pb::SshConnectionState::Reconnecting,
            ConnectionState::Failed { .. } => pb::SshConnectionState::Failed,
        } as i32,
        state_detail: h.host.state.detail().to_string(),
        connected_at: h.host.connected_at.map(timestamp),
        tunnels: h.tunnels,
        reconnect_attempt: h.host.state.attempt(),
        next_attempt_at: match h.host.state {
            ConnectionState::Reconnecting { next_at, .. } => next_at.map(timestamp),
            _ => None,
        },
        source: match h.source {
            HostSource::Config => pb::HostSource::Config,
            HostSource::Api => pb::HostSource::Api,
            HostSource::Persisted => pb::HostSource::Persisted,
        } as i32,
    }
}

/// Longest destination, jump list or file path AddHost takes.
const MAX_HOST_FIELD: usize = 4096;

/// An AddHost request, checked: what to add, and whether to persist it.
pub fn add_host_request(r: pb::AddHostRequest) -> Result<(HostRequest, bool)> {
    tunnel_proto::name::check_host_name(&r.name).map_err(invalid)?;
    let text = |field: &str, v: String| -> Result<Option<String>> {
        if v.len() > MAX_HOST_FIELD {
            return Err(invalid(format!(
                "{field} is {} bytes long; at most {MAX_HOST_FIELD}",
                v.len()
            )));
        }
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(invalid(format!(
                "{field} {} holds the control character {c:?}",
                clipped(&v)
            )));
        }
        Ok(Some(v).filter(|v| !v.is_empty()))
    };
    let path = |field: &str, v: String| -> Result<Option<PathBuf>> {
        match text(field, v)? {
            None => Ok(None),
            Some(p) if p.starts_with('/') || p.starts_with("~/") => Ok(Some(PathBuf::from(p))),
            Some(p) => Err(invalid(format!(
                "{field} {} is relative; give an absolute path (or ~/...) on tunneld's machine",
                clipped(&p)
            ))),
        }
    };
    let ssh = text("ssh", r.ssh)?.ok_or_else(|| {
        invalid(format!(
            "ssh is empty; give host {:?} a destination as ssh takes it, [user@]host[:port]",
            r.name
        ))
    })?;
    if ssh.chars().any(char::is_whitespace) {
        return Err(invalid(format!(
            "ssh {} holds a space; expected [user@]host[:port]",
            clipped(&ssh)
        )));
    }
    let request = HostRequest {
        identity: path("identity_file", r.identity_file)?,
        known_hosts: path("known_hosts_file", r.known_hosts_file)?,
        jump: text("jump", r.jump)?,
        name: r.name,
        ssh,
    };
    Ok((request, r.persist))
}

/// What RemoveHost did.
pub fn host_removed(r: HostRemoved) -> pb::RemoveHostResponse {
    pb::RemoveHostResponse {
        host: Some(host(r.host)),
        closed: r.closed.into_iter().map(tunnel).collect(),
    }
}

/// An exec event as the API streams it.
pub fn exec_event(e: ExecEvent) -> pb::ExecResponse {
    use pb::exec_response::Event;
    let event = match e {
        ExecEvent::Stdout(b) => Event::Stdout(b.to_vec()),
        ExecEvent::Stderr(b) => Event::Stderr(b.to_vec()),
        ExecEvent::Exit(status) => Event::Exit(exit_status(status)),
    };
    pb::ExecResponse { event: Some(event) }
}

/// How a command ended, as the API reports it.
pub(super) fn exit_status(status: ExitStatus) -> pb::ExitStatus {
    match status {
        ExitStatus::Code(c) => pb::ExitStatus {
            status: Some(pb::exit_status::Status::Code(c as i32)),
            core_dumped: false,
            error_message: String::new(),
        },
        ExitStatus::Signal {
            name,
            core_dumped,
            message,
        } => pb::ExitStatus {
            status: Some(pb::exit_status::Status::Signal(name)),
            core_dumped,
            error_message: message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_requests_get_ssh_defaults() {
        let (host, spec, _) = local_request(pb::OpenLocalForwardRequest {
            remote_port: 5432,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(host, "");
        assert_eq!(
            spec.listen,
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 0
            }
        );
        assert_eq!(
            spec.target,
            Endpoint::Tcp {
                host: "localhost".into(),
                port: 5432
            }
        );
    }

    #[test]
    fn a_socket_path_replaces_host_and_port_and_excludes_them() {
        let (_, spec, _) = local_request(pb::OpenLocalForwardRequest {
            local_path: "/tmp/pg.sock".into(),
            remote_path: "/run/postgresql/.s.PGSQL.5432".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            spec.listen,
            Endpoint::Unix {
                path: "/tmp/pg.sock".into()
            }
        );
        assert!(matches!(spec.target, Endpoint::Unix { .. }));
        let e = local_request(pb::OpenLocalForwardRequest {
            local_path: "/tmp/pg.sock".into(),
            local_port: 7777,
            remote_port: 1,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "local_path names a unix socket, so bind_address and local_port must be empty"
            ),
            "{e}"
        );
        let e = remote_request(pb::OpenRemoteForwardRequest {
            remote_path: "relative.sock".into(),
            local_port: 80,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("remote_path") && e.contains("absolute"), "{e}");
    }

    #[test]
    fn reverse_dynamic_takes_no_target_and_a_checked_rule() {
        let (_, spec, _) = remote_request(pb::OpenRemoteForwardRequest {
            remote_port: 1080,
            dynamic: true,
            permit_remote_open: vec!["localhost:8080".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(spec.target, Endpoint::Socks);
        assert_eq!(spec.permit_remote_open.entries(), vec!["localhost:8080"]);
        let e = remote_request(pb::OpenRemoteForwardRequest {
            remote_port: 1080,
            dynamic: true,
            local_port: 80,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("dynamic is set"), "{e}");
        let e = remote_request(pb::OpenRemoteForwardRequest {
            remote_port: 1080,
            local_port: 80,
            permit_remote_open: vec!["a:1".into()],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("only to a reverse dynamic forward"), "{e}");
        let e = remote_request(pb::OpenRemoteForwardRequest {
            dynamic: true,
            permit_remote_open: vec!["nohost".into()],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("permit_remote_open"), "{e}");
    }

    #[test]
    fn bad_ports_name_the_field() {
        let e = local_request(pb::OpenLocalForwardRequest {
            local_port: 70000,
            remote_port: 1,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("local_port"), "{e}");
        let e = local_request(pb::OpenLocalForwardRequest::default()).unwrap_err();
        assert!(e.to_string().contains("remote_port"), "{e}");
        let e = remote_request(pb::OpenRemoteForwardRequest {
            remote_port: 80,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("local_port"), "{e}");
    }

    #[test]
    fn exec_requests_are_checked() {
        assert!(exec_request(pb::ExecRequest::default()).is_err());
        let mut r = pb::ExecRequest {
            command: "true".into(),
            ..Default::default()
        };
        r.env.insert("BAD NAME".into(), "x".into());
        assert!(
            exec_request(r)
                .unwrap_err()
                .to_string()
                .contains("BAD NAME")
        );
    }
}

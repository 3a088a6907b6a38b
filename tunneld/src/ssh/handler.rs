//! The russh client callbacks: host key verification against known_hosts,
//! routing of forwarded channels, and noticing the connection's end.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use russh::{
    client::{self, DisconnectReason, Session},
    keys::PublicKeyOrCertificate,
};
use tokio_util::sync::DropGuard;

use super::{ForwardRoutes, ForwardedChannel, HostConfig, HostKeyPolicy, SshChannel, known_hosts};
use crate::error::{Error, HostKeyProblem, HostKeyRejection};

/// Errors the handler returns to russh; host key refusals keep our message.
#[derive(Debug)]
pub enum HandlerError {
    /// russh's own error.
    Russh(russh::Error),
    /// The host key was refused; the message is for people.
    HostKey(Error),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

/// Callbacks of one SSH connection.
pub struct ClientHandler {
    pub(super) host: Arc<HostConfig>,
    pub(super) routes: Arc<ForwardRoutes>,
    /// Why the connection ended, for the host's state detail.
    pub(super) close_reason: Arc<Mutex<Option<String>>>,
    /// Set when russh ended the connection for unanswered keepalives.
    pub(super) keepalive_lost: Arc<AtomicBool>,
    /// Cancels the session's `closed` token when russh drops the handler,
    /// which it does when the connection's task ends for any reason.
    pub(super) _closed: DropGuard,
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        verify_host_key(&self.host, key).map_err(HandlerError::HostKey)?;
        Ok(true)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: SshChannel,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.routes.dispatch(
            connected_address,
            connected_port,
            ForwardedChannel {
                channel,
                reply,
                originator: format!("{originator_address}:{originator_port}"),
            },
        );
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        channel: SshChannel,
        socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // OpenSSH's sshd sends no peer for a unix socket's connection.
        self.routes.dispatch_unix(
            socket_path,
            ForwardedChannel {
                channel,
                reply,
                originator: socket_path.to_string(),
            },
        );
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                format!("server disconnected: {}", info.message)
            }
            DisconnectReason::Error(HandlerError::Russh(e)) => describe_russh_error(e),
            DisconnectReason::Error(HandlerError::HostKey(e)) => e.to_string(),
        };
        tracing::info!(host = %self.host.name, "SSH connection ended: {text}");
        if matches!(
            reason,
            DisconnectReason::Error(HandlerError::Russh(russh::Error::KeepaliveTimeout))
        ) {
            self.keepalive_lost.store(true, Ordering::Release);
        }
        *self.close_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(e) => Err(e),
        }
    }
}

/// Words for a russh error that a person can act on.
pub fn describe_russh_error(e: &russh::Error) -> String {
    match e {
        russh::Error::KeepaliveTimeout => {
            "the server stopped answering keepalives (network down?)".into()
        }
        russh::Error::HUP | russh::Error::Disconnect => {
            "the connection was closed by the server".into()
        }
        russh::Error::IO(io) => format!("network error: {io}"),
        other => other.to_string(),
    }
}

/// Checks what the server presented against the host's known_hosts, as
/// OpenSSH's `check_host_key` does: a host certificate through the
/// `@cert-authority` lines, and, when they refuse it for a reason other than
/// revocation or a bad signature, its key as a plain host key. Under
/// accept-new, records the (plain) key of a host known_hosts lists no plain
/// key for at all.
fn verify_host_key(host: &HostConfig, presented: &PublicKeyOrCertificate) -> Result<(), Error> {
    let path = &host.settings.known_hosts;
    let kh_error = |reason: String| Error::KnownHostsFile {
        host: host.name.clone(),
        path: path.clone(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(kh_error(e.to_string())),
    };
    let key = presented.public_key();
    let fingerprint = known_hosts::fingerprint(&key);
    let reject = |problem| {
        Error::HostKeyRejected(Box::new(HostKeyRejection {
            host: host.name.clone(),
            keyscan: format!("-p {} {}", host.port, host.hostname),
            addr: known_hosts::lookup_name(&host.hostname, host.port),
            problem,
            fingerprint: fingerprint.clone(),
            known_hosts: path.clone(),
        }))
    };
    // The certificate's refusal, reported when its plain key is unknown too.
    let mut certificate_problem = None;
    if let PublicKeyOrCertificate::Certificate(cert) = presented {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match known_hosts::check_certificate(&text, &host.hostname, host.port, cert, now) {
            Ok(()) => return Ok(()),
            Err(problem) if !problem.falls_back_to_plain_key() => return Err(reject(problem)),
            Err(problem) => {
                tracing::info!(host = %host.name, %fingerprint,
                    "host certificate refused ({problem:?}); checking its key as a plain host key, as OpenSSH does");
                certificate_problem = Some(problem);
            }
        }
    }
    let problem = match known_hosts::check(&text, &host.hostname, host.port, &key) {
        Ok(()) => return Ok(()),
        Err(p) => p,
    };
    if problem == HostKeyProblem::Unknown
        && host.settings.host_key_policy == HostKeyPolicy::AcceptNew
        && !known_hosts::host_is_known(&text, &host.hostname, host.port)
    {
        known_hosts::append(path, &host.hostname, host.port, &key)
            .map_err(|e| kh_error(format!("cannot add the new host key: {e}")))?;
        tracing::warn!(host = %host.name, %fingerprint, known_hosts = %path.display(),
            "accept-new: added the host key of a host seen for the first time");
        return Ok(());
    }
    // A key unknown as a plain key: the certificate's reason says more.
    Err(reject(match (problem, certificate_problem) {
        (HostKeyProblem::Unknown, Some(cert)) => cert,
        (problem, _) => problem,
    }))
}

//! The one mapping from [`Error`] to a gRPC status.

use tonic::{Code, Status};

use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::TunnelNotFound(_) | Error::HostNotFound { .. } => Code::NotFound,
            Error::NoDefaultHost { .. } => Code::InvalidArgument,
            Error::SshUnreachable { .. } | Error::SshConnection { .. } => Code::Unavailable,
            Error::HostKeyRejected(_)
            | Error::AuthRefused { .. }
            | Error::NoCredentials { .. }
            | Error::KnownHostsFile { .. } => Code::FailedPrecondition,
            Error::ChannelRefused {
                prohibited: true, ..
            } => Code::PermissionDenied,
            Error::ChannelRefused { .. } => Code::Unavailable,
            Error::JumpRefused {
                prohibited: true, ..
            } => Code::PermissionDenied,
            Error::JumpRefused { .. } => Code::Unavailable,
            Error::LocalAddressInUse { .. } | Error::LocalSocketInUse { .. } => Code::AlreadyExists,
            Error::LocalBind {
                permission: true, ..
            } => Code::PermissionDenied,
            Error::LocalBind { .. } => Code::Unavailable,
            Error::RemoteForwardRefused { .. }
            | Error::RemoteSocketRefused { .. }
            | Error::ExecRefused { .. }
            | Error::NotPermitted(_) => Code::PermissionDenied,
            Error::ExecTimeout { .. } => Code::DeadlineExceeded,
            Error::LimitReached { .. } => Code::ResourceExhausted,
            Error::ShuttingDown => Code::Unavailable,
            Error::Cancelled => Code::Cancelled,
            Error::Config(_) | Error::Io { .. } => Code::Internal,
            Error::StateStore { .. } => Code::Unavailable,
            Error::NameTaken { .. } | Error::HostExists { .. } => Code::AlreadyExists,
            Error::DeclaredTunnel { .. }
            | Error::NoStateStore { .. }
            | Error::ConfigRejected(_)
            | Error::ConfigHost { .. }
            | Error::HostBusy { .. } => Code::FailedPrecondition,
        };
        Status::new(code, bounded(e.to_string()))
    }
}

/// Longest message a status carries. Client values are already cut at 256
/// characters where they enter a message; this bounds whatever else (an
/// error chain from a server) might make one long.
pub const MAX_MESSAGE_BYTES: usize = 4096;

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let total = message.len();
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(&format!("… ({total} bytes in all)"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character() {
        let long = Error::InvalidArgument("é".repeat(5000));
        let status = Status::from(long);
        assert!(status.message().len() < MAX_MESSAGE_BYTES + 32);
        assert!(status.message().ends_with("(10000 bytes in all)"));
        assert_eq!(bounded("short".into()), "short");
    }
}

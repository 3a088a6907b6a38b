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
            | Error::Identity { .. }
            | Error::KnownHostsFile { .. } => Code::FailedPrecondition,
            Error::ChannelRefused {
                prohibited: true, ..
            } => Code::PermissionDenied,
            Error::ChannelRefused { .. } => Code::Unavailable,
            Error::LocalAddressInUse { .. } => Code::AlreadyExists,
            Error::LocalBind {
                permission: true, ..
            } => Code::PermissionDenied,
            Error::LocalBind { .. } => Code::Unavailable,
            Error::RemoteForwardRefused { .. }
            | Error::ExecRefused { .. }
            | Error::NotPermitted(_) => Code::PermissionDenied,
            Error::ExecTimeout { .. } => Code::DeadlineExceeded,
            Error::ShuttingDown => Code::Unavailable,
            Error::Cancelled => Code::Cancelled,
            Error::Config(_) | Error::Io { .. } => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

//! `tunnel.v1.TunnelService`: one delegating call per RPC.

use std::{pin::Pin, sync::Arc};

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tunnel_proto::v1::{self as pb, tunnel_service_server::TunnelService};

use super::{
    audit::{self, Audit},
    convert, exec_stream,
    tokens::TokenStore,
};
use crate::{daemon::Daemon, error::Error};

/// The gRPC face of a [`Daemon`].
pub struct TunnelApi {
    daemon: Arc<Daemon>,
    /// The token file, read again by Reload.
    tokens: Option<TokenStore>,
}

impl TunnelApi {
    /// Serves `daemon`; Reload also reads `tokens` again.
    pub fn new(daemon: Arc<Daemon>, tokens: Option<TokenStore>) -> Self {
        TunnelApi { daemon, tokens }
    }
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecResponse, Status>> + Send>>;
type ExecStreamStream = Pin<Box<dyn Stream<Item = Result<pb::ExecStreamResponse, Status>> + Send>>;
type AttachedStream = Pin<Box<dyn Stream<Item = Result<pb::OpenAttachedResponse, Status>> + Send>>;
type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TunnelService for TunnelApi {
    type ExecStream = ExecStream;
    type ExecStreamStream = ExecStreamStream;
    type OpenAttachedStream = AttachedStream;
    type WatchStream = WatchStream;

    async fn exec(&self, req: Request<pb::ExecRequest>) -> Result<Response<ExecStream>, Status> {
        let audit = Audit::new(
            "Exec",
            &req,
            &req.get_ref().host,
            audit::exec(req.get_ref()),
        );
        audit
            .around(
                async {
                    let (host, spec) = convert::exec_request(req.into_inner())?;
                    let output = self.daemon.exec(&host, spec).await?;
                    let stream = output.map(|e| e.map(convert::exec_event).map_err(Status::from));
                    Ok(Response::new(Box::pin(stream) as ExecStream))
                },
                |_| String::new(),
            )
            .await
    }

    async fn exec_stream(
        &self,
        mut req: Request<Streaming<pb::ExecStreamRequest>>,
    ) -> Result<Response<ExecStreamStream>, Status> {
        let start = exec_stream::first(req.get_mut()).await;
        let (host, summary) = match &start {
            Ok(s) => (s.host.as_str(), audit::exec_stream(s)),
            Err(_) => ("-", "(no start message)".to_string()),
        };
        let audit = Audit::new("ExecStream", &req, host, summary);
        audit
            .around(
                async {
                    let (host, spec) = exec_stream::spec(start?, req.into_inner())?;
                    let output = self.daemon.exec(&host, spec).await?;
                    Ok(Response::new(
                        Box::pin(exec_stream::responses(output)) as ExecStreamStream
                    ))
                },
                |_| String::new(),
            )
            .await
    }

    async fn open_local_forward(
        &self,
        req: Request<pb::OpenLocalForwardRequest>,
    ) -> Result<Response<pb::OpenLocalForwardResponse>, Status> {
        let audit = Audit::new(
            "OpenLocalForward",
            &req,
            &req.get_ref().host,
            audit::local(req.get_ref()),
        );
        audit
            .around(
                async {
                    let (host, spec, options) = convert::local_request(req.into_inner())?;
                    let t = self.daemon.open_local(&host, spec, options).await?;
                    Ok(Response::new(pb::OpenLocalForwardResponse {
                        tunnel: Some(convert::tunnel(t)),
                    }))
                },
                |r| tunnel_id(&r.get_ref().tunnel),
            )
            .await
    }

    async fn open_dynamic_forward(
        &self,
        req: Request<pb::OpenDynamicForwardRequest>,
    ) -> Result<Response<pb::OpenDynamicForwardResponse>, Status> {
        let audit = Audit::new(
            "OpenDynamicForward",
            &req,
            &req.get_ref().host,
            audit::dynamic(req.get_ref()),
        );
        audit
            .around(
                async {
                    let (host, spec, options) = convert::dynamic_request(req.into_inner())?;
                    let t = self.daemon.open_local(&host, spec, options).await?;
                    Ok(Response::new(pb::OpenDynamicForwardResponse {
                        tunnel: Some(convert::tunnel(t)),
                    }))
                },
                |r| tunnel_id(&r.get_ref().tunnel),
            )
            .await
    }

    async fn open_remote_forward(
        &self,
        req: Request<pb::OpenRemoteForwardRequest>,
    ) -> Result<Response<pb::OpenRemoteForwardResponse>, Status> {
        let audit = Audit::new(
            "OpenRemoteForward",
            &req,
            &req.get_ref().host,
            audit::remote(req.get_ref()),
        );
        audit
            .around(
                async {
                    let (host, spec, options) = convert::remote_request(req.into_inner())?;
                    let t = self.daemon.open_remote(&host, spec, options).await?;
                    Ok(Response::new(pb::OpenRemoteForwardResponse {
                        tunnel: Some(convert::tunnel(t)),
                    }))
                },
                |r| tunnel_id(&r.get_ref().tunnel),
            )
            .await
    }

    async fn list(
        &self,
        _req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let (tunnels, hosts) = self.daemon.list();
        Ok(Response::new(pb::ListResponse {
            tunnels: tunnels.into_iter().map(convert::tunnel).collect(),
            hosts: hosts.into_iter().map(convert::host).collect(),
        }))
    }

    async fn close(
        &self,
        req: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        let audit = Audit::new(
            "Close",
            &req,
            "-",
            format!("close {}", tunnel_proto::clip::clipped(&req.get_ref().id)),
        );
        audit
            .around(
                async {
                    let id = convert::close_request(req.into_inner())?;
                    let t = self.daemon.close(&id).await?;
                    Ok(Response::new(pb::CloseResponse {
                        tunnel: Some(convert::tunnel(t)),
                    }))
                },
                |r| tunnel_id(&r.get_ref().tunnel),
            )
            .await
    }

    async fn open_attached(
        &self,
        req: Request<pb::OpenAttachedRequest>,
    ) -> Result<Response<AttachedStream>, Status> {
        let (host, summary) = audit::attached(req.get_ref());
        let audit = Audit::new("OpenAttached", &req, host, summary);
        let attachment = audit
            .around(
                async {
                    let (host, spec, name) = convert::attached_request(req.into_inner())?;
                    Ok(self.daemon.open_attached(&host, spec, name).await?)
                },
                |a| a.snapshot().id,
            )
            .await?;
        let snapshot = attachment.snapshot();
        let id = snapshot.id.clone();
        let opened = convert::attached_opened(snapshot);
        // The stream owns the attachment: when tonic drops it (the caller
        // cancelled or went away), the tunnel is closed.
        let events = futures_util::stream::unfold(attachment, |mut a| async move {
            let event = a.next().await?;
            Some((event, a))
        })
        .filter_map(move |e| convert::attachment_event(&id, e))
        .map(Ok);
        let stream = tokio_stream::once(Ok(opened)).chain(events);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_info(
        &self,
        _req: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::GetInfoResponse>, Status> {
        Ok(Response::new(convert::info(self.daemon.info())))
    }

    async fn reload(
        &self,
        req: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let audit = Audit::new("Reload", &req, "-", "reload".to_string());
        audit
            .around(
                async {
                    let done = self.daemon.reload_file().await?;
                    let tokens = match &self.tokens {
                        Some(store) => store.reload().map_err(|e| {
                            Error::ConfigRejected(format!(
                                "{e}; the config file was applied, the tokens in use are unchanged"
                            ))
                        })?,
                        None => 0,
                    };
                    Ok(Response::new(convert::reloaded(done, tokens)))
                },
                |_| String::new(),
            )
            .await
    }

    async fn add_host(
        &self,
        req: Request<pb::AddHostRequest>,
    ) -> Result<Response<pb::AddHostResponse>, Status> {
        let r = req.get_ref();
        let detail = format!(
            "add host {} {}{}",
            tunnel_proto::clip::clipped(&r.name),
            tunnel_proto::clip::clipped(&r.ssh),
            if r.persist { " persist" } else { "" }
        );
        let host = r.name.clone();
        let audit = Audit::new("AddHost", &req, &host, detail);
        audit
            .around(
                async {
                    let (request, persist) = convert::add_host_request(req.into_inner())?;
                    let host = self.daemon.add_host(request, persist).await?;
                    Ok(Response::new(pb::AddHostResponse {
                        host: Some(convert::host(host)),
                    }))
                },
                |_| String::new(),
            )
            .await
    }

    async fn remove_host(
        &self,
        req: Request<pb::RemoveHostRequest>,
    ) -> Result<Response<pb::RemoveHostResponse>, Status> {
        let r = req.get_ref();
        let detail = format!(
            "remove host {}{}",
            tunnel_proto::clip::clipped(&r.name),
            if r.force { " force" } else { "" }
        );
        let host = r.name.clone();
        let audit = Audit::new("RemoveHost", &req, &host, detail);
        audit
            .around(
                async {
                    let r = req.into_inner();
                    let removed = self.daemon.remove_host(&r.name, r.force).await?;
                    Ok(Response::new(convert::host_removed(removed)))
                },
                |_| String::new(),
            )
            .await
    }

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let watcher = self.daemon.watch(&req.into_inner().tunnel_id)?;
        let stream = futures_util::stream::unfold(watcher, |mut w| async move {
            let event = w.next().await?;
            Some((Ok(convert::watch_event(event)), w))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The id of the tunnel in a response, for the audit line.
fn tunnel_id(t: &Option<pb::Tunnel>) -> String {
    t.as_ref().map(|t| t.id.clone()).unwrap_or_default()
}

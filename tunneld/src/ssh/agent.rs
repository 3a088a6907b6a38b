//! The ssh-agent a host's keys may live in: finding its socket, listing
//! what it holds, and having it sign. tunneld asks it for nothing else and
//! never adds or removes keys.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use russh::keys::agent::{AgentIdentity, client::AgentClient};
use tokio::net::UnixStream;

use super::AgentSource;

/// Bound on connecting to the agent and on its answer to the list request;
/// an agent asking its user to confirm answers a sign request later, within
/// the handshake's own bound.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most identities of an agent tunneld considers; sshd stops listening after
/// `MaxAuthTries` (6 by default) refusals anyway.
const MAX_AGENT_IDENTITIES: usize = 64;

/// A connection to an ssh-agent.
pub struct Agent {
    socket: PathBuf,
    client: AgentClient<UnixStream>,
}

impl Agent {
    /// The socket `source` names: `SSH_AUTH_SOCK`'s value for
    /// [`AgentSource::Env`], `None` when there is no agent to use.
    pub fn socket_of(source: &AgentSource) -> Option<PathBuf> {
        match source {
            AgentSource::None => None,
            AgentSource::Socket(path) => Some(path.clone()),
            AgentSource::Env => std::env::var_os("SSH_AUTH_SOCK")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// Connects to the agent at `socket`; the error says why not, naming
    /// the socket.
    pub async fn connect(socket: &Path) -> Result<Agent, String> {
        let failed = |reason: String| format!("ssh-agent at {}: {reason}", socket.display());
        let stream = tokio::time::timeout(AGENT_TIMEOUT, UnixStream::connect(socket))
            .await
            .map_err(|_| failed(format!("no answer within {}s", AGENT_TIMEOUT.as_secs())))?
            .map_err(|e| failed(format!("cannot connect: {e}")))?;
        Ok(Agent {
            socket: socket.to_path_buf(),
            client: AgentClient::connect(stream),
        })
    }

    /// The keys and certificates the agent holds, in its order (at most
    /// [`MAX_AGENT_IDENTITIES`]).
    pub async fn identities(&mut self) -> Result<Vec<AgentIdentity>, String> {
        let mut list = tokio::time::timeout(AGENT_TIMEOUT, self.client.request_identities())
            .await
            .map_err(|_| {
                self.failed(format!(
                    "no answer to the key list request within {}s",
                    AGENT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| self.failed(format!("cannot list its keys: {e}")))?;
        list.truncate(MAX_AGENT_IDENTITIES);
        Ok(list)
    }

    /// A message about this agent.
    pub fn failed(&self, reason: String) -> String {
        format!("ssh-agent at {}: {reason}", self.socket.display())
    }

    /// The client that signs authentication requests.
    pub fn client(&mut self) -> &mut AgentClient<UnixStream> {
        &mut self.client
    }
}

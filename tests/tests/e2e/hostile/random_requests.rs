//! Random and boundary values in every field of every RPC, sent to a live
//! daemon: each answer is a precise status (never UNKNOWN or INTERNAL, as a
//! panic would give), and the daemon lives and keeps working. The seed is
//! printed; `TUNNELD_FUZZ_SEED=N` replays a run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tonic::Code;
use tunnel_proto::pbjson_types::Duration as PbDuration;
use tunnel_proto::v1::open_attached_request::Forward;
use tunnel_proto::v1::{
    CloseRequest, ExecRequest, GetInfoRequest, ListRequest, OpenAttachedRequest,
    OpenDynamicForwardRequest, OpenLocalForwardRequest, OpenRemoteForwardRequest, WatchRequest,
};
use tunneld_tests::procs::is_alive;

use crate::support::{Bed, close, e2e, list};

/// Calls made, bounded by [`BUDGET`] too.
const CALLS: usize = 400;
/// Time spent sending them.
const BUDGET: Duration = Duration::from_secs(25);

/// xorshift64*: small, seedable, reproducible.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    fn string(&mut self) -> String {
        match self.below(12) {
            0 => String::new(),
            1 => self
                .pick(&[
                    "default",
                    "127.0.0.1",
                    "localhost",
                    "::1",
                    "[::1]",
                    "*",
                    "0.0.0.0",
                    "t-1",
                    "t-18446744073709551615",
                ])
                .into(),
            2 => " ".repeat(self.below(4)),
            3 => "x".repeat(256 + self.below(64 * 1024)),
            4 => "\0\n\r\u{1b}[2J\u{7f}\u{202e}".into(),
            5 => "é🙂\u{fffd}".repeat(1 + self.below(100)),
            6 => format!(
                "{}:{}",
                self.pick(&["127.0.0.1", "[::1]", "a", ""]),
                self.next()
            ),
            7 => "../../../etc/passwd".into(),
            8 => format!("h{}", self.next() % 1000),
            _ => (0..self.below(40))
                .map(|_| char::from_u32(self.below(0x3000) as u32).unwrap_or('?'))
                .collect(),
        }
    }

    fn port(&mut self) -> u32 {
        match self.below(6) {
            0 => self.pick(&[0, 1, 22, 1023, 65535, 65536, u32::MAX]),
            // Mostly ports nothing listens on, above the privileged range.
            _ => 20_000 + self.below(40_000) as u32,
        }
    }

    fn count(&mut self) -> u32 {
        let any = self.next() as u32;
        self.pick(&[0, 1, 2, 1024, u32::MAX, any])
    }

    fn duration(&mut self) -> Option<PbDuration> {
        if self.below(3) == 0 {
            return None;
        }
        let any = (self.next() >> 1) as i64;
        Some(PbDuration {
            seconds: self.pick(&[
                i64::MIN,
                -1,
                0,
                1,
                31_536_000,
                31_536_001,
                315_576_000_001,
                i64::MAX,
                any,
            ]),
            nanos: self.pick(&[i32::MIN, -1, 0, 1, 999_999_999, 1_000_000_000, i32::MAX]),
        })
    }

    fn local(&mut self) -> OpenLocalForwardRequest {
        OpenLocalForwardRequest {
            host: self.host(),
            bind_address: self.string(),
            local_port: self.port(),
            remote_host: self.string(),
            remote_port: self.port(),
            max_connections: self.count(),
            idle_timeout: self.duration(),
            local_path: self.path(),
            remote_path: self.path(),
            name: self.name(),
            persist: self.below(4) == 0,
        }
    }

    /// A tunnel name: mostly none, else a valid one or any string.
    fn name(&mut self) -> String {
        match self.below(4) {
            0 => format!("n{}", self.next() % 100),
            1 => self.string(),
            _ => String::new(),
        }
    }

    fn dynamic(&mut self) -> OpenDynamicForwardRequest {
        OpenDynamicForwardRequest {
            host: self.host(),
            bind_address: self.string(),
            local_port: self.port(),
            max_connections: self.count(),
            idle_timeout: self.duration(),
            name: self.name(),
            persist: self.below(4) == 0,
        }
    }

    fn remote(&mut self) -> OpenRemoteForwardRequest {
        OpenRemoteForwardRequest {
            host: self.host(),
            remote_bind_address: self.string(),
            remote_port: self.port(),
            local_host: self.string(),
            local_port: self.port(),
            max_connections: self.count(),
            idle_timeout: self.duration(),
            remote_path: self.path(),
            local_path: self.path(),
            dynamic: self.below(4) == 0,
            permit_remote_open: (0..self.below(3)).map(|_| self.string()).collect(),
            name: self.name(),
            persist: self.below(4) == 0,
        }
    }

    /// A unix socket path: mostly none, else random text, a path that
    /// cannot be a socket, or one in a directory that does not exist. Never
    /// a place where a socket could be created outside the test's reach.
    fn path(&mut self) -> String {
        match self.below(8) {
            // Random text, never absolute (it could name a real place).
            0 => format!("x{}", self.string()),
            1 => self
                .pick(&[
                    "/",
                    "/etc/passwd",
                    "relative.sock",
                    "/nonexistent-tunneld-dir/x.sock",
                ])
                .into(),
            2 => format!("/{}", "x".repeat(107 + self.below(64))),
            _ => String::new(),
        }
    }

    /// The configured host half the time, so calls get past the host check.
    fn host(&mut self) -> String {
        if self.below(2) == 0 {
            String::new()
        } else {
            self.string()
        }
    }
}

/// What may answer a random request: every code a precise refusal uses.
fn acceptable(code: Code) -> bool {
    !matches!(
        code,
        Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn random_values_in_every_field_of_every_rpc_get_precise_statuses() -> Result<()> {
    e2e(async {
        let seed = std::env::var("TUNNELD_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        eprintln!("random requests: TUNNELD_FUZZ_SEED={seed}");
        let bed = Bed::start().await?;
        let pid = bed.daemon.pid().context("tunneld pid")?;
        let mut g = Gen(seed);
        let started = Instant::now();
        let mut answers: HashMap<String, usize> = HashMap::new();
        for i in 0..CALLS {
            if started.elapsed() > BUDGET {
                break;
            }
            let c = bed.client.clone();
            let rpc = g.below(10);
            let limit = Duration::from_secs(15);
            let result: Result<(), tonic::Status> = tokio::time::timeout(limit, async {
                match rpc {
                    0 => {
                        let env = (0..g.below(4)).map(|_| (g.string(), g.string())).collect();
                        let req = ExecRequest {
                            host: g.host(),
                            // Only harmless commands run; the rest is random.
                            command: g
                                .pick(&["true", "", "  ", "exit 3", "echo x", "cat"])
                                .into(),
                            stdin: (0..g.below(2048)).map(|_| g.next() as u8).collect(),
                            env,
                            timeout: g.duration(),
                        };
                        let mut stream = c.clone().exec(req).await?.into_inner();
                        while stream.message().await?.is_some() {}
                        Ok(())
                    }
                    1 => c.clone().open_local_forward(g.local()).await.map(|_| ()),
                    2 => c.clone().open_remote_forward(g.remote()).await.map(|_| ()),
                    9 => c
                        .clone()
                        .open_dynamic_forward(g.dynamic())
                        .await
                        .map(|_| ()),
                    3 => c
                        .clone()
                        .close(CloseRequest { id: g.string() })
                        .await
                        .map(|_| ()),
                    4 => c.clone().list(ListRequest {}).await.map(|_| ()),
                    5 => c.clone().get_info(GetInfoRequest {}).await.map(|_| ()),
                    6 => {
                        let mut s = c
                            .clone()
                            .watch(WatchRequest {
                                tunnel_id: g.string(),
                            })
                            .await?
                            .into_inner();
                        s.message().await.map(|_| ())
                    }
                    7 => {
                        let forward = match g.below(4) {
                            0 => None,
                            1 => Some(Forward::Local(g.local())),
                            2 => Some(Forward::Dynamic(g.dynamic())),
                            _ => Some(Forward::Remote(g.remote())),
                        };
                        let mut s = c
                            .clone()
                            .open_attached(OpenAttachedRequest { forward })
                            .await?
                            .into_inner();
                        s.message().await.map(|_| ())
                    }
                    _ => {
                        // A deadline that ends the call at any moment.
                        let mut req = tonic::Request::new(g.remote());
                        req.set_timeout(Duration::from_millis(g.below(50) as u64 + 1));
                        c.clone().open_remote_forward(req).await.map(|_| ())
                    }
                }
            })
            .await
            .with_context(|| {
                format!("call {i} (rpc {rpc}) took longer than {limit:?}; seed {seed}")
            })?;
            let code = match result {
                Ok(()) => Code::Ok,
                Err(s) => {
                    ensure!(
                        acceptable(s.code()),
                        "call {i} (rpc {rpc}) answered {:?}: {:?}; seed {seed}",
                        s.code(),
                        s.message()
                    );
                    ensure!(
                        s.message().len() < 4096,
                        "call {i}: a {}-byte message",
                        s.message().len()
                    );
                    s.code()
                }
            };
            *answers.entry(format!("{rpc}:{code:?}")).or_default() += 1;
            ensure!(is_alive(pid), "tunneld died at call {i}; seed {seed}");
        }
        eprintln!("answers by rpc:code: {answers:?}");
        // Still serving, and every tunnel it opened closes.
        let listed = list(&bed.client).await?;
        for t in listed.tunnels {
            close(&bed.client, &t.id).await?;
        }
        let out = tunneld_tests::exec::run_ok(&bed.client, "echo alive").await?;
        if out != "alive\n" {
            bail!("Exec after the run: {out:?}");
        }
        Ok(())
    })
    .await
}

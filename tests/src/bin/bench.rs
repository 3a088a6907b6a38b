//! `bench`: tunneld against OpenSSH's `ssh` client, side by side in one run,
//! through one throwaway sshd on loopback, held to one cipher.
//!
//! ```text
//! cargo run --release -p tunneld-tests --bin bench            # full run
//! cargo run --release -p tunneld-tests --bin bench -- --smoke # CI: seconds, fails on errors only
//! ```
//!
//! Rows (see docs/BENCHMARKS.md for how to read them): raw loopback TCP as
//! the ceiling; `ssh -N -L` against a tunneld local forward and `ssh -N -R`
//! against a tunneld remote forward, each for single-stream push and pull,
//! 16- and 100-stream aggregate pull, connection setup + one small round
//! trip (p50/p99), and CPU per GiB of the client and of sshd; RSS; `Exec`
//! of `cat FILE` against `ssh host cat FILE`; FILE on the stdin of
//! `tunnelctl exec -- 'cat > /dev/null'` (the `ExecStream` RPC) against
//! `ssh host 'cat > /dev/null'`, timed from spawn to exit, with CPU per GiB
//! of ssh against tunnelctl + tunneld, and the same with empty stdin (the
//! fixed cost in that time); control-RPC latency
//! (OpenLocalForward, List with many tunnels open); push and pull through a
//! 3-hop chain of forwards on one SSH connection (`-L`, `-L`, `-R`); a
//! rate-limited pull beside a busy and an idle sibling on the same `-L`
//! forward (does it complete, and the sibling's round-trip p99); and RSS
//! with many idle forwarded connections. Every row runs `--reps` times
//! (the rate-limited pull `--slow-reps`, default 1), alternating which
//! contender goes first, and shows medians with the min–max spread and the
//! tunneld/ssh ratio.
//!
//! Module map (files in `bench/` next to this one, named with `#[path]`
//! because the manifest makes this file the binary's root): `options`
//! (flags), `peer` (the target server, a child process), `load` (the client side of the data-path rows), `contenders`
//! (the ssh processes, and running a client fed a file on stdin), `daemon`
//! (tunneld's side, and the `tunnelctl` built with it), `procfs` (CPU, memory,
//! machine, negotiated ciphers), `report` (statistics and the table).
//!
//! Everything listens on 127.0.0.1 only; every process started is stopped
//! by a guard's `Drop`, also on error or when `--time-limit` runs out.

#[path = "bench/contenders.rs"]
mod contenders;
#[path = "bench/daemon.rs"]
mod daemon;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/options.rs"]
mod options;
#[path = "bench/peer.rs"]
mod peer;
#[path = "bench/procfs.rs"]
mod procfs;
#[path = "bench/report.rs"]
mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tunneld_tests::{Sshd, Tunneld, fds};

use contenders::SshForward;
use load::{bounded, transfer_timeout};
use options::Options;
use report::{Better, Report, Target, Who};

const GIB: f64 = (1u64 << 30) as f64;
const MB: f64 = 1e6;
const MIB: f64 = (1u64 << 20) as f64;
/// File descriptors the bench needs besides the idle connections.
const FD_SLACK: u64 = 1024;
/// How long a process may take to close its idle connections' sockets.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// When the run started, for the progress lines.
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// A progress line on stderr, stamped with the seconds since the start
/// (stdout carries only the report).
fn progress(msg: impl std::fmt::Display) {
    let t = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:7.1}s] {msg}");
}

fn main() -> Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    let rt = tokio::runtime::Runtime::new()?;
    if opts.serve_peer {
        return rt.block_on(peer::serve());
    }
    let limit = opts.time_limit;
    progress("bench starting");
    let out = rt.block_on(async {
        tokio::time::timeout(limit, run(opts))
            .await
            .with_context(|| format!("the bench did not finish within --time-limit {limit:?}"))?
    });
    progress(match &out {
        Ok(()) => "bench finished",
        Err(_) => "bench failed",
    });
    out
}

/// The named host (same sshd) tunneld's remote forward goes through.
const REMOTE_HOST: &str = "bench-remote";

/// Where one contender's bytes go in: a forward's listening end, or the
/// peer itself for raw TCP.
#[derive(Debug, Clone, Copy)]
struct Lane {
    who: Who,
    port: u16,
    /// The client process whose CPU is counted (ssh or tunneld).
    pid: Option<u32>,
}

async fn run(o: Options) -> Result<()> {
    if cfg!(debug_assertions) && !o.smoke {
        anyhow::bail!(
            "a full run needs a release build: cargo run --release -p tunneld-tests --bin bench"
        );
    }
    // Raised before anything is started: sshd, tunneld, ssh and the peer
    // inherit it.
    let nofile = fds::raise_nofile_limit()?;
    if o.runs("idle") {
        let need = o.idle as u64 + FD_SLACK;
        ensure!(
            nofile >= need,
            "--idle {} needs RLIMIT_NOFILE >= {need} in every process, the hard limit here is \
             {nofile}; raise it (ulimit -Hn, as root) or pass a smaller --idle",
            o.idle
        );
    }
    let (bin, provenance) = tokio::task::spawn_blocking({
        let smoke = o.smoke;
        move || daemon::release_binary(smoke)
    })
    .await??;

    // Looked up now, so a missing one fails the run before its first row.
    let ctl = if o.runs("exec") {
        Some(daemon::tunnelctl_next_to(&bin)?)
    } else {
        None
    };

    let mut machine = procfs::machine_info();
    machine.push((
        "RLIMIT_NOFILE".into(),
        format!("{nofile} (bench, sshd, tunneld, ssh)"),
    ));
    machine.push((
        "tunneld".into(),
        format!(
            "{} — {} — {provenance}",
            bin.display(),
            daemon::version(&bin)
        ),
    ));
    if let Some(ctl) = &ctl {
        machine.push((
            "tunnelctl".into(),
            format!("{} — {}", ctl.display(), daemon::version(ctl)),
        ));
    }
    machine.push(("source".into(), daemon::source_commit()));
    progress(format!("tunneld: {}", bin.display()));
    progress(o.describe());

    let sshd = {
        let mut b = Sshd::builder().config(format!("LogLevel {}", o.sshd_log_level));
        if let Some(c) = &o.cipher {
            b = b.config(format!("Ciphers {c}"));
        }
        tokio::task::spawn_blocking(move || b.start()).await??
    };
    let sshd_pid = sshd.pid();
    let peer = peer::Peer::start().await?;
    // A file cat reads as fast as the page cache allows, using no disk:
    // sparse, all zeros.
    let file = sshd.dir().join("bench-cat.bin");
    std::fs::File::create(&file)?.set_len(o.bytes)?;

    let cap = (o.idle as u64 + FD_SLACK).to_string();
    let mut args: Vec<String> = vec![
        "--max-connections".into(),
        cap.clone(),
        "--max-connections-per-tunnel".into(),
        cap.clone(),
    ];
    // sshd offering one cipher already decides it; tunneld offering the
    // same one alone (when it has the flag) makes that explicit.
    if let Some(c) = &o.cipher
        && daemon::has_flag(&bin, "--ciphers")
    {
        args.extend(["--ciphers".into(), c.clone()]);
    }
    // The remote forward goes through a second named host, i.e. an SSH
    // connection of its own, as `ssh -R` is a process of its own beside
    // `ssh -L`. On one shared connection a remote forward keeps a local
    // forward's slow reader from holding that connection back (tunneld
    // then resets it at --max-connection-buffer, which failed one pull).
    let hosts = sshd.dir().join("bench-hosts.toml");
    std::fs::write(
        &hosts,
        format!(
            "[hosts.{REMOTE_HOST}]\naddress = \"{}@127.0.0.1:{}\"\nidentity = {:?}\nknown_hosts = {:?}\n",
            sshd.user(),
            sshd.port(),
            sshd.identity().display().to_string(),
            sshd.known_hosts().display().to_string(),
        ),
    )?;
    args.extend(["--config".into(), hosts.display().to_string()]);
    args.extend(o.tunneld_args.iter().cloned());
    machine.push((
        "tunneld flags (besides --ssh, --identity, --known-hosts)".into(),
        args.join(" "),
    ));
    let start_tunneld = || {
        args.iter()
            .fold(Tunneld::builder(&sshd), |b, a| b.arg(a))
            // The daemon's own default filter (info), not the fixture's debug.
            .env("RUST_LOG", "info,russh=warn")
            .start_binary(&bin)
    };
    let tunneld = start_tunneld().await?;
    let tpid = tunneld.pid().context("tunneld exited")?;
    let client = tunneld.client();
    let cap: u32 = cap.parse()?;
    let (_, tl_port) = daemon::open_local(&client, peer.port(), cap).await?;
    let (_, tr_port) = daemon::open_remote(&client, REMOTE_HOST, peer.port(), cap).await?;
    let cipher = o.cipher.as_deref();
    let ssh_l = SshForward::local(&sshd, cipher, peer.port()).await?;
    let ssh_r = SshForward::remote(&sshd, cipher, peer.port()).await?;

    let mut report = declare_rows(&o);
    let raw = Lane {
        who: Who::Raw,
        port: peer.port(),
        pid: None,
    };
    let local = [
        Lane {
            who: Who::Ssh,
            port: ssh_l.port,
            pid: Some(ssh_l.pid()?),
        },
        Lane {
            who: Who::Tunneld,
            port: tl_port,
            pid: Some(tpid),
        },
    ];
    let remote = [
        Lane {
            who: Who::Ssh,
            port: ssh_r.port,
            pid: Some(ssh_r.pid()?),
        },
        Lane {
            who: Who::Tunneld,
            port: tr_port,
            pid: Some(tpid),
        },
    ];

    for rep in 0..o.reps {
        let mut raw_done = false;
        for (kind, pair) in [("local", &local), ("remote", &remote)] {
            if !o.runs(kind) {
                continue;
            }
            progress(format!("rep {}/{}: {kind} forwards", rep + 1, o.reps));
            // Alternate who goes first so drift and warm-up hit both.
            let mut order: Vec<Lane> = if rep % 2 == 0 {
                vec![pair[0], pair[1]]
            } else {
                vec![pair[1], pair[0]]
            };
            if !raw_done {
                order.insert(0, raw);
                raw_done = true;
            }
            forward_rep(&o, &mut report, kind, &order, sshd_pid).await?;
        }
    }

    // Memory after the data-path rows, before anything else grows it.
    if o.runs("local") || o.runs("remote") {
        let t = procfs::memory(tpid)?;
        let (a, b) = (procfs::memory(ssh_l.pid()?)?, procfs::memory(ssh_r.pid()?)?);
        report.add("rss.now", Who::Tunneld, t.rss as f64 / MB);
        report.add("rss.now", Who::Ssh, (a.rss + b.rss) as f64 / MB);
        report.add("rss.peak", Who::Tunneld, t.hwm as f64 / MB);
        report.add("rss.peak", Who::Ssh, (a.hwm + b.hwm) as f64 / MB);
    }

    // `ctl` is there when the exec group runs.
    if let Some(ctl) = &ctl {
        exec_rows(&o, &mut report, &sshd, &tunneld, ctl, &file).await?;
    }

    if o.runs("control") {
        progress(format!(
            "control RPCs: {} tunnels, {} List calls",
            o.tunnels, o.list_calls
        ));
        let c = daemon::control_rows(&client, peer.port(), o.tunnels, o.list_calls).await?;
        report.add("ctl.open50", Who::Tunneld, c.open.0);
        report.add("ctl.open99", Who::Tunneld, c.open.1);
        report.add("ctl.list50", Who::Tunneld, c.list.0);
        report.add("ctl.list99", Who::Tunneld, c.list.1);
    }

    // What the earlier rows left behind: Exec buffers, 1,000 tunnels opened
    // and closed.
    if o.runs("exec") || o.runs("control") {
        report.add(
            "rss.end",
            Who::Tunneld,
            procfs::memory(tpid)?.rss as f64 / MB,
        );
    }

    if o.runs("chain") {
        chain_rows(&o, &mut report, &sshd, &client, peer.port(), cap).await?;
    }

    if o.runs("slow") {
        slow_rows(&o, &mut report, &local).await;
    }

    if o.runs("idle") {
        // A fresh tunneld and a fresh ssh -L, so the row is the cost of the
        // idle connections and not of what earlier rows left in the heap.
        progress("idle: starting a fresh tunneld and ssh -L");
        let fresh = start_tunneld().await?;
        let fresh_pid = fresh.pid().context("the fresh tunneld exited")?;
        let (_, fresh_port) = daemon::open_local(&fresh.client(), peer.port(), cap).await?;
        let fresh_ssh = SshForward::local(&sshd, cipher, peer.port()).await?;
        for (who, port, pid) in [
            (Who::Tunneld, fresh_port, fresh_pid),
            (Who::Ssh, fresh_ssh.port, fresh_ssh.pid()?),
        ] {
            progress(format!("idle: {} connections through {who:?}", o.idle));
            match idle_rss(&o, port, pid).await {
                Ok((total, per)) => {
                    report.add("idle.rss", who, total);
                    report.add("idle.per", who, per);
                }
                Err(e) => {
                    progress(format!("  {who:?} failed: {e:#}"));
                    report.fail("idle.rss", who, &e);
                }
            }
        }
    }

    let log = sshd.log();
    let ciphers = procfs::negotiated_ciphers(&log);
    let sshd_version = log
        .lines()
        .find_map(|l| l.split_once("Local version string ").map(|(_, v)| v.trim()))
        .unwrap_or("? (sshd's LogLevel is below DEBUG1)")
        .to_owned();
    machine.push(("sshd".into(), sshd_version));
    machine.push((
        "load average at end".into(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    ));
    print_report(&o, &machine, &ciphers, &report);
    drop((ssh_l, ssh_r, tunneld, peer, sshd));
    let failures = report.failures();
    ensure!(
        failures.is_empty(),
        "{} measurement(s) failed (see the table):\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// One repetition of the data-path rows of one forward kind, contenders in
/// `order` for each row in turn.
async fn forward_rep(
    o: &Options,
    report: &mut Report,
    kind: &str,
    order: &[Lane],
    sshd_pid: u32,
) -> Result<()> {
    // Raw TCP is measured once and shown on both kinds' rows.
    let keys = |who: Who, row: &str| -> Vec<String> {
        match who {
            Who::Raw => vec![format!("local.{row}"), format!("remote.{row}")],
            _ => vec![format!("{kind}.{row}")],
        }
    };
    let add = |report: &mut Report, who: Who, row: &str, v: f64| {
        for k in keys(who, row) {
            report.add(&k, who, v);
        }
    };
    let limit = transfer_timeout(o.bytes);
    // CPU seconds of the client and of sshd's per-connection processes,
    // over the single-stream push and pull, per contender.
    let mut cpu = vec![(0.0f64, 0.0f64); order.len()];
    for row in ["push", "pull"] {
        for (i, p) in order.iter().enumerate() {
            let c0 = p.pid.map(procfs::cpu_seconds).transpose()?;
            let s0 = procfs::tree_cpu_seconds(sshd_pid);
            let what = format!("{row} through {:?} ({kind})", p.who);
            let v = if row == "push" {
                bounded(&what, limit, load::push(p.port, o.bytes)).await?
            } else {
                bounded(&what, limit, load::pull(p.port, o.bytes)).await?
            };
            if let (Some(pid), Some(c0)) = (p.pid, c0) {
                cpu[i].0 += procfs::cpu_seconds(pid)? - c0;
            }
            cpu[i].1 += procfs::tree_cpu_seconds(sshd_pid) - s0;
            add(report, p.who, row, v);
        }
    }
    let gib = 2.0 * o.bytes as f64 / GIB;
    for (i, p) in order.iter().enumerate() {
        if p.who != Who::Raw {
            add(report, p.who, "cpu", cpu[i].0 / gib);
            add(report, p.who, "sshdcpu", cpu[i].1 / gib);
        }
    }
    for streams in [16usize, 100] {
        for p in order {
            let what = format!("{streams} streams through {:?} ({kind})", p.who);
            let v = bounded(&what, limit, load::aggregate_pull(p.port, o.bytes, streams)).await?;
            add(report, p.who, &format!("agg{streams}"), v);
        }
    }
    for p in order {
        let what = format!("setup round trips through {:?} ({kind})", p.who);
        let ms = bounded(
            &what,
            load::TIMEOUT_FLOOR * 5,
            load::setup_round_trips(p.port, o.rtt),
        )
        .await?;
        add(report, p.who, "setup50", report::percentile(&ms, 50.0));
        add(report, p.who, "setup99", report::percentile(&ms, 99.0));
    }
    Ok(())
}

/// The Exec rows, every repetition alternating who goes first: `cat FILE`
/// streamed out (tunneld's `Exec` RPC against `ssh host cat FILE`), then
/// FILE fed to `cat > /dev/null` on stdin (`tunnelctl exec`, i.e. the
/// `ExecStream` RPC, against `ssh host`), then the same with empty stdin.
/// A failed run is a failed cell, the run goes on.
async fn exec_rows(
    o: &Options,
    report: &mut Report,
    sshd: &Sshd,
    tunneld: &Tunneld,
    ctl: &Path,
    file: &Path,
) -> Result<()> {
    let cipher = o.cipher.as_deref();
    let tpid = tunneld.pid().context("tunneld exited")?;
    let exec_client = daemon::exec_client(tunneld.addr()).await?;
    let limit = transfer_timeout(o.bytes);
    let gib = o.bytes as f64 / GIB;
    let sinks = Sinks {
        sshd,
        cipher,
        ctl,
        addr: tunneld.api_addr().to_string(),
        tpid,
        limit,
    };
    for rep in 0..o.reps {
        progress(format!("rep {}/{}: exec", rep + 1, o.reps));
        let mut order = [Who::Ssh, Who::Tunneld];
        if rep % 2 == 1 {
            order.reverse();
        }
        for who in order {
            let s = match who {
                Who::Ssh => {
                    bounded(
                        "ssh host cat",
                        limit,
                        contenders::ssh_cat(sshd, cipher, file, o.bytes),
                    )
                    .await
                }
                _ => {
                    bounded(
                        "Exec cat",
                        limit,
                        daemon::exec_cat(&exec_client, tpid, file, o.bytes),
                    )
                    .await
                }
            };
            // A failed Exec is a finding, not the end of the run.
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    progress(format!("  {who:?} failed: {e:#}"));
                    report.fail("exec.mbps", who, &e);
                    continue;
                }
            };
            report.add("exec.mbps", who, s.mbps);
            report.add("exec.first", who, s.first_byte_ms);
            if let Some(cpu) = s.cpu_secs {
                report.add("exec.cpu", who, cpu / gib);
            }
        }
        for who in order {
            match sinks.run(who, file, o.bytes).await {
                Ok(f) => {
                    let daemon = f.daemon_cpu_secs.unwrap_or(0.0);
                    report.add("exec.stdin.mbps", who, o.bytes as f64 / f.secs / MB);
                    report.add("exec.stdin.cpu", who, (f.cpu_secs + daemon) / gib);
                    if f.daemon_cpu_secs.is_some() {
                        report.add("exec.stdin.ctlcpu", who, f.cpu_secs / gib);
                        report.add("exec.stdin.dcpu", who, daemon / gib);
                    }
                }
                Err(e) => {
                    progress(format!("  {who:?} failed: {e:#}"));
                    report.fail("exec.stdin.mbps", who, &e);
                }
            }
        }
        for who in order {
            match sinks.run(who, Path::new("/dev/null"), 0).await {
                Ok(f) => report.add("exec.stdin.empty", who, f.secs * 1e3),
                Err(e) => {
                    progress(format!("  {who:?} failed: {e:#}"));
                    report.fail("exec.stdin.empty", who, &e);
                }
            }
        }
    }
    Ok(())
}

/// What a run of the stdin rows needs of either contender.
struct Sinks<'a> {
    sshd: &'a Sshd,
    cipher: Option<&'a str>,
    /// The tunnelctl built with tunneld.
    ctl: &'a Path,
    /// tunneld's API, as `tunnelctl --addr` takes it.
    addr: String,
    /// tunneld's pid, whose CPU over the run counts for tunnelctl.
    tpid: u32,
    limit: Duration,
}

impl Sinks<'_> {
    /// `input` (`bytes` long) fed to `cat > /dev/null` through `who`.
    async fn run(&self, who: Who, input: &Path, bytes: u64) -> Result<contenders::Fed> {
        let what = format!("stdin to `cat > /dev/null` through {who:?}");
        let limit = self.limit;
        match who {
            Who::Ssh => {
                let run = contenders::ssh_sink(self.sshd, self.cipher, input, bytes);
                bounded(&what, limit, run).await
            }
            _ => {
                let run = daemon::tunnelctl_sink(self.ctl, &self.addr, self.tpid, input, bytes);
                bounded(&what, limit, run).await
            }
        }
    }
}

/// The 3-hop chain rows: push and pull through A of client → A (local
/// forward) → B (local forward) → C (remote forward) → peer, every hop on
/// ONE SSH connection per contender. A contender whose chain cannot be set
/// up gets failed cells, the run goes on.
async fn chain_rows(
    o: &Options,
    report: &mut Report,
    sshd: &Sshd,
    client: &tunneld_tests::Client,
    peer_port: u16,
    cap: u32,
) -> Result<()> {
    progress("chain: ssh -R -L -L in one process, and tunneld's three forwards on one host");
    let ssh_chain = SshForward::chain(sshd, o.cipher.as_deref(), peer_port).await;
    let mut ids = Vec::new();
    let tunneld_a = tunneld_chain(client, peer_port, cap, &mut ids).await;
    let mut lanes = Vec::new();
    for (who, a) in [
        (Who::Ssh, ssh_chain.as_ref().map(|f| f.port)),
        (Who::Tunneld, tunneld_a.as_ref().copied()),
    ] {
        let ready = match a {
            Ok(port) => load::wait_for_echo(port, CHAIN_READY_TIMEOUT)
                .await
                .map(|()| port),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        match ready {
            Ok(port) => lanes.push((who, port)),
            Err(e) => {
                let e = e.context(format!("setting up {who:?}'s 3-hop chain"));
                progress(format!("  {who:?} failed: {e:#}"));
                report.fail("chain.push", who, &e);
                report.fail("chain.pull", who, &e);
            }
        }
    }
    let limit = transfer_timeout(o.bytes);
    for rep in 0..o.reps {
        progress(format!("rep {}/{}: 3-hop chain", rep + 1, o.reps));
        let mut order = lanes.clone();
        if rep % 2 == 1 {
            order.reverse();
        }
        for row in ["push", "pull"] {
            for &(who, port) in &order {
                let what = format!("{row} through {who:?}'s 3-hop chain");
                let v = if row == "push" {
                    bounded(&what, limit, load::push(port, o.bytes)).await
                } else {
                    bounded(&what, limit, load::pull(port, o.bytes)).await
                };
                let key = format!("chain.{row}");
                match v {
                    Ok(v) => report.add(&key, who, v),
                    Err(e) => {
                        progress(format!("  {who:?} failed: {e:#}"));
                        report.fail(&key, who, &e);
                    }
                }
            }
        }
    }
    for id in ids {
        daemon::close(client, id).await?;
    }
    drop(ssh_chain);
    Ok(())
}

/// How long a chain may take until a round trip makes it through.
const CHAIN_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// tunneld's chain on its default host (one SSH connection): a remote
/// forward C → peer (sshd picks C), a local forward B → C and a local
/// forward A → B. Returns A; `ids` gets every tunnel opened, to close.
async fn tunneld_chain(
    client: &tunneld_tests::Client,
    peer_port: u16,
    cap: u32,
    ids: &mut Vec<String>,
) -> Result<u16> {
    let (id, c) = daemon::open_remote(client, "", peer_port, cap).await?;
    ids.push(id);
    let (id, b) = daemon::open_local(client, c, cap).await?;
    ids.push(id);
    let (id, a) = daemon::open_local(client, b, cap).await?;
    ids.push(id);
    Ok(a)
}

/// The rate-limited pull beside a busy sibling, `--slow-reps` times per
/// contender through the `-L` forwards of the rows above (`local`), so
/// tunneld's pull and siblings share its default host's SSH connection.
/// Every failure is a failed cell.
async fn slow_rows(o: &Options, report: &mut Report, local: &[Lane; 2]) {
    let rate = o.slow_rate as f64 * MB;
    let pull_secs = o.slow_bytes as f64 / rate;
    let limit = load::TIMEOUT_FLOOR * 2 + Duration::from_secs_f64(pull_secs * 2.0);
    for rep in 0..o.slow_reps {
        let mut order = *local;
        if rep % 2 == 1 {
            order.reverse();
        }
        for p in order {
            let who = p.who;
            progress(format!(
                "rep {}/{}: pull {} MiB at {} MB/s beside a busy sibling through {who:?} \
                 (~{pull_secs:.1} s)",
                rep + 1,
                o.slow_reps,
                o.slow_bytes >> 20,
                o.slow_rate
            ));
            let what = format!("slow pull through {who:?}");
            let r = match bounded(
                &what,
                limit,
                load::paced_pull_beside_siblings(p.port, o.slow_bytes, rate),
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    progress(format!("  {who:?} failed: {e:#}"));
                    report.fail("slow.got", who, &e);
                    continue;
                }
            };
            report.add("slow.got", who, r.got as f64 / MIB);
            let p99 = r
                .sibling
                .as_ref()
                .ok()
                .filter(|ms| !ms.is_empty())
                .map(|ms| (ms.len(), report::percentile(ms, 99.0)));
            progress(format!(
                "  {who:?}: {:.2} MiB in {:.1} s; busy sibling: {}",
                r.got as f64 / MIB,
                r.secs,
                p99.map_or("no round trip".into(), |(n, p)| format!(
                    "{n} round trips, p99 {p:.3} ms"
                ))
            ));
            // The sibling's p99 over a pull cut short is not comparable.
            let completed = r.error.is_none();
            match r.error {
                None => report.add("slow.secs", who, r.secs),
                Some(e) => {
                    let e = e.context(format!("slow pull through {who:?}"));
                    progress(format!("  {who:?} failed: {e:#}"));
                    report.fail("slow.got", who, &e);
                }
            }
            match (r.sibling, p99) {
                (Err(e), _) => {
                    let e = e.context(format!("siblings of the slow pull through {who:?}"));
                    progress(format!("  {who:?} failed: {e:#}"));
                    report.fail("slow.rtt99", who, &e);
                }
                (Ok(_), Some((_, p))) if completed => report.add("slow.rtt99", who, p),
                (Ok(_), _) => {}
            }
        }
    }
}

/// Opens `--idle` connections through `port`, each completing a round
/// trip, and returns the RSS of `pid` then (MB) and its growth per
/// connection (KB); closes them and waits until `pid` has closed its ends.
async fn idle_rss(o: &Options, port: u16, pid: u32) -> Result<(f64, f64)> {
    let fds_before = fds::count(pid)?;
    let before = procfs::memory(pid)?.rss;
    let t0 = Instant::now();
    let conns = bounded(
        "opening idle connections",
        load::TIMEOUT_FLOOR * 5,
        load::open_idle(port, o.idle),
    )
    .await?;
    let opened = t0.elapsed();
    let with = procfs::memory(pid)?.rss;
    progress(format!(
        "  {} connections open in {opened:.1?}; RSS {:.1} MB -> {:.1} MB",
        conns.len(),
        before as f64 / MB,
        with as f64 / MB
    ));
    drop(conns);
    fds::wait_at_most(pid, fds_before + 16, DRAIN_TIMEOUT).await?;
    let per = with.saturating_sub(before) as f64 / o.idle.max(1) as f64 / 1e3;
    Ok((with as f64 / MB, per))
}

fn declare_rows(o: &Options) -> Report {
    use Better::{Higher, Lower};
    let mut r = Report::default();
    for (kind, flag, first) in [("local", "-L", true), ("remote", "-R", false)] {
        // The issue's targets are stated against ssh -L.
        let t = |target: Target| first.then_some(target);
        let k = |row: &str| format!("{kind}.{row}");
        r.declare(
            &k("push"),
            format!("push, 1 stream, {flag}"),
            "MB/s",
            Higher,
            t(Target::RatioAtLeast(1.15)),
        );
        r.declare(
            &k("pull"),
            format!("pull, 1 stream, {flag}"),
            "MB/s",
            Higher,
            t(Target::RatioAtLeast(1.0)),
        );
        r.declare(
            &k("agg16"),
            format!("pull, 16 streams aggregate, {flag}"),
            "MB/s",
            Higher,
            None,
        );
        r.declare(
            &k("agg100"),
            format!("pull, 100 streams aggregate, {flag}"),
            "MB/s",
            Higher,
            t(Target::RatioAtLeast(1.0)),
        );
        r.declare(
            &k("setup50"),
            format!("connect + 64 B round trip p50, {flag}"),
            "ms",
            Lower,
            t(Target::RatioAtMost(1.0)),
        );
        r.declare(
            &k("setup99"),
            format!("connect + 64 B round trip p99, {flag}"),
            "ms",
            Lower,
            None,
        );
        r.declare(
            &k("cpu"),
            format!("client CPU per GiB (push+pull), {flag}"),
            "s/GiB",
            Lower,
            t(Target::RatioAtMost(1.0)),
        );
        r.declare(
            &k("sshdcpu"),
            format!("sshd CPU per GiB serving it, {flag}"),
            "s/GiB",
            Lower,
            None,
        );
    }
    r.declare(
        "rss.now",
        "client RSS after the rows above (ssh: -L + -R)",
        "MB",
        Lower,
        None,
    );
    r.declare(
        "rss.peak",
        "client peak RSS, VmHWM (ssh: -L + -R)",
        "MB",
        Lower,
        None,
    );
    r.declare(
        "rss.end",
        "tunneld RSS after the Exec and control rows",
        "MB",
        Lower,
        None,
    );
    r.declare(
        "exec.mbps",
        "Exec `cat` stream (ssh: `ssh host cat`)",
        "MB/s",
        Higher,
        None,
    );
    r.declare(
        "exec.first",
        "Exec first byte (ssh: incl. connect + auth)",
        "ms",
        Lower,
        None,
    );
    r.declare("exec.cpu", "client CPU per GiB, Exec", "s/GiB", Lower, None);
    r.declare(
        "exec.stdin.mbps",
        "stdin to `cat > /dev/null`, spawn to exit (tunneld: `tunnelctl exec`; ssh: `ssh host`)",
        "MB/s",
        Higher,
        None,
    );
    r.note(
        "exec.stdin.mbps",
        "with the rows below: the `--mib` MiB file of the `cat` rows on the client's stdin, \
         `tunnelctl --addr API exec -- 'cat > /dev/null'` (the ExecStream RPC) against `ssh \
         host 'cat > /dev/null'`. Nothing comes back to time, so MB/s is bytes over the wall \
         time from spawn to exit: it includes ssh's connection, key exchange and \
         authentication, and tunnelctl's start, gRPC connection and tunneld's Exec start \
         (a pooled SSH connection); the empty-stdin row is that fixed cost. Both must exit \
         0 having read the whole file. CPU: ssh's process against tunnelctl's plus tunneld's \
         over the run (ssh does both jobs in one process), each read once the client exited.",
    );
    r.declare(
        "exec.stdin.empty",
        "`cat > /dev/null` with empty stdin, spawn to exit (the fixed cost in the row above)",
        "ms",
        Lower,
        None,
    );
    r.declare(
        "exec.stdin.cpu",
        "client CPU per GiB, stdin (tunneld: tunnelctl + tunneld)",
        "s/GiB",
        Lower,
        None,
    );
    r.declare(
        "exec.stdin.ctlcpu",
        "client CPU per GiB, stdin: tunnelctl alone",
        "s/GiB",
        Lower,
        None,
    );
    r.declare(
        "exec.stdin.dcpu",
        "client CPU per GiB, stdin: tunneld alone",
        "s/GiB",
        Lower,
        None,
    );
    r.declare("ctl.open50", "OpenLocalForward p50", "ms", Lower, None);
    r.declare("ctl.open99", "OpenLocalForward p99", "ms", Lower, None);
    r.declare(
        "ctl.list50",
        format!("List p50, {} tunnels open", o.tunnels),
        "ms",
        Lower,
        None,
    );
    r.declare(
        "ctl.list99",
        format!("List p99, {} tunnels open", o.tunnels),
        "ms",
        Lower,
        Some(Target::Below(5.0)),
    );
    r.declare(
        "chain.push",
        "push, 1 stream, 3-hop chain (-L → -L → -R, one SSH connection)",
        "MB/s",
        Higher,
        None,
    );
    r.note(
        "chain.push",
        "with the pull row below: ssh is ONE `ssh -N -R C:127.0.0.1:PEER -L B:127.0.0.1:C \
         -L A:127.0.0.1:B` (OpenSSH's regress/forwarding.sh), tunneld a remote forward to \
         the peer and two local forwards on its default host; client → A → B → C → peer, \
         so every byte crosses the one SSH connection three times. `--mib` MiB per \
         transfer, `--reps` repetitions.",
    );
    r.declare(
        "chain.pull",
        "pull, 1 stream, 3-hop chain (-L → -L → -R, one SSH connection)",
        "MB/s",
        Higher,
        None,
    );
    let slow = format!("pull at {} MB/s beside a busy sibling, -L", o.slow_rate);
    r.declare(
        "slow.got",
        format!("{slow}: MiB arrived (of {})", o.slow_bytes >> 20),
        "MiB",
        Higher,
        None,
    );
    r.note(
        "slow.got",
        format!(
            "with the two rows below: {} repetition(s) (`--slow-reps`, default 1, not `--reps`: \
             each pull takes --slow-mib / --slow-rate = {:.1} s per contender). The row is \
             about completion, not speed. Same `-L` forwards as the rows above (tunneld: its \
             default host), so on one SSH connection per contender: the pull reads up to 256 \
             KiB, then waits until bytes / rate seconds have passed; beside it one connection \
             does 64 B echo round trips back to back (their p99 is the sibling row) and one \
             idle connection must still answer a round trip at the end. A pull that gets \
             fewer bytes (reset, early close, 30 s stall) fails the row; the cell then shows \
             how many MiB arrived, and the time and p99 rows have no sample for it.",
            o.slow_reps,
            o.slow_bytes as f64 / (o.slow_rate as f64 * MB)
        ),
    );
    r.declare(
        "slow.secs",
        format!("{slow}: time to complete"),
        "s",
        Lower,
        None,
    );
    r.declare(
        "slow.rtt99",
        format!("{slow}: sibling's echo round trip p99"),
        "ms",
        Lower,
        None,
    );
    r.declare(
        "idle.rss",
        format!("RSS with {} idle connections, -L, fresh process", o.idle),
        "MB",
        Lower,
        Some(Target::Below(200.0)),
    );
    r.declare(
        "idle.per",
        "RSS growth per idle connection, -L",
        "KB",
        Lower,
        None,
    );
    r
}

fn print_report(
    o: &Options,
    machine: &[(String, String)],
    ciphers: &[procfs::Negotiated],
    report: &Report,
) {
    println!("## tunneld vs OpenSSH ssh, one sshd on loopback\n");
    println!("command: `{}`\n", command_line());
    for (k, v) in machine {
        println!("- {k}: {v}");
    }
    println!("- run: {}", o.describe());
    match (&o.cipher, ciphers.is_empty()) {
        (_, true) => println!(
            "- negotiated ciphers: not in sshd's log (LogLevel {}; DEBUG1 logs them)",
            o.sshd_log_level
        ),
        (c, false) => {
            println!(
                "- sshd offers {}; negotiated, from sshd's log:",
                c.as_deref()
                    .map_or("its default cipher list".into(), |c| format!("only {c}"))
            );
            for (sw, c2s, s2c) in ciphers {
                println!("  - {sw}: client→server {c2s}, server→client {s2c}");
            }
        }
    }
    if o.smoke {
        println!("- SMOKE RUN: sizes too small for the numbers to mean anything");
    }
    println!(
        "\nCells: median (min–max) over {} repetition(s); ratio = tunneld median / ssh median; \
         `better` says which way is good.\n",
        o.reps
    );
    print!("{}", report.table());
    let notes = report.notes();
    if !notes.is_empty() {
        println!("\nNotes:\n");
        for n in notes {
            println!("- {n}");
        }
    }
    let failures = report.failures();
    if !failures.is_empty() {
        println!("\nFailed measurements:\n");
        for f in failures {
            println!("- {f}");
        }
    }
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut s = "cargo run --release -p tunneld-tests --bin bench".to_owned();
    if !args.is_empty() {
        s.push_str(" -- ");
        s.push_str(&args.join(" "));
    }
    s
}

//! tunneld's ssh_config resolution against OpenSSH's own: for each config
//! and destination, `ssh -G -F FILE [-l USER] [-p PORT] ALIAS` and
//! `ssh_config::resolve(…).to_ssh_g()` must print the same values for every
//! key tunneld uses. Needs the OpenSSH client (`ssh`); CI installs it
//! (scripts/ensure-deps.sh), and a missing `ssh` fails the test, never
//! skips it.
//!
//! `ssh -G` prints IdentityFile and CertificateFile unexpanded; their `~`
//! and `%` expansion is the same code as UserKnownHostsFile's and
//! IdentityAgent's, which it prints expanded, so the token cases put every
//! token in those.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use tunneld::config::ssh_config::{SshConfigContext, SshConfigError, SshConfigFiles, resolve};

/// The keys compared: the ones tunneld reads.
const KEYS: &[&str] = &[
    "hostname",
    "user",
    "port",
    "identityfile",
    "identitiesonly",
    "identityagent",
    "certificatefile",
    "proxyjump",
    "userknownhostsfile",
    "stricthostkeychecking",
    "serveraliveinterval",
    "serveralivecountmax",
    "connecttimeout",
    "ciphers",
];

/// An environment variable the `${…}` cases use, given to both sides.
const ENV_NAME: &str = "TUNNELD_ORACLE_DIR";

/// The context `ssh` itself works with: the passwd entry of this process
/// (not `$HOME`), gethostname(2), and `ENV_NAME`.
fn passwd_context() -> SshConfigContext {
    let uid = rustix::process::getuid().as_raw();
    let out = Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .output()
        .expect("running getent (libc-bin)");
    let entry = String::from_utf8(out.stdout).expect("passwd entry is UTF-8");
    let fields: Vec<&str> = entry.trim_end().split(':').collect();
    assert!(
        fields.len() >= 7,
        "no passwd entry for uid {uid}: {entry:?}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    let mut ctx = SshConfigContext::new(
        PathBuf::from(fields[5]),
        fields[0].to_string(),
        host.trim().to_string(),
        uid,
    );
    ctx.env.insert(ENV_NAME.into(), "/env/dir".into());
    ctx
}

/// Fails (never skips) without the OpenSSH client.
fn require_ssh() {
    let found = Command::new("ssh").arg("-V").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "the OpenSSH client `ssh` is needed for this test (apt-get install openssh-client; scripts/ensure-deps.sh installs it)"
    );
}

type Values = BTreeMap<String, Vec<String>>;

/// `ssh -G`'s values of `KEYS`, or its error output.
fn ssh_g(
    file: &Path,
    alias: &str,
    user: Option<&str>,
    port: Option<u16>,
) -> Result<Values, String> {
    let mut cmd = Command::new("ssh");
    cmd.arg("-G").arg("-F").arg(file);
    if let Some(u) = user {
        cmd.args(["-l", u]);
    }
    if let Some(p) = port {
        cmd.args(["-p", &p.to_string()]);
    }
    cmd.arg(alias).env(ENV_NAME, "/env/dir");
    let out = cmd.output().expect("running ssh -G");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut values = Values::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        let k = k.to_ascii_lowercase();
        if KEYS.contains(&k.as_str()) {
            values.entry(k).or_default().push(v.to_string());
        }
    }
    Ok(values)
}

/// One config and the destinations resolved through it.
struct Case {
    name: &'static str,
    /// `{dir}`: the case's temp dir; `{rel}`: a directory relative to
    /// `~/.ssh` (for relative includes).
    config: &'static str,
    /// Extra files: (path under `{dir}` or `{rel}`, contents).
    files: &'static [(&'static str, &'static str)],
    runs: &'static [(&'static str, Option<&'static str>, Option<u16>)],
}

const CASES: &[Case] = &[
    Case {
        name: "every key",
        config: "Host web web2\n  HostName %h.example.com\n  User deploy\n  Port 2222\n  IdentityFile ~/.ssh/id_%h_%r\n  IdentityFile {dir}/k/%p\n  IdentitiesOnly yes\n  IdentityAgent ~/agent.sock\n  CertificateFile ~/.ssh/cert-%r\n  CertificateFile {dir}/c2\n  ProxyJump jump@bastion:2200\n  UserKnownHostsFile {dir}/kh1 {dir}/kh2\n  StrictHostKeyChecking accept-new\n  ServerAliveInterval 15\n  ServerAliveCountMax 4\n  ConnectTimeout 1m\n  Ciphers aes256-gcm@openssh.com,aes128-ctr\n",
        files: &[],
        runs: &[
            ("web", None, None),
            ("web2", Some("other"), Some(22)),
            ("web3", None, None),
            ("WEB", None, None),
        ],
    },
    Case {
        name: "negation and wildcards",
        config: "Host * !bastion\n  User everyone\nHost web? !web9 db-*\n  Port 1001\nHost !*.corp *.example\n  HostName %h.x\nHost bastion\n  Port 1002\n",
        files: &[],
        runs: &[
            ("bastion", None, None),
            ("web1", None, None),
            ("web9", None, None),
            ("web10", None, None),
            ("db-1", None, None),
            ("a.example", None, None),
            ("a.corp", None, None),
        ],
    },
    Case {
        name: "first value wins",
        config: "Host *\n  ConnectTimeout none\n  ServerAliveInterval none\nHost a\n  Port 1\n  User first\n  ConnectTimeout 5\n  ServerAliveInterval 2h\n  StrictHostKeyChecking yes\n  IdentitiesOnly no\n  UserKnownHostsFile {dir}/first\nHost *\n  Port 2\n  User second\n  ConnectTimeout 9\n  StrictHostKeyChecking no\n  IdentitiesOnly yes\n  UserKnownHostsFile {dir}/second\n  IdentityFile {dir}/shared\n  Ciphers aes128-ctr\n  Ciphers aes256-ctr\n",
        files: &[],
        runs: &[
            ("a", None, None),
            ("b", None, None),
            ("a", Some("cli"), Some(3)),
        ],
    },
    Case {
        name: "include with a glob",
        config: "Host inc\n  Include {dir}/conf.d/*.conf\n  User after-include\nHost *\n  Include {dir}/conf.d/b.conf\n",
        files: &[
            ("conf.d/a.conf", "Port 3001\nHost other\n  User from-a\n"),
            (
                "conf.d/b.conf",
                "IdentityFile {dir}/from-b\nCertificateFile {dir}/cert-b\n",
            ),
            ("conf.d/c.txt", "Port 9\n"),
        ],
        runs: &[
            ("inc", None, None),
            ("other", None, None),
            ("nope", None, None),
        ],
    },
    Case {
        name: "include relative to ~/.ssh",
        config: "Include {rel}/*.conf\nHost rel\n  Port 4002\n",
        files: &[("{rel}/one.conf", "Host rel\n  Port 4001\n  User relative\n")],
        runs: &[("rel", None, None), ("x", None, None)],
    },
    Case {
        name: "match host and originalhost",
        config: "Host db\n  HostName %h.Internal\nMatch host db.internal\n  User host-matched\nMatch originalhost db\n  Port 5001\nMatch !host *.internal\n  Port 5002\nMatch host DB\n  IdentityFile {dir}/upper\nMatch all\n  ServerAliveCountMax 7\n",
        files: &[],
        runs: &[("db", None, None), ("web", None, None), ("DB", None, None)],
    },
    Case {
        name: "match user and localuser",
        config: "Match user bob\n  Port 6001\nMatch localuser {localuser}\n  IdentityFile {dir}/local\nMatch user alice,!bob originalhost h*\n  Port 6002\nHost *\n  User alice\nMatch user alice\n  ConnectTimeout 3\n",
        files: &[],
        runs: &[
            ("h1", None, None),
            ("h1", Some("bob"), None),
            ("x", Some("alice"), None),
            ("h2", Some("carol"), Some(7)),
        ],
    },
    Case {
        name: "tokens and tilde",
        config: "Host t\n  HostName T.Example.com\n  HostKeyAlias kalias\n  User tuser\n  Port 7001\n  UserKnownHostsFile {dir}/%C/%d/%h/%i/%k/%L/%l/%n/%p/%r/%u/%% ~/kh ${TUNNELD_ORACLE_DIR}/kh\n  IdentityAgent ~/agent-%h-%p\n  IdentityFile ~/.ssh/%h-%r\nHost u\n  UserKnownHostsFile ~/x/%n\n",
        files: &[],
        runs: &[
            ("t", None, None),
            ("t", Some("lu"), Some(7002)),
            ("u", None, None),
            ("U", None, None),
        ],
    },
    Case {
        name: "proxyjump forms",
        config: "Host p1\n  ProxyJump u@j1:2201,10.0.0.1\nHost p2\n  ProxyJump ssh://u@j2:2202\nHost p3\n  ProxyJump none\nHost p4\n  ProxyCommand none\n  ProxyJump blocked\nHost p5\n  ProxyJump [::1]:22,j5\nHost *\n  ProxyJump fallback\n",
        files: &[],
        runs: &[
            ("p1", None, None),
            ("p2", None, None),
            ("p3", None, None),
            ("p4", None, None),
            ("p5", None, None),
            ("p6", None, None),
        ],
    },
    Case {
        name: "ciphers",
        config: "Host c1\n  Ciphers +aes128-cbc,aes128-ctr\nHost c2\n  Ciphers -aes*-ctr,chacha*\nHost c3\n  Ciphers ^aes256-cbc,aes128-ctr\nHost c4\n  Ciphers aes256-cbc,aes128-cbc,aes256-cbc\n",
        files: &[],
        runs: &[
            ("c1", None, None),
            ("c2", None, None),
            ("c3", None, None),
            ("c4", None, None),
            ("c5", None, None),
        ],
    },
    Case {
        name: "strict host key checking",
        config: "Host s1\n  StrictHostKeyChecking yes\nHost s2\n  StrictHostKeyChecking off\nHost s3\n  StrictHostKeyChecking ASK\nHost s4\n  StrictHostKeyChecking true\nHost s5\n  StrictHostKeyChecking False\nHost s6\n  StrictHostKeyChecking accept-new\n",
        files: &[],
        runs: &[
            ("s1", None, None),
            ("s2", None, None),
            ("s3", None, None),
            ("s4", None, None),
            ("s5", None, None),
            ("s6", None, None),
            ("s7", None, None),
        ],
    },
    Case {
        name: "syntax: = forms, case, quotes, comments, unknown keys",
        config: "# comment\nIgnoreUnknown SomethingTunneldIgnores\nhost=q1 \"q 2\"\n  PORT=8001\n  user =  quoted  # trailing\n  identityFile \"{dir}/with space\"\n  Compression yes\n  SomethingTunneldIgnores 1\n  SERVERALIVECOUNTMAX\t9\n\tUserKnownHostsFile '{dir}/a b' {dir}/c\\ d\n",
        files: &[],
        runs: &[("q1", None, None), ("q", None, None)],
    },
    Case {
        name: "none values and defaults",
        config: "Host n1\n  IdentityFile none\n  UserKnownHostsFile none\n  IdentityAgent none\nHost n2\n  IdentityAgent SSH_AUTH_SOCK\nHost n3\n  ConnectTimeout 0\n  ServerAliveCountMax 0\n  ServerAliveInterval 0\n",
        files: &[],
        runs: &[
            ("n1", None, None),
            ("n2", None, None),
            ("n3", None, None),
            ("plain", None, None),
            ("plain", Some("root2"), Some(65535)),
        ],
    },
];

/// Configs `ssh` rejects; tunneld must reject them too.
const REJECTED: &[&str] = &[
    "Host a\n  Port 0\n",
    "Host b\n  Port 1 2\n",
    "Host a\n  Ciphers aes*\n",
    "Host a\n  Ciphers +bogus\n",
    "Host a\n  StrictHostKeyChecking maybe\n",
    "Host a\n  HostName %p\n",
    "Host a\n  UserKnownHostsFile /x/%z\n",
    "Host a\n  ProxyJump a, b\n",
    "Match all host a\n  Port 1\n",
    "Match host\n  Port 1\n",
    "Host a\n  ConnectTimeout 5x\n",
    "Host a\n  IdentityFile \"unterminated\n",
];

/// The case's text with its placeholders filled in.
fn fill(text: &str, dir: &Path, rel: &str, ctx: &SshConfigContext) -> String {
    text.replace("{dir}", &dir.display().to_string())
        .replace("{rel}", rel)
        .replace("{localuser}", &ctx.local_user)
}

/// A temp dir under `~/.ssh` (the passwd home's) for relative includes;
/// removes `~/.ssh` again if it made it and it is empty.
struct DotSshDir {
    dir: Option<tempfile::TempDir>,
    made_dot_ssh: Option<PathBuf>,
}

impl DotSshDir {
    fn new(home: &Path) -> Self {
        let dot_ssh = home.join(".ssh");
        let made = !dot_ssh.exists();
        std::fs::create_dir_all(&dot_ssh).expect("creating ~/.ssh");
        let dir = tempfile::Builder::new()
            .prefix("tunneld-oracle-")
            .tempdir_in(&dot_ssh)
            .expect("temp dir in ~/.ssh");
        DotSshDir {
            dir: Some(dir),
            made_dot_ssh: made.then_some(dot_ssh),
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for DotSshDir {
    fn drop(&mut self) {
        drop(self.dir.take());
        if let Some(d) = &self.made_dot_ssh {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn resolution_matches_ssh_g() {
    require_ssh();
    let ctx = passwd_context();
    let dot_ssh = DotSshDir::new(&ctx.home);
    let rel = dot_ssh
        .path()
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    let mut failures = Vec::new();
    let mut compared = 0;
    for case in CASES {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in case.files {
            let path = match path.strip_prefix("{rel}/") {
                Some(p) => dot_ssh.path().join(p),
                None => dir.path().join(path),
            };
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, fill(text, dir.path(), &rel, &ctx)).expect("write include");
        }
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, fill(case.config, dir.path(), &rel, &ctx)).expect("write config");
        for &(alias, user, port) in case.runs {
            let want = ssh_g(&cfg, alias, user, port)
                .unwrap_or_else(|e| panic!("{}: ssh -G {alias} failed: {e}", case.name));
            let ours = resolve(alias, user, port, &SshConfigFiles::File(cfg.clone()), &ctx)
                .unwrap_or_else(|e| panic!("{}: resolve {alias} failed: {e}", case.name));
            let mut got = Values::new();
            for (k, v) in ours.to_ssh_g(&ctx) {
                got.entry(k).or_default().push(v);
            }
            for key in KEYS {
                compared += 1;
                if want.get(*key) != got.get(*key) {
                    failures.push(format!(
                        "{} / {alias} -l {user:?} -p {port:?}: {key}: ssh -G {:?}, tunneld {:?}",
                        case.name,
                        want.get(*key),
                        got.get(*key)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        compared >= 10 * KEYS.len(),
        "compared too little: {compared}"
    );
}

#[test]
fn no_config_is_ssh_f_none() {
    require_ssh();
    let ctx = passwd_context();
    let out = Command::new("ssh")
        .args(["-G", "-F", "none", "somewhere"])
        .output()
        .expect("running ssh -G");
    assert!(out.status.success());
    let want: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .filter(|(k, _)| KEYS.contains(&k.as_str()))
        .collect();
    let ours = resolve("somewhere", None, None, &SshConfigFiles::None, &ctx).expect("resolves");
    let mut got = ours.to_ssh_g(&ctx);
    let mut want = want;
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn configs_ssh_rejects_are_rejected() {
    require_ssh();
    let ctx = passwd_context();
    for text in REJECTED {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, text).expect("write config");
        assert!(
            ssh_g(&cfg, "a", None, None).is_err(),
            "ssh accepts {text:?}"
        );
        let ours = resolve("a", None, None, &SshConfigFiles::File(cfg), &ctx);
        assert!(ours.is_err(), "tunneld accepts {text:?}: {ours:?}");
    }
}

#[test]
fn refused_match_criteria_name_file_line_and_criterion() {
    let ctx = passwd_context();
    for criterion in [
        "exec true",
        "canonical all",
        "final all",
        "localnetwork 10.0.0.0/8",
        "tagged x",
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            format!("Host *\n  Port 2\nMatch {criterion}\n  Port 3\n"),
        )
        .expect("write");
        let err = resolve("a", None, None, &SshConfigFiles::File(cfg.clone()), &ctx)
            .expect_err("refused");
        let name = criterion.split(' ').next().unwrap_or_default();
        assert!(matches!(err, SshConfigError::Line { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "{} line 3: Match criterion '{name}' is not supported",
                cfg.display()
            )),
            "{text}"
        );
    }
}

/// The identity and certificate files `ssh -v` says it loads (`ssh -G`
/// prints them unexpanded; `ssh` expands them once connected, before its
/// banner, so a listener that reads the banner and closes is enough).
fn ssh_loaded_files(file: &Path, alias: &str, user: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut cmd = Command::new("ssh");
    cmd.args(["-v", "-F"]).arg(file);
    cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]);
    if let Some(u) = user {
        cmd.args(["-l", u]);
    }
    cmd.arg(alias)
        .arg("true")
        .env(ENV_NAME, "/env/dir")
        .stdin(std::process::Stdio::null());
    let out = cmd.output().expect("running ssh -v");
    let err = String::from_utf8_lossy(&out.stderr);
    let field = |prefix: &str| -> Vec<String> {
        err.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|rest| rest.rsplit_once(" type ").map(|(path, _)| path.to_string()))
            .collect()
    };
    let identities = field("debug1: identity file ");
    let certificates = field("debug1: certificate file ");
    assert!(
        !identities.is_empty(),
        "ssh -v listed no identity file:\n{err}"
    );
    (identities, certificates)
}

#[test]
fn identity_and_certificate_files_expand_as_ssh_loads_them() {
    use std::io::Read;

    require_ssh();
    let ctx = passwd_context();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = listener.local_addr().expect("its address").port();
    let runs: &[(&str, Option<&str>)] = &[("k1", None), ("k1", Some("cli")), ("K2", None)];
    let server = std::thread::spawn(move || {
        for _ in 0..runs.len() {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            // Read the client's banner line, then hang up.
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut byte = [0u8; 1];
            while conn.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {}
        }
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("config");
    let text = format!(
        "Host k1 K2\n  HostName 127.0.0.1\n  Port {port}\n  User kuser\n  UserKnownHostsFile /dev/null\n  \
         IdentityFile ~/.ssh/id_%h_%r_%p\n  IdentityFile {d}/%C/%d/%i/%k/%L/%l/%n/%u/%%\n  \
         IdentityFile ${{{ENV_NAME}}}/k\n  IdentityFile ~/.ssh/id_%h_%r_%p\n  \
         CertificateFile {d}/cert-%n-%r\n  CertificateFile ~/c\nHost K2\n  HostKeyAlias kalias\n",
        d = dir.path().display()
    );
    std::fs::write(&cfg, text).expect("write config");
    for &(alias, user) in runs {
        let (identities, certificates) = ssh_loaded_files(&cfg, alias, user);
        let ours =
            resolve(alias, user, None, &SshConfigFiles::File(cfg.clone()), &ctx).expect("resolves");
        let show =
            |v: &[PathBuf]| -> Vec<String> { v.iter().map(|p| p.display().to_string()).collect() };
        assert_eq!(show(&ours.identity_files), identities, "{alias} {user:?}");
        assert_eq!(
            show(&ours.certificate_files),
            certificates,
            "{alias} {user:?}"
        );
    }
    // Not joined: if an ssh run never connected, the thread would wait in
    // accept forever; it ends with the test process.
    drop(server);
}

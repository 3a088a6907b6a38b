//! Resolution over whole files: blocks, first value, includes, tokens,
//! refusals and bounds.

use std::{fs, path::Path};

use super::*;

fn ctx(home: &Path) -> SshConfigContext {
    let mut c = SshConfigContext::new(home.to_path_buf(), "me".into(), "box.lan".into(), 1000);
    c.system_dir = home.join("etc");
    c
}

/// A temp dir with a config at `cfg` holding `text`.
fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg");
    fs::write(&cfg, text).expect("write config");
    (dir, cfg)
}

fn res(text: &str, alias: &str) -> Result<SshConfigHost, SshConfigError> {
    let (dir, cfg) = setup(text);
    resolve(
        alias,
        None,
        None,
        &SshConfigFiles::File(cfg),
        &ctx(dir.path()),
    )
}

#[test]
fn first_value_wins_and_files_accumulate() {
    let h = res(
        "Host web\n  Port 2200\n  IdentityFile /k/one\nHost *\n  Port 22\n  User all\n  IdentityFile /k/two\n",
        "web",
    )
    .expect("resolves");
    assert_eq!(h.port, Some(2200));
    assert_eq!(h.user.as_deref(), Some("all"));
    assert_eq!(
        h.identity_files,
        vec![PathBuf::from("/k/one"), PathBuf::from("/k/two")]
    );
    let other = res("Host web\n  Port 2200\n", "db").expect("resolves");
    assert_eq!(other.port, None);
}

#[test]
fn overrides_come_first_and_match_user_sees_them() {
    let (dir, cfg) = setup("Match user bob\n  Port 7\nHost *\n  User alice\n");
    let files = SshConfigFiles::File(cfg);
    let h = resolve("x", Some("bob"), None, &files, &ctx(dir.path())).expect("resolves");
    assert_eq!((h.user.as_deref(), h.port), (Some("bob"), Some(7)));
    let h = resolve("x", None, Some(9), &files, &ctx(dir.path())).expect("resolves");
    assert_eq!((h.user.as_deref(), h.port), (Some("alice"), Some(9)));
}

#[test]
fn match_host_sees_hostname_and_originalhost_the_alias() {
    let h = res(
        "Host db\n  HostName %h.internal\nMatch host db.internal\n  User ops\nMatch originalhost db\n  Port 5\n",
        "db",
    )
    .expect("resolves");
    assert_eq!(h.hostname.as_deref(), Some("db.internal"));
    assert_eq!(h.user.as_deref(), Some("ops"));
    assert_eq!(h.port, Some(5));
}

#[test]
fn tokens_use_final_values() {
    let (dir, cfg) = setup(
        "Host x\n  HostName X.Example\n  IdentityFile ~/.ssh/%h_%r_%p_%n_%u_%L_%l_%i_%%\n  UserKnownHostsFile %d/kh ~/kh2\n  Port 2022\n",
    );
    let c = ctx(dir.path());
    let h = resolve("x", None, None, &SshConfigFiles::File(cfg), &c).expect("resolves");
    let home = dir.path().display();
    assert_eq!(
        h.identity_files,
        vec![PathBuf::from(format!(
            "{home}/.ssh/x.example_me_2022_x_me_box_box.lan_1000_%"
        ))]
    );
    assert_eq!(
        h.user_known_hosts_files,
        Some(vec![
            PathBuf::from(format!("{home}/kh")),
            PathBuf::from(format!("{home}/kh2"))
        ])
    );
    let g = h.to_ssh_g(&c);
    assert!(g.contains(&(
        "identityfile".into(),
        "~/.ssh/%h_%r_%p_%n_%u_%L_%l_%i_%%".into()
    )));
}

#[test]
fn includes_are_relative_to_dot_ssh_and_inherit_the_block() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ssh = dir.path().join(".ssh");
    fs::create_dir_all(ssh.join("conf.d")).expect("mkdir");
    fs::write(ssh.join("conf.d/b.conf"), "Port 2\n").expect("write");
    fs::write(
        ssh.join("conf.d/a.conf"),
        "User inc\nHost other\n  Port 9\n",
    )
    .expect("write");
    fs::write(
        ssh.join("config"),
        "Host web\n  Include conf.d/*.conf\n  HostName after.include\nHost db\n  Include conf.d/*.conf\n",
    )
    .expect("write");
    let c = ctx(dir.path());
    let web = resolve("web", None, None, &SshConfigFiles::Default, &c).expect("resolves");
    // a.conf's `Host other` ends its block there only: b.conf starts in
    // the includer's block again, and so do the includer's next lines.
    assert_eq!(web.user.as_deref(), Some("inc"));
    assert_eq!(web.port, Some(2));
    assert_eq!(web.hostname.as_deref(), Some("after.include"));
    let none = resolve("zzz", None, None, &SshConfigFiles::Default, &c).expect("resolves");
    assert_eq!(none.user, None);
    assert_eq!(
        concrete_aliases(&SshConfigFiles::Default, &c).expect("reads"),
        vec!["web", "other", "db"]
    );
}

#[test]
fn system_file_includes_are_relative_to_its_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc");
    fs::create_dir_all(&etc).expect("mkdir");
    fs::write(etc.join("ssh_config"), "Include extra\n").expect("write");
    fs::write(etc.join("extra"), "Port 44\n").expect("write");
    let c = ctx(dir.path());
    let h = resolve("a", None, None, &SshConfigFiles::Default, &c).expect("resolves");
    assert_eq!(h.port, Some(44));
    fs::write(etc.join("ssh_config"), "Include ~/x\n").expect("write");
    assert!(resolve("a", None, None, &SshConfigFiles::Default, &c).is_err());
}

#[test]
fn refusals_name_file_line_and_what_to_change() {
    let err = res("Host *\n  Port 2\nMatch exec \"true\"\n  Port 3\n", "a")
        .expect_err("exec refused")
        .to_string();
    assert!(
        err.contains("cfg line 3: Match criterion 'exec' is not supported"),
        "{err}"
    );
    let err = res("Host a\n  ProxyCommand nc %h %p\n", "a")
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("cfg line 2: ProxyCommand is not supported"),
        "{err}"
    );
    // A ProxyCommand that does not apply, or comes after a ProxyJump, is fine.
    assert!(res("Host b\n  ProxyCommand nc %h %p\n", "a").is_ok());
    let h = res("Host a\n  ProxyJump j\n  ProxyCommand nc\n", "a").expect("resolves");
    assert_eq!(h.proxy_jump.as_deref(), Some("j"));
    assert!(res("Host a\n CanonicalizeHostname yes\n", "a").is_err());
    assert!(res("Host a\n CanonicalizeHostname no\n", "a").is_ok());
    // Bad values are errors in blocks that do not apply too, as in ssh.
    assert!(res("Host other\n  Port 0\n", "a").is_err());
    assert!(res("Host a\n  HostName %p\n", "a").is_err());
    assert!(res("Host a\n  IdentityFile /x/%z\n", "a").is_err());
}

#[test]
fn missing_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let c = ctx(dir.path());
    let missing = SshConfigFiles::File(dir.path().join("nope"));
    assert!(matches!(
        resolve("a", None, None, &missing, &c),
        Err(SshConfigError::Missing(_))
    ));
    let h = resolve("a", None, None, &SshConfigFiles::Default, &c).expect("no files is fine");
    assert_eq!(h.hostname, None);
    assert!(resolve("a", None, None, &SshConfigFiles::None, &c).is_ok());
    assert_eq!(SshConfigFiles::from_arg("none"), SshConfigFiles::None);
}

#[test]
fn hostile_files_are_bounded() {
    // A file that includes itself twice: depth and file count stop it.
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("cfg");
    let text = format!("Include {0}\nInclude {0}\n", cfg.display());
    fs::write(&cfg, text).expect("write");
    let err = resolve(
        "a",
        None,
        None,
        &SshConfigFiles::File(cfg),
        &ctx(dir.path()),
    )
    .expect_err("bounded");
    assert!(matches!(err, SshConfigError::Limit { .. }), "{err}");
    let long = format!("Host {}\n", "a".repeat(parse::MAX_LINE_BYTES + 1));
    assert!(matches!(res(&long, "a"), Err(SshConfigError::Limit { .. })));
    assert!(res("Host a\n\u{0}\u{ff}\n", "a").is_err());
    fs::write(dir.path().join("bin"), b"Host a\n\xff\n").expect("write");
    let err = resolve(
        "a",
        None,
        None,
        &SshConfigFiles::File(dir.path().join("bin")),
        &ctx(dir.path()),
    )
    .expect_err("not UTF-8");
    assert!(
        err.to_string().contains("line 2: line is not valid UTF-8"),
        "{err}"
    );
    assert!(resolve("", None, None, &SshConfigFiles::None, &ctx(dir.path())).is_err());
}

#[test]
fn group_writable_includes_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let inc = dir.path().join("inc");
    fs::write(&inc, "Port 3\n").expect("write");
    fs::set_permissions(&inc, fs::Permissions::from_mode(0o664)).expect("chmod");
    let cfg = dir.path().join("cfg");
    fs::write(&cfg, format!("Include {}\n", inc.display())).expect("write");
    let mut c = ctx(dir.path());
    c.uid = rustix::process::getuid().as_raw();
    let err = resolve("a", None, None, &SshConfigFiles::File(cfg), &c).expect_err("refused");
    assert!(matches!(err, SshConfigError::Permissions(_)), "{err}");
}

#[test]
fn fifos_and_devices_are_not_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    for target in [
        fifo.display().to_string(),
        "/dev/zero".into(),
        "/dev/null".into(),
    ] {
        let (d, cfg) = setup(&format!("Include {target}\n"));
        let err = resolve("a", None, None, &SshConfigFiles::File(cfg), &ctx(d.path()))
            .expect_err("not a plain file");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    fn line() -> impl Strategy<Value = String> {
        let keyword = prop_oneof![
            Just("Host"),
            Just("Match"),
            Just("HostName"),
            Just("User"),
            Just("Port"),
            Just("IdentityFile"),
            Just("CertificateFile"),
            Just("IdentityAgent"),
            Just("ProxyJump"),
            Just("ProxyCommand"),
            Just("UserKnownHostsFile"),
            Just("StrictHostKeyChecking"),
            Just("ServerAliveInterval"),
            Just("ConnectTimeout"),
            Just("Ciphers"),
            Just("Include"),
            Just("host="),
            Just("  # "),
        ];
        let value = prop_oneof![
            "[ -~]{0,40}",
            "[a-z%~${}!*?,@:\\[\\]\"' =#0-9.-]{0,30}",
            any::<String>(),
        ];
        (keyword, value).prop_map(|(k, v)| format!("{k} {v}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn resolve_never_panics(lines in prop::collection::vec(line(), 0..12), alias in "[a-zA-Z0-9.*%-]{0,12}") {
            let dir = tempfile::tempdir().expect("temp dir");
            let cfg = dir.path().join("cfg");
            // Includes stay inside the temp dir: relative ones go to its .ssh.
            let text = lines.join("\n").replace("Include /", "Include ");
            fs::write(&cfg, text).expect("write");
            let c = ctx(dir.path());
            let files = SshConfigFiles::File(cfg);
            if let Ok(h) = resolve(&alias, Some("u"), None, &files, &c) {
                let _ = h.to_ssh_g(&c);
            }
            let _ = concrete_aliases(&files, &c);
        }
    }
}

//! The resolution itself: the files walked top to bottom, the first value
//! of each key kept (`IdentityFile` and `CertificateFile` accumulate), then
//! `HostName`'s `%h`, OpenSSH's defaults for `%r`/`%p`, and the paths'
//! `~` and `%` tokens expanded with the final host, user and port.

use std::path::PathBuf;

use sha1::{Digest, Sha1};

use super::{
    SshConfigContext,
    directive::{self, Directive, MAX_IDENTITY_FILES},
    error::{Origin, SshConfigError},
    host::{DEFAULT_PORT, SshConfigHost, StrictHostKeyChecking},
    matching::{MatchState, host_line, match_line},
    parse::{ConfigFile, Item},
    tokens::{expand_percent, expand_tilde},
};

/// A value and the line it came from (for errors found once the final
/// values are known).
type Sourced<T> = (T, Origin);

/// The proxy a config names first; `ssh` keeps only the first of the two.
enum Proxy {
    Jump(String),
    Command(Sourced<String>),
}

/// The options collected so far, as OpenSSH's `Options` before
/// `fill_default_options`.
#[derive(Default)]
struct Options {
    hostname: Option<Sourced<String>>,
    user: Option<String>,
    port: Option<u16>,
    identity_files: Vec<Sourced<String>>,
    certificate_files: Vec<Sourced<String>>,
    identities_only: Option<bool>,
    identity_agent: Option<Sourced<String>>,
    proxy: Option<Proxy>,
    user_known_hosts_files: Option<Sourced<Vec<String>>>,
    strict_host_key_checking: Option<StrictHostKeyChecking>,
    server_alive_interval: Option<u32>,
    server_alive_count_max: Option<u32>,
    connect_timeout: Option<u32>,
    ciphers: Option<String>,
    host_key_alias: Option<String>,
    canonicalize: Option<Sourced<bool>>,
}

/// Walks the files for `alias` and returns what they say.
pub(super) fn resolve_files(
    files: &[ConfigFile],
    alias: &str,
    user_override: Option<&str>,
    port_override: Option<u16>,
    ctx: &SshConfigContext,
) -> Result<SshConfigHost, SshConfigError> {
    let mut walker = Walker {
        alias,
        ctx,
        o: Options {
            user: user_override.map(String::from),
            port: port_override,
            ..Options::default()
        },
    };
    for file in files {
        walker.file(file, false)?;
    }
    walker.finish()
}

struct Walker<'a> {
    alias: &'a str,
    ctx: &'a SshConfigContext,
    o: Options,
}

impl Walker<'_> {
    /// One file; `never_match` for files included from an inactive block,
    /// whose lines are checked but never applied (OpenSSH's NEVERMATCH).
    fn file(&mut self, file: &ConfigFile, never_match: bool) -> Result<(), SshConfigError> {
        let mut active = !never_match;
        for item in &file.items {
            let line = match item {
                Item::Include(included) => {
                    for f in included {
                        self.file(f, !active)?;
                    }
                    continue;
                }
                Item::Line(line) => line,
            };
            match line.keyword.as_str() {
                "host" => active = host_line(&line.args, self.alias, &line.at)? && !never_match,
                "match" => {
                    let host = self.hostname_for_match()?;
                    let user = self.o.user.as_deref().unwrap_or(&self.ctx.local_user);
                    let state = MatchState {
                        host: &host,
                        original_host: self.alias,
                        user,
                        local_user: &self.ctx.local_user,
                    };
                    active = match_line(&line.args, &state, &line.at)? && !never_match;
                }
                _ => {
                    if let Some(d) = directive::parse(line)?
                        && active
                    {
                        self.apply(d, &line.at)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// What `Match host` compares with: `HostName` so far with `%h`
    /// substituted, else the alias (both compared lowercased).
    fn hostname_for_match(&self) -> Result<String, SshConfigError> {
        match &self.o.hostname {
            Some((h, at)) => expand_percent(h, &[('h', self.alias)], None).map_err(|m| {
                SshConfigError::line(at, format!("HostName: {m} (only %h and %% are allowed)"))
            }),
            None => Ok(self.alias.to_string()),
        }
    }

    fn apply(&mut self, d: Directive, at: &Origin) -> Result<(), SshConfigError> {
        let o = &mut self.o;
        let here = || at.clone();
        let push = |list: &mut Vec<Sourced<String>>, v: String, kw: &str| {
            if list.len() >= MAX_IDENTITY_FILES {
                return Err(SshConfigError::limit(
                    at,
                    format!("more than {MAX_IDENTITY_FILES} {kw} lines apply"),
                ));
            }
            // ssh keeps one copy of a file named twice.
            if !list.iter().any(|(seen, _)| *seen == v) {
                list.push((v, at.clone()));
            }
            Ok(())
        };
        match d {
            Directive::HostName(v) => {
                o.hostname.get_or_insert((v, here()));
            }
            Directive::User(v) => {
                o.user.get_or_insert(v);
            }
            Directive::Port(v) => {
                o.port.get_or_insert(v);
            }
            Directive::IdentityFile(v) => push(&mut o.identity_files, v, "IdentityFile")?,
            Directive::CertificateFile(v) => {
                push(&mut o.certificate_files, v, "CertificateFile")?;
            }
            Directive::IdentitiesOnly(v) => {
                o.identities_only.get_or_insert(v);
            }
            Directive::IdentityAgent(v) => {
                o.identity_agent.get_or_insert((v, here()));
            }
            Directive::ProxyJump(v) => {
                o.proxy.get_or_insert(Proxy::Jump(v));
            }
            Directive::ProxyCommand(v) => {
                o.proxy.get_or_insert(Proxy::Command((v, here())));
            }
            Directive::UserKnownHostsFile(v) => {
                o.user_known_hosts_files.get_or_insert((v, here()));
            }
            Directive::StrictHostKeyChecking(v) => {
                o.strict_host_key_checking.get_or_insert(v);
            }
            // `none` leaves the key unset, so a later line may still set it
            // (OpenSSH stores `none` as its "unset" value).
            Directive::ServerAliveInterval(v) => {
                if o.server_alive_interval.is_none() {
                    o.server_alive_interval = v;
                }
            }
            Directive::ConnectTimeout(v) => {
                if o.connect_timeout.is_none() {
                    o.connect_timeout = v;
                }
            }
            Directive::ServerAliveCountMax(v) => {
                o.server_alive_count_max.get_or_insert(v);
            }
            Directive::Ciphers(v) => {
                o.ciphers.get_or_insert(v);
            }
            Directive::HostKeyAlias(v) => {
                o.host_key_alias.get_or_insert(v);
            }
            Directive::CanonicalizeHostname(v) => {
                o.canonicalize.get_or_insert((v, here()));
            }
        }
        Ok(())
    }

    /// The final values: refusals of what tunneld cannot do as `ssh` would,
    /// `HostName`'s `%h`, then every path's `~` and `%` tokens.
    fn finish(self) -> Result<SshConfigHost, SshConfigError> {
        let Walker { alias, ctx, o } = self;
        if let Some((true, at)) = &o.canonicalize {
            return Err(SshConfigError::line(
                at,
                "CanonicalizeHostname is not supported by tunneld (it needs DNS look-ups and a second pass \
                 over the files); set CanonicalizeHostname no for this host and give the full HostName",
            ));
        }
        if let Some(Proxy::Command((cmd, at))) = &o.proxy
            && cmd != "none"
        {
            return Err(SshConfigError::line(
                at,
                "ProxyCommand is not supported by tunneld (it would run a command); \
                 use ProxyJump, or ProxyCommand none for this host",
            ));
        }
        let hostname = match &o.hostname {
            Some((h, at)) => Some(
                expand_percent(h, &[('h', alias)], None)
                    .map_err(|m| {
                        SshConfigError::line(
                            at,
                            format!("HostName: {m} (only %h and %% are allowed)"),
                        )
                    })?
                    .to_lowercase(),
            ),
            None => None,
        };
        let host = hostname.clone().unwrap_or_else(|| alias.to_lowercase());
        let user = o.user.clone().unwrap_or_else(|| ctx.local_user.clone());
        let port = o.port.unwrap_or(DEFAULT_PORT).to_string();
        let conn_hash: String = Sha1::digest(format!("{}{host}{port}{user}", ctx.local_host))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let short_host = ctx.local_host.split('.').next().unwrap_or_default();
        let uid = ctx.uid.to_string();
        let home = ctx.home.to_string_lossy();
        let key_alias = o.host_key_alias.as_deref().unwrap_or(alias);
        let tokens = [
            ('C', conn_hash.as_str()),
            ('L', short_host),
            ('i', uid.as_str()),
            ('k', key_alias),
            ('l', ctx.local_host.as_str()),
            ('n', alias),
            ('p', port.as_str()),
            ('d', home.as_ref()),
            ('h', host.as_str()),
            ('r', user.as_str()),
            ('u', ctx.local_user.as_str()),
        ];
        let expand = |(v, at): &Sourced<String>, kw: &str| -> Result<String, SshConfigError> {
            expand_tilde(v, &ctx.home)
                .and_then(|t| expand_percent(&t, &tokens, Some(&ctx.env)))
                .map_err(|m| SshConfigError::line(at, format!("{kw} {v:?}: {m}")))
        };
        let paths = |list: &[Sourced<String>], kw: &str| -> Result<Vec<PathBuf>, SshConfigError> {
            list.iter()
                .map(|s| expand(s, kw).map(PathBuf::from))
                .collect()
        };
        let user_known_hosts_files = match &o.user_known_hosts_files {
            Some((files, at)) => Some(
                files
                    .iter()
                    .map(|f| {
                        expand(&(f.clone(), at.clone()), "UserKnownHostsFile").map(PathBuf::from)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(SshConfigHost {
            alias: alias.to_string(),
            hostname,
            user: o.user.clone(),
            port: o.port,
            identity_files: paths(&o.identity_files, "IdentityFile")?,
            identities_only: o.identities_only,
            identity_agent: o
                .identity_agent
                .as_ref()
                .map(|a| expand(a, "IdentityAgent"))
                .transpose()?,
            certificate_files: paths(&o.certificate_files, "CertificateFile")?,
            proxy_jump: match &o.proxy {
                Some(Proxy::Jump(j)) => Some(j.clone()),
                _ => None,
            },
            user_known_hosts_files,
            strict_host_key_checking: o.strict_host_key_checking,
            server_alive_interval: o.server_alive_interval,
            server_alive_count_max: o.server_alive_count_max,
            connect_timeout: o.connect_timeout,
            ciphers: o.ciphers.clone(),
            identity_files_raw: o.identity_files.iter().map(|(v, _)| v.clone()).collect(),
            certificate_files_raw: o.certificate_files.iter().map(|(v, _)| v.clone()).collect(),
        })
    }
}

//! Lines → directives: reading config files within bounds, splitting a line
//! into a keyword and its arguments as OpenSSH does, and following
//! `Include` into the files it names.

use std::{
    io::Read,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    error::{Origin, SshConfigError},
    glob::glob,
    tokens::expand_tilde,
};

/// Deepest chain of `Include`s followed; OpenSSH's `READCONF_MAX_DEPTH`.
pub(super) const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files one resolution reads (a file that includes itself twice
/// would otherwise be read 2^16 times before the depth bound).
pub(super) const MAX_FILES: usize = 256;
/// Most lines one resolution reads, over every file.
pub(super) const MAX_LINES: usize = 100_000;
/// Longest line read.
pub(super) const MAX_LINE_BYTES: usize = 16 * 1024;
/// Largest file read.
pub(super) const MAX_FILE_BYTES: u64 = 4 << 20;

/// One directive: its keyword, lowercased, and its arguments, unquoted.
#[derive(Debug)]
pub(super) struct Line {
    /// The keyword, lowercased (keywords are case-insensitive).
    pub keyword: String,
    /// The arguments, quotes and escapes removed.
    pub args: Vec<String>,
    /// Where the line is.
    pub at: Origin,
}

/// A line of a file, or the files an `Include` line brought in.
#[derive(Debug)]
pub(super) enum Item {
    /// A directive.
    Line(Line),
    /// The files an `Include` named, in the order `ssh` reads them.
    Include(Vec<ConfigFile>),
}

/// A file read, with its includes read too.
#[derive(Debug, Default)]
pub(super) struct ConfigFile {
    /// Its lines in order.
    pub items: Vec<Item>,
}

/// Which of OpenSSH's two kinds of file: they differ in where a relative
/// `Include` points (`~/.ssh` or the system directory) and whether `~` may
/// start one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `~/.ssh/config` or a file given with `-F`.
    User,
    /// `/etc/ssh/ssh_config`.
    System,
}

/// Reads files and their includes, counting against the bounds.
pub(super) struct Reader<'a> {
    /// Home directory: `~` and the user's relative includes.
    pub home: &'a Path,
    /// Directory of the system file: its relative includes.
    pub system_dir: &'a Path,
    /// Who reads: owner check of included and user files.
    pub uid: u32,
    files: usize,
    lines: usize,
}

impl<'a> Reader<'a> {
    /// A reader that has read nothing yet.
    pub fn new(home: &'a Path, system_dir: &'a Path, uid: u32) -> Self {
        Reader {
            home,
            system_dir,
            uid,
            files: 0,
            lines: 0,
        }
    }

    /// Reads a top-level file; `None` if it does not exist.
    pub fn read_top(
        &mut self,
        path: &Path,
        kind: Kind,
        check_perm: bool,
    ) -> Result<Option<ConfigFile>, SshConfigError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SshConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
            Ok(_) => {}
        }
        self.read_file(path, kind, check_perm, 0).map(Some)
    }

    fn read_file(
        &mut self,
        path: &Path,
        kind: Kind,
        check_perm: bool,
        depth: usize,
    ) -> Result<ConfigFile, SshConfigError> {
        let file_at = Origin {
            file: Arc::new(path.to_path_buf()),
            line: 0,
        };
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(SshConfigError::limit(
                &file_at,
                format!("more than {MAX_FILES} config files read; check the Include lines"),
            ));
        }
        let text = read_bounded(path, check_perm.then_some(self.uid))?;
        let mut file = ConfigFile::default();
        for (n, raw) in text.split(|b| *b == b'\n').enumerate() {
            let at = Origin {
                file: file_at.file.clone(),
                line: n + 1,
            };
            self.lines += 1;
            if self.lines > MAX_LINES {
                return Err(SshConfigError::limit(
                    &at,
                    format!("more than {MAX_LINES} lines of config read"),
                ));
            }
            if raw.len() > MAX_LINE_BYTES {
                return Err(SshConfigError::limit(
                    &at,
                    format!("line longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
            let raw = std::str::from_utf8(raw)
                .map_err(|_| SshConfigError::line(&at, "line is not valid UTF-8"))?;
            let Some((keyword, args)) =
                split_line(raw).map_err(|m| SshConfigError::line(&at, m))?
            else {
                continue;
            };
            if keyword == "include" {
                file.items
                    .push(Item::Include(self.include(&args, &at, kind, depth)?));
            } else {
                file.items.push(Item::Line(Line { keyword, args, at }));
            }
        }
        Ok(file)
    }

    /// The files of an `Include` line, read: each argument is a glob,
    /// relative to `~/.ssh` in user files and to the system directory in
    /// the system file; a glob that matches nothing is skipped, as `ssh`
    /// does.
    fn include(
        &mut self,
        args: &[String],
        at: &Origin,
        kind: Kind,
        depth: usize,
    ) -> Result<Vec<ConfigFile>, SshConfigError> {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(SshConfigError::limit(
                at,
                format!(
                    "Includes nested more than {MAX_INCLUDE_DEPTH} deep (does a file include itself?)"
                ),
            ));
        }
        let mut files = Vec::new();
        for arg in args {
            if arg.is_empty() {
                return Err(SshConfigError::line(at, "empty Include path"));
            }
            if arg.starts_with('~') && kind == Kind::System {
                return Err(SshConfigError::line(
                    at,
                    format!("bad include path {arg}: the system file may not use ~"),
                ));
            }
            let pattern = if arg.starts_with('/') || arg.starts_with('~') {
                arg.clone()
            } else {
                let dir = match kind {
                    Kind::User => self.home.join(".ssh"),
                    Kind::System => self.system_dir.to_path_buf(),
                };
                format!("{}/{arg}", dir.display())
            };
            let pattern = expand_tilde(&pattern, self.home)
                .map_err(|m| SshConfigError::line(at, format!("Include {arg}: {m}")))?;
            let paths = glob(&pattern, MAX_FILES)
                .map_err(|m| SshConfigError::line(at, format!("Include {arg}: {m}")))?;
            for path in paths {
                files.push(self.read_file(&path, kind, true, depth + 1)?);
            }
        }
        Ok(files)
    }
}

/// The bytes of `path`, at most [`MAX_FILE_BYTES`]; with `owner`, refused
/// (as `ssh` refuses it) unless it belongs to `owner` or root and no one
/// else may write it.
fn read_bounded(path: &Path, owner: Option<u32>) -> Result<Vec<u8>, SshConfigError> {
    let read_err = |source| SshConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking, so a FIFO named by an Include cannot hang the open;
    // only regular files are read then (not /dev/stdin, devices, FIFOs).
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(read_err)?;
    let meta = f.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::other(
            "not a regular file (a config must be a plain file)",
        )));
    }
    if let Some(uid) = owner
        && ((meta.uid() != 0 && meta.uid() != uid) || meta.mode() & 0o022 != 0)
    {
        return Err(SshConfigError::Permissions(path.to_path_buf()));
    }
    let mut buf = Vec::new();
    (&mut f)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(SshConfigError::limit(
            &Origin {
                file: Arc::new(PathBuf::from(path)),
                line: 0,
            },
            format!("file larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    Ok(buf)
}

/// Splits a line as OpenSSH does: the keyword ends at whitespace or one
/// `=`; the arguments are words separated by blanks, with `"…"` and `'…'`
/// quoting and `\` escaping a quote, a backslash or (unquoted) a space; a
/// word starting with `#` ends the line. `None` for blank and comment
/// lines.
pub(super) fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let line = line.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
    let line = line.trim_start_matches([' ', '\t', '\r', '\n']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find([' ', '\t', '\r', '\n', '='])
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let mut rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start_matches([' ', '\t', '\r', '\n']);
    }
    if keyword.is_empty() {
        return Err("no keyword before `=`".into());
    }
    let keyword = keyword.to_ascii_lowercase();
    let args = split_args(rest)?;
    if args.is_empty() {
        return Err(format!("no argument after keyword {keyword:?}"));
    }
    Ok(Some((keyword, args)))
}

/// The words of `s` (OpenSSH's `argv_split` with comments ending the line).
fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(args),
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match c {
                '\\' => {
                    chars.next();
                    match chars.peek() {
                        Some(&n)
                            if n == '\''
                                || n == '"'
                                || n == '\\'
                                || (quote.is_none() && n == ' ') =>
                        {
                            arg.push(n);
                            chars.next();
                        }
                        _ => arg.push('\\'),
                    }
                    continue;
                }
                ' ' | '\t' if quote.is_none() => break,
                '"' | '\'' if quote.is_none() => quote = Some(c),
                _ if quote == Some(c) => quote = None,
                _ => arg.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Option<(String, Vec<String>)> {
        split_line(s).expect("a valid line")
    }

    #[test]
    fn keyword_forms_and_comments() {
        assert_eq!(split("   # comment"), None);
        assert_eq!(split(""), None);
        assert_eq!(split("Port 22"), Some(("port".into(), vec!["22".into()])));
        assert_eq!(split("PORT=22"), Some(("port".into(), vec!["22".into()])));
        assert_eq!(
            split("\tUser =  bob  # who\r"),
            Some(("user".into(), vec!["bob".into()]))
        );
        assert_eq!(
            split("Host a b#c #d"),
            Some(("host".into(), vec!["a".into(), "b#c".into()]))
        );
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            split(r#"IdentityFile "/a b/c" 'd e' f\ g h\"i "#).map(|l| l.1),
            Some(vec![
                "/a b/c".into(),
                "d e".into(),
                "f g".into(),
                "h\"i".into()
            ])
        );
        assert_eq!(
            split(r#"X "" a"b"c \q"#).map(|l| l.1),
            Some(vec!["".into(), "abc".into(), "\\q".into()])
        );
        assert!(split_line("X \"open").is_err());
        assert!(split_line("Port").is_err());
        assert!(split_line("Port # none").is_err());
        assert!(split_line("=x").is_err());
    }
}

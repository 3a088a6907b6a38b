//! Configuration errors with the place they come from, `FILE:LINE:COL:
//! message`, as compilers write them: an editor jumps there, and a person
//! sees every problem of a file at once rather than one per restart.

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use crate::error::Error;

/// One problem of the configuration: where it is, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file it is in; `None` for a flag's (or text loaded with
    /// [`super::Config::load_str`]).
    pub file: Option<PathBuf>,
    /// 1-based line; 0 when the problem has no place in a file (a flag's,
    /// an unreadable file).
    pub line: usize,
    /// 1-based column, in characters; 0 when `line` is.
    pub col: usize,
    /// What is wrong, and the fix where there is one.
    pub message: String,
}

impl ConfigError {
    /// A problem of the flags, or of the configuration as a whole: no file,
    /// no position.
    pub fn unplaced(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: 0,
            col: 0,
            message: message.into(),
        }
    }

    /// The errors of `result`, or none.
    pub(super) fn of(result: crate::error::Result<()>) -> Option<Self> {
        result.err().map(|e| ConfigError::unplaced(e.to_string()))
    }

    /// Joins `errors` into the daemon's one error, a problem a line.
    pub fn join(errors: &[ConfigError]) -> Error {
        Error::Config(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
        }
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.col)?;
        }
        if self.file.is_some() || self.line > 0 {
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text of a config file and its name, which turn a byte range of a
/// TOML value (`toml::Spanned`, a parse error's span) into a place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    /// The file's path; `None` for text given as such.
    pub path: Option<&'a Path>,
    /// Its whole text.
    pub text: &'a str,
}

impl Source<'_> {
    /// A problem at the start of byte range `span` (the whole file's start
    /// when the parser gives none).
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, col) = self.position(span.map_or(0, |s| s.start));
        ConfigError {
            file: self.path.map(Path::to_path_buf),
            line,
            col,
            message: message.into(),
        }
    }

    /// A problem of the file with no place in it (it cannot be read).
    pub fn whole(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.map(Path::to_path_buf),
            line: 0,
            col: 0,
            message: message.into(),
        }
    }

    /// 1-based line and column (in characters) of byte `offset`; an offset
    /// past the end or inside a character counts as far as it is valid.
    fn position(&self, offset: usize) -> (usize, usize) {
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &self.text[..end];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let src = Source {
            path: Some(Path::new("/etc/t.toml")),
            text: "a = 1\né = \"x\"\n",
        };
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(4), (1, 5));
        assert_eq!(src.position(6), (2, 1));
        // After the two-byte 'é', the next character is column 2.
        assert_eq!(src.position(8), (2, 2));
        assert_eq!(src.position(7), (2, 1));
        assert_eq!(src.position(1000), (3, 1));
        let e = src.error(Some(8..9), "bad");
        assert_eq!(e.to_string(), "/etc/t.toml:2:2: bad");
        assert_eq!(
            src.whole("unreadable").to_string(),
            "/etc/t.toml: unreadable"
        );
        assert_eq!(
            ConfigError::unplaced("--ssh: bad").to_string(),
            "--ssh: bad"
        );
        let text = Source {
            path: None,
            text: "x",
        };
        assert_eq!(text.error(Some(0..1), "m").to_string(), "1:1: m");
    }
}

//! Helpers shared by the fuzz targets.
//!
//! Inputs are text: a target that takes several values reads them as
//! fields separated by NUL bytes, and a list as the lines of one field, so
//! the seed corpora stay readable and editable (`printf 'a\0b' > seed`).

#![forbid(unsafe_code)]

/// The input as text; invalid UTF-8 is replaced, not skipped, so every
/// input reaches the parsers.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The input's NUL-separated fields, exactly `n` of them: missing ones are
/// empty, and the last holds the rest of the input, NULs included.
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    let mut fields: Vec<String> = data.splitn(n, |b| *b == 0).map(text).collect();
    fields.resize(n, String::new());
    fields
}

/// A field's lines, as a list.
pub fn lines(field: &str) -> Vec<String> {
    field.lines().map(str::to_string).collect()
}

/// A field as a port: its decimal value if it is one, else 22.
pub fn port(field: &str) -> u16 {
    field.trim().parse().unwrap_or(22)
}

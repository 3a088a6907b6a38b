//! The text log's field formatter: each value escaped and cut.

use tracing_subscriber::{
    field::MakeExt as _,
    fmt::{FormatFields, format::Writer},
};
use tunnel_proto::clip::escape_controls;

/// Characters of one field written before it is cut. Client values are
/// already cut at 256 where they enter a message; a message holding a few
/// of them, or an error chain, stays whole below this.
pub const MAX_FIELD_CHARS: usize = 4096;

/// A [`FormatFields`] for the text log: `name=value` pairs (the message
/// bare), each value escaped and cut at `MAX_FIELD_CHARS` (4096 characters).
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w: &mut Writer<'_>, field, value| {
        let text = format!("{value:?}");
        let text = escape_controls(&text, MAX_FIELD_CHARS);
        if field.name() == "message" {
            w.write_str(&text)
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Collects what a text layer with [`escaped_fields`] writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(escaped_fields())
            .with_ansi(false)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_forged_line_or_escape_stays_in_its_field() {
        let host = "db\n2026-12-04T10:00:00.000000Z  INFO tunneld: forged\u{1b}[31m";
        let out = logged(|| {
            let span = tracing::info_span!("conn", peer = %host);
            let _in = span.enter();
            tracing::warn!(host = %host, "cannot reach {host}");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.trim_end().chars().any(|c| c.is_control()), "{out:?}");
        assert!(out.contains("host=db\\n2026"), "{out}");
        assert!(out.contains("peer=db\\n2026"), "{out}");
    }

    #[test]
    fn a_huge_field_is_cut() {
        let huge = "x".repeat(1 << 20);
        let out = logged(|| tracing::warn!(host = %huge, "refused"));
        assert!(out.len() < 2 * MAX_FIELD_CHARS, "{} bytes", out.len());
        assert!(out.contains("(1048576 bytes in all)"), "{out}");
    }
}

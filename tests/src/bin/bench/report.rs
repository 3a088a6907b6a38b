//! Samples per row and contender, and the table: medians, min–max spread,
//! the tunneld/ssh ratio, and the target for the row.

use std::fmt::Write as _;

/// Which way is better for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// A target from the issue, checked on the medians (never fails the run).
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// tunneld/ssh at least this.
    RatioAtLeast(f64),
    /// tunneld/ssh at most this.
    RatioAtMost(f64),
    /// tunneld's median below this, in the row's unit.
    Below(f64),
}

/// Who a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Straight to the peer over loopback TCP: the ceiling.
    Raw,
    /// The OpenSSH client (`ssh -N -L`, `ssh -N -R`, `ssh host cat`).
    Ssh,
    /// tunneld.
    Tunneld,
}

/// One line of the table.
#[derive(Debug)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub better: Better,
    pub target: Option<Target>,
    pub raw: Vec<f64>,
    pub ssh: Vec<f64>,
    pub tunneld: Vec<f64>,
    /// Repetitions that failed, with the error.
    pub failed: Vec<(Who, String)>,
    /// How to read the row, printed under the table when the row is shown.
    pub note: Option<String>,
}

/// All rows, in the order they were declared.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Declares a row; `key` is how samples are added to it.
    pub fn declare(
        &mut self,
        key: &str,
        label: impl Into<String>,
        unit: &'static str,
        better: Better,
        target: Option<Target>,
    ) {
        self.rows.push(Row {
            key: key.to_owned(),
            label: label.into(),
            unit,
            better,
            target,
            raw: Vec::new(),
            ssh: Vec::new(),
            tunneld: Vec::new(),
            failed: Vec::new(),
            note: None,
        });
    }

    /// Attaches a note to a declared row (see [`Report::notes`]).
    pub fn note(&mut self, key: &str, note: impl Into<String>) {
        self.row_mut(key).note = Some(note.into());
    }

    /// `label: note` of every row the table shows that has a note.
    pub fn notes(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.shown())
            .filter_map(|r| Some(format!("{}: {}", r.label, r.note.as_ref()?)))
            .collect()
    }

    /// Records a failed repetition of a row: the table says so and the run
    /// goes on (the bench still exits non-zero, see [`Report::failures`]).
    pub fn fail(&mut self, key: &str, who: Who, error: &anyhow::Error) {
        let row = self.row_mut(key);
        row.failed.push((who, format!("{error:#}")));
    }

    /// Every failure, as `row label, who: error` lines.
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .flat_map(|r| {
                r.failed
                    .iter()
                    .map(move |(who, e)| format!("{} ({who:?}): {e}", r.label))
            })
            .collect()
    }

    fn row_mut(&mut self, key: &str) -> &mut Row {
        self.rows
            .iter_mut()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("row {key:?} was not declared"))
    }

    /// Adds one sample (a repetition's value) to a declared row.
    ///
    /// # Panics
    /// On an undeclared key: a bug in the bench.
    pub fn add(&mut self, key: &str, who: Who, value: f64) {
        let row = self.row_mut(key);
        match who {
            Who::Raw => row.raw.push(value),
            Who::Ssh => row.ssh.push(value),
            Who::Tunneld => row.tunneld.push(value),
        }
    }

    /// The table as Markdown; rows without any sample are left out.
    pub fn table(&self) -> String {
        let mut t = String::new();
        t.push_str(
            "| row | unit | better | raw TCP | ssh | tunneld | tunneld/ssh | target |\n\
             |---|---|---|---:|---:|---:|---:|---|\n",
        );
        for r in &self.rows {
            if !r.shown() {
                continue;
            }
            let cell = |who: Who, v: &[f64]| {
                let failed = r.failed.iter().filter(|(w, _)| *w == who).count();
                match (failed, v.is_empty()) {
                    (0, _) => cell(v),
                    (n, true) => format!("**failed** ({n}×)"),
                    (n, false) => format!("{} + **{n} failed**", cell(v)),
                }
            };
            let ratio = match (median(&r.tunneld), median(&r.ssh)) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let target = match r.target {
                None => String::new(),
                Some(Target::RatioAtLeast(x)) => verdict(ratio.map(|q| q >= x), format!("≥ {x}×")),
                Some(Target::RatioAtMost(x)) => verdict(ratio.map(|q| q <= x), format!("≤ {x}×")),
                Some(Target::Below(x)) => verdict(
                    median(&r.tunneld).map(|v| v < x),
                    format!("< {} {}", num(x), r.unit),
                ),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                r.unit,
                match r.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                },
                cell(Who::Raw, &r.raw),
                cell(Who::Ssh, &r.ssh),
                cell(Who::Tunneld, &r.tunneld),
                ratio.map_or("—".into(), |q| format!("{q:.2}")),
                target
            );
        }
        t
    }
}

impl Row {
    /// Whether the table shows it: it has a sample or a failure.
    fn shown(&self) -> bool {
        !(self.raw.is_empty()
            && self.ssh.is_empty()
            && self.tunneld.is_empty()
            && self.failed.is_empty())
    }
}

fn verdict(met: Option<bool>, what: String) -> String {
    match met {
        Some(true) => format!("{what} met"),
        Some(false) => format!("{what} **not met**"),
        None => what,
    }
}

/// "median (min–max)", or the single value, or "—".
fn cell(v: &[f64]) -> String {
    match (median(v), min_max(v)) {
        (None, _) | (_, None) => "—".into(),
        (Some(m), Some((lo, hi))) if v.len() > 1 => {
            format!("{} ({}–{})", num(m), num(lo), num(hi))
        }
        (Some(m), _) => num(m),
    }
}

/// Three significant digits or so.
fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn min_max(v: &[f64]) -> Option<(f64, f64)> {
    let lo = v.iter().copied().min_by(f64::total_cmp)?;
    let hi = v.iter().copied().max_by(f64::total_cmp)?;
    Some((lo, hi))
}

/// The `p`-th percentile (0..=100) by nearest rank.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_percentiles_and_cells() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
        assert_eq!(cell(&[1.0, 3.0, 2.0]), "2.00 (1.00–3.00)");
        assert_eq!(cell(&[]), "—");
    }

    #[test]
    fn table_shows_ratio_and_target() {
        let mut r = Report::default();
        r.declare(
            "push",
            "push",
            "MB/s",
            Better::Higher,
            Some(Target::RatioAtLeast(1.15)),
        );
        r.add("push", Who::Ssh, 100.0);
        r.add("push", Who::Tunneld, 120.0);
        let t = r.table();
        assert!(t.contains("| 1.20 | ≥ 1.15× met |"), "{t}");
    }
}

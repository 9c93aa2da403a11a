//! The live view of `rollout --wait` and `status --watch` on a terminal, drawn with indicatif.
//!
//! The screen is never cleared. Each change (an ASG's status or percentage moved, a wave
//! waits for approval) is printed once as a line that scrolls up like a log; below it, a
//! region of a fixed number of lines is redrawn in place: the rollout and its execution, one
//! bar per ASG in flight (at most [`MAX_ROWS`], then a line counting the others), and the
//! overall bar with the totals. With 2,000 ASGs the region stays at most
//! `2 + MAX_ROWS + 2` lines; the first tick prints one line per ASG (its planned status), each
//! later tick only what moved, and the header stays on screen. Lines wider than the terminal
//! are cut by indicatif (`wide_msg`), so a 255-character ASG name cannot wrap and break the
//! redraw. When the rollout ends, the region is cleared and the full table is printed once.
//!
//! Output that is not a terminal does not come here: it gets the change lines and the final
//! table only (see `Ops::watch_patiently`), byte for byte as before.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::view::Snapshot;

/// ASGs in flight shown with their own bar; the others are counted on one line.
pub const MAX_ROWS: usize = 10;

/// The live region and what it shows.
pub struct Live {
    multi: MultiProgress,
    header: ProgressBar,
    rows: Vec<ProgressBar>,
    /// The line counting the ASGs in flight without a bar of their own, drawn only then.
    more: ProgressBar,
    more_shown: bool,
    overall: ProgressBar,
}

impl Live {
    /// A live view drawn on stdout.
    pub fn stdout() -> Self {
        Self::new(ProgressDrawTarget::stdout())
    }

    /// A live view drawn on `target` (hidden in tests).
    pub fn new(target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        multi.set_move_cursor(true);
        let text = || ProgressStyle::with_template("{wide_msg}").expect("a valid template");
        let header = multi.add(ProgressBar::new(0).with_style(text()));
        let more = ProgressBar::new(0).with_style(text());
        let overall = multi.add(
            ProgressBar::new(100).with_style(
                ProgressStyle::with_template("{bar:30} {pos:>3}% · {wide_msg}")
                    .expect("a valid template")
                    .progress_chars("#>."),
            ),
        );
        Self {
            multi,
            header,
            rows: Vec::new(),
            more,
            more_shown: false,
            overall,
        }
    }

    /// One bar per ASG in flight, as many as `wanted`, between the header and the count.
    fn resize_rows(&mut self, wanted: usize) {
        while self.rows.len() > wanted {
            if let Some(row) = self.rows.pop() {
                row.finish_and_clear();
                self.multi.remove(&row);
            }
        }
        while self.rows.len() < wanted {
            let row = ProgressBar::new(100).with_style(
                ProgressStyle::with_template("  {bar:20} {pos:>3}% {wide_msg}")
                    .expect("a valid template")
                    .progress_chars("#>."),
            );
            self.rows.push(self.multi.insert_before(&self.overall, row));
        }
    }

    /// Prints what changed since `before` above the region, then redraws the region.
    pub fn update(&mut self, snapshot: &Snapshot, before: Option<&Snapshot>, now: i64) {
        for line in snapshot.changes(before, now) {
            self.println(&line);
        }
        self.header
            .set_message(snapshot.header(now).trim_end().replace('\n', " · "));
        let in_flight: Vec<_> = snapshot
            .asgs
            .iter()
            .filter(|a| a.status.is_in_flight())
            .collect();
        self.resize_rows(in_flight.len().min(MAX_ROWS));
        for (row, asg) in self.rows.iter().zip(&in_flight) {
            row.set_position(u64::from(asg.percentage.unwrap_or(0).min(100)));
            row.set_message(format!("{} {}", asg.asg, asg.status));
        }
        let hidden = in_flight.len().saturating_sub(MAX_ROWS);
        self.more
            .set_message(format!("  … and {hidden} more ASGs in flight"));
        if hidden > 0 && !self.more_shown {
            self.more = self.multi.insert_before(&self.overall, self.more.clone());
        } else if hidden == 0 && self.more_shown {
            self.more.finish_and_clear();
            self.multi.remove(&self.more);
            self.more = ProgressBar::new(0).with_style(self.more.style());
        }
        self.more_shown = hidden > 0;
        let t = &snapshot.totals;
        self.overall
            .set_position(u64::from(snapshot.totals.overall_percentage()));
        self.overall.set_message(format!(
            "{} ASGs: {} successful, {} in flight, {} failed, {} waiting, {} skipped",
            t.asgs, t.successful, t.in_flight, t.failed, t.waiting, t.skipped
        ));
    }

    /// Prints a line above the region (on a hidden target: nowhere).
    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    /// Runs `f` (which writes to the terminal itself, e.g. a line on stderr) with the
    /// region cleared, then redraws it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    /// Clears the region for good.
    pub fn finish(self) {
        for bar in self
            .rows
            .iter()
            .chain([&self.header, &self.more, &self.overall])
        {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }

    /// What the region shows now, one entry per visible line.
    #[cfg(test)]
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.header.message()];
        for row in &self.rows {
            lines.push(format!("{:>3}% {}", row.position(), row.message()));
        }
        if self.more_shown {
            lines.push(self.more.message());
        }
        lines.push(format!(
            "{:>3}% {}",
            self.overall.position(),
            self.overall.message()
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use generator::payload::AsgStatus;
    use runtime::store::AsgRecord;

    use super::*;

    fn fleet(in_flight: usize, done: usize, planned: usize) -> Snapshot {
        let asg = |i: usize, status: AsgStatus, percentage: Option<u32>| AsgRecord {
            asg: format!("asg-{i:04}"),
            wave: Some(0),
            status,
            percentage,
            ..AsgRecord::default()
        };
        let asgs = (0..in_flight)
            .map(|i| asg(i, AsgStatus::InProgress, Some(40)))
            .chain((0..done).map(|i| asg(in_flight + i, AsgStatus::Successful, Some(100))))
            .chain((0..planned).map(|i| asg(in_flight + done + i, AsgStatus::Planned, None)))
            .collect();
        Snapshot::new("prod", "r-1", None, None, asgs, vec![], None)
    }

    #[test]
    fn two_thousand_asgs_keep_the_region_bounded() {
        let mut live = Live::new(ProgressDrawTarget::hidden());
        let snapshot = fleet(50, 950, 1000);
        live.update(&snapshot, None, 0);
        let lines = live.lines();
        assert_eq!(lines.len(), 1 + MAX_ROWS + 2, "{lines:#?}");
        assert_eq!(
            lines[0],
            "rollout r-1 of ? on stack `prod` · execution: none found for this rollout"
        );
        assert_eq!(lines[1], " 40% asg-0000 InProgress");
        assert_eq!(lines[MAX_ROWS + 1], "  … and 40 more ASGs in flight");
        assert_eq!(
            lines[MAX_ROWS + 2],
            " 47% 2000 ASGs: 950 successful, 50 in flight, 0 failed, 1000 waiting, 0 skipped"
        );
        live.update(&fleet(3, 1997, 0), Some(&snapshot), 0);
        let lines = live.lines();
        assert_eq!(lines.len(), 1 + 3 + 1, "no count line: {lines:#?}");
        live.update(&fleet(12, 1988, 0), None, 0);
        assert_eq!(live.lines()[MAX_ROWS + 1], "  … and 2 more ASGs in flight");
        live.finish();
    }

    #[test]
    fn rows_follow_the_asgs_in_flight() {
        let mut live = Live::new(ProgressDrawTarget::hidden());
        live.update(&fleet(2, 0, 3), None, 0);
        assert_eq!(live.lines().len(), 1 + 2 + 1);
        live.update(&fleet(0, 5, 0), None, 0);
        let lines = live.lines();
        assert_eq!(
            lines[1..],
            ["100% 5 ASGs: 5 successful, 0 in flight, 0 failed, 0 waiting, 0 skipped"],
            "no row once nothing is in flight: {lines:#?}"
        );
    }
}

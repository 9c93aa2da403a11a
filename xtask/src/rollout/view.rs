//! What `status` shows of a rollout: a snapshot read from the progress table and the
//! execution, as a table with progress bars (comfy-table; columns as wide as their widest
//! cell), as change lines, or as JSON. Times are UTC (jiff); the header's timestamp names its
//! zone. On a terminal the watchers draw a bounded live region instead (`live.rs`, which says
//! how it behaves with 2,000 ASGs) and print this table once, at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aws_sdk_sfn::types::ExecutionStatus;
use comfy_table::{presets, ColumnConstraint, ContentArrangement, Table, Width};
use generator::payload::AsgStatus;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use runtime::store::{Abort, Approval, ApprovalStatus, AsgRecord, RolloutStatus, RolloutSummary};
use serde::{Serialize, Serializer};

/// The execution that runs (or ran) a rollout.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub name: String,
    pub arn: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED (as Step Functions spells it).
    #[serde(serialize_with = "execution_status")]
    pub status: ExecutionStatus,
    pub started_at: i64,
    pub stopped_at: Option<i64>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl Execution {
    pub fn is_running(&self) -> bool {
        self.status == ExecutionStatus::Running
    }
}

fn execution_status<S: Serializer>(status: &ExecutionStatus, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(status.as_str())
}

/// Counts per kind of ASG status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub asgs: usize,
    pub successful: usize,
    pub in_flight: usize,
    pub failed: usize,
    /// Planned, not started yet.
    pub waiting: usize,
    pub skipped: usize,
    /// Refreshed, then returned to the version they had before the rollout.
    pub rolled_back: usize,
}

impl Totals {
    /// Finished ASGs (successful, failed, rolled back) out of those not skipped, in percent;
    /// 100 when none is to run.
    pub fn overall_percentage(&self) -> u32 {
        let finished = self.successful + self.failed + self.rolled_back;
        let eligible = self.asgs - self.skipped;
        (finished * 100)
            .checked_div(eligible)
            .map_or(100, |p| p as u32)
    }
}

/// A rollout as the table and Step Functions see it at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub stack: String,
    pub rollout_id: String,
    pub execution: Option<Execution>,
    pub summary: Option<RolloutSummary>,
    pub totals: Totals,
    /// Waves are numbered from 0 here (the canary, when there is one, is wave 0).
    pub asgs: Vec<AsgRecord>,
    pub approvals: Vec<Approval>,
    /// The rollout holding the stack lock, if any.
    pub lock_holder: Option<String>,
    /// Who aborted the rollout and why (`cargo xtask abort`), if anyone did.
    pub abort: Option<Abort>,
}

impl Snapshot {
    pub fn new(
        stack: &str,
        rollout_id: &str,
        execution: Option<Execution>,
        summary: Option<RolloutSummary>,
        mut asgs: Vec<AsgRecord>,
        approvals: Vec<Approval>,
        lock_holder: Option<String>,
    ) -> Self {
        // Planned waves in order, then what was skipped; by name within each.
        asgs.sort_by(|a, b| {
            (a.wave.is_none(), a.wave, &a.asg).cmp(&(b.wave.is_none(), b.wave, &b.asg))
        });
        let totals = totals(&asgs);
        Self {
            stack: stack.to_string(),
            rollout_id: rollout_id.to_string(),
            execution,
            summary,
            totals,
            asgs,
            approvals,
            lock_holder,
            abort: None,
        }
    }

    /// The abort, while the rollout stays aborted (a resumed run is not).
    pub fn aborted(&self) -> Option<&Abort> {
        self.abort.as_ref().filter(|_| {
            self.summary
                .as_ref()
                .is_some_and(|s| s.status == RolloutStatus::Aborted)
        })
    }

    /// True while the execution runs (or, without one, while the summary says Running).
    pub fn is_running(&self) -> bool {
        match (&self.execution, &self.summary) {
            (Some(execution), _) => execution.is_running(),
            (None, Some(summary)) => summary.status == RolloutStatus::Running,
            (None, None) => false,
        }
    }

    /// The approval the rollout waits for now, if any.
    pub fn awaiting_approval(&self) -> Option<&Approval> {
        if !self.is_running() {
            return None;
        }
        self.approvals
            .iter()
            .filter(|a| a.status == ApprovalStatus::AwaitingApproval)
            .max_by_key(|a| a.wave)
    }

    /// The whole view: header, one row per ASG with a progress bar, totals, and what to do
    /// next when the rollout waits or failed.
    pub fn render(&self, now: i64) -> String {
        let mut out = self.header(now);
        out.push('\n');
        out.push_str(&self.table());
        for warning in self.summary.iter().flat_map(|s| &s.warnings) {
            let _ = writeln!(out, "warning: {warning}");
        }
        let _ = writeln!(out, "\n{}", self.totals_line());
        out.push_str(&self.next_steps());
        out
    }

    /// The rollout, its AMI and stack, and its execution with when it started (zone named)
    /// and how long it has run.
    pub fn header(&self, now: i64) -> String {
        let mut out = String::new();
        let ami = self.summary.as_ref().map(|s| s.ami.as_str()).unwrap_or("?");
        let _ = writeln!(
            out,
            "rollout {} of {ami} on stack `{}`",
            self.rollout_id, self.stack
        );
        match &self.execution {
            Some(e) => {
                let end = e.stopped_at.unwrap_or(now);
                let _ = writeln!(
                    out,
                    "execution {} {} (started {}, {})",
                    e.name,
                    e.status.as_str(),
                    timestamp(e.started_at),
                    duration(end - e.started_at)
                );
            }
            None => {
                let _ = writeln!(out, "execution: none found for this rollout");
            }
        }
        out
    }

    /// One row per ASG. Columns are as wide as their widest cell (at least as wide as they
    /// always were), so a 255-character ASG name widens the ASG column instead of shifting
    /// the columns after it. Ordered groups (`[[targets.group]]`) get a GROUP column after WAVE.
    pub fn table(&self) -> String {
        let grouped = self.asgs.iter().any(|a| a.group.is_some());
        let mut table = Table::new();
        table
            .load_style(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
        let mut header = vec!["WAVE"];
        let mut least = vec![5];
        if grouped {
            header.push("GROUP");
            least.push(5);
        }
        header.extend(["ASG", "STATUS", "PROGRESS", "STARTED", "ENDED", "MESSAGE"]);
        least.extend([28, 19, 17, 8, 8, 0]);
        table.set_header(header);
        let waves = self.summary.as_ref().map_or(0, |s| s.waves);
        for asg in &self.asgs {
            let mut row = vec![asg
                .wave
                .map_or("-".to_string(), |w| format!("{}/{waves}", w + 1))];
            if grouped {
                row.push(asg.group.clone().unwrap_or_else(|| "-".into()));
            }
            row.extend([
                asg.asg.clone(),
                asg.status.to_string(),
                progress_cell(asg),
                asg.started_at.map(clock).unwrap_or_default(),
                asg.ended_at.map(clock).unwrap_or_default(),
                message(asg),
            ]);
            table.add_row(row);
        }
        for (column, least) in table.column_iter_mut().zip(least) {
            // One space after each cell, none before: `WAVE  ASG ...` as a plain text table.
            column.set_padding((0, 1));
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(least + 1)));
        }
        let mut out = String::new();
        for line in table.lines() {
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    /// Finished ASGs out of those that run, as a bar and a percentage, then counts per kind.
    pub fn totals_line(&self) -> String {
        let t = &self.totals;
        let overall = t.overall_percentage();
        let mut line = format!(
            "{} {overall}% · {} ASGs: {} successful, {} in flight, {} failed, {} waiting, {} skipped",
            bar(overall, 30),
            t.asgs,
            t.successful,
            t.in_flight,
            t.failed,
            t.waiting,
            t.skipped
        );
        if t.rolled_back > 0 {
            let _ = write!(line, ", {} rolled back", t.rolled_back);
        }
        line
    }

    /// What happened to the rollout and what to do next: who aborted it and how to resume,
    /// which approval it waits for, how it ended.
    fn next_steps(&self) -> String {
        let mut out = String::new();
        let waves = self.summary.as_ref().map_or(0, |s| s.waves);
        if let Some(abort) = self.aborted() {
            let _ = writeln!(
                out,
                "aborted by {} at {} ({} of the refreshes in flight): {}\nresume it: cargo xtask rollout --env {} --resume {}",
                abort.by,
                clock(abort.at),
                abort.action,
                abort.reason.as_deref().unwrap_or("no reason given"),
                self.stack,
                self.rollout_id
            );
        }
        if let Some(approval) = self.awaiting_approval() {
            let _ = writeln!(
                out,
                "wave {} of {waves} ended; wave {} waits for approval: cargo xtask approve --env {} --rollout {}",
                approval.wave + 1,
                approval.wave + 2,
                self.stack,
                self.rollout_id
            );
        }
        if let Some(summary) = self
            .summary
            .as_ref()
            .filter(|s| s.status != RolloutStatus::Running)
        {
            let _ = writeln!(
                out,
                "{}: {}",
                summary.status,
                summary.message.as_deref().unwrap_or_default()
            );
        }
        if let Some(e) = self
            .execution
            .as_ref()
            .filter(|e| !e.is_running() && e.status != ExecutionStatus::Succeeded)
        {
            let _ = writeln!(
                out,
                "execution {}: {} {}",
                e.status.as_str(),
                e.error.as_deref().unwrap_or_default(),
                e.cause.as_deref().unwrap_or_default()
            );
        }
        out
    }

    /// One line per ASG whose status or percentage changed since `before` (every ASG when
    /// there is no `before`), for logs and non-terminal output.
    pub fn changes(&self, before: Option<&Snapshot>, now: i64) -> Vec<String> {
        let old: BTreeMap<&str, &AsgRecord> = before
            .map(|b| b.asgs.iter().map(|a| (a.asg.as_str(), a)).collect())
            .unwrap_or_default();
        let mut lines = Vec::new();
        for asg in &self.asgs {
            let changed = old
                .get(asg.asg.as_str())
                .is_none_or(|o| o.status != asg.status || o.percentage != asg.percentage);
            if !changed {
                continue;
            }
            let mut line = format!("{} {:<28} {}", clock(now), asg.asg, asg.status);
            if let Some(p) = asg.percentage.filter(|_| asg.status.is_in_flight()) {
                let _ = write!(line, " {p}%");
            }
            if let Some(reason) = &asg.reason {
                let _ = write!(line, " ({reason})");
            }
            lines.push(line);
        }
        let was_waiting = before.and_then(Snapshot::awaiting_approval).map(|a| a.wave);
        if let Some(approval) = self
            .awaiting_approval()
            .filter(|a| Some(a.wave) != was_waiting)
        {
            lines.push(format!(
                "{} wave {} waits for approval: cargo xtask approve --env {} --rollout {}",
                clock(now),
                approval.wave + 2,
                self.stack,
                self.rollout_id
            ));
        }
        lines
    }
}

/// The row's message: the pin the planner made (so rollback stays possible), then the reason.
fn message(asg: &AsgRecord) -> String {
    let pin = match (&asg.pinned_from, &asg.pinned_version) {
        (Some(from), Some(version)) => Some(format!("pinned from {from} to version {version}")),
        _ => None,
    };
    [pin, asg.reason.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
}

/// `[####......]  40%` while an ASG runs or once it ran; empty while planned or skipped.
fn progress_cell(asg: &AsgRecord) -> String {
    if matches!(asg.status, AsgStatus::Skipped | AsgStatus::Planned) {
        return String::new();
    }
    let percentage = asg
        .percentage
        .unwrap_or(if asg.status.is_successful() { 100 } else { 0 });
    format!("{} {percentage:>3}%", bar(percentage, 10))
}

fn totals(asgs: &[AsgRecord]) -> Totals {
    let mut t = Totals {
        asgs: asgs.len(),
        ..Totals::default()
    };
    for asg in asgs {
        let s = &asg.status;
        if s.is_successful() {
            t.successful += 1;
        } else if *s == AsgStatus::Skipped {
            t.skipped += 1;
        } else if *s == AsgStatus::Planned {
            t.waiting += 1;
        } else if *s == AsgStatus::RolledBack {
            t.rolled_back += 1;
        } else if s.is_failed() || *s == AsgStatus::RestoreFailed {
            t.failed += 1;
        } else {
            t.in_flight += 1;
        }
    }
    t
}

/// `[######....]` for a percentage.
pub fn bar(percentage: u32, width: usize) -> String {
    let filled = (percentage.min(100) as usize * width).div_ceil(100);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// A Unix time in UTC; a time out of jiff's range (years -9999 to 9999) is clamped to it.
fn utc(unix: i64) -> ZonedDateTime {
    let at = Timestamp::from_second(unix).unwrap_or(if unix < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    at.to_zoned_datetime(TimeZone::UTC)
}

/// `HH:MM:SS` (UTC) of a Unix time, for table cells and log lines.
pub fn clock(unix: i64) -> String {
    utc(unix).strftime("%H:%M:%S").to_string()
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix time: a timestamp that names its zone.
pub fn timestamp(unix: i64) -> String {
    utc(unix).strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// `YYYYMMDD-HHMMSS` (UTC) of a Unix time.
pub fn stamp(unix: i64) -> String {
    utc(unix).strftime("%Y%m%d-%H%M%S").to_string()
}

/// `1m05s` / `42s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_get_a_column_only_when_the_stack_has_some() {
        let grouped = |asg: &str, wave: u32, group: &str| AsgRecord {
            group: Some(group.into()),
            ..record(asg, Some(wave), AsgStatus::Successful, Some(100))
        };
        let view = snapshot_of(vec![
            grouped("v-1", 1, "vault"),
            grouped("c-1", 0, "consul"),
        ])
        .render(0);
        let rows: Vec<&str> = view.lines().filter(|l| l.contains("-1 ")).collect();
        assert!(view.contains("WAVE  GROUP  ASG"), "{view}");
        assert!(rows[0].starts_with("1/0   consul c-1"), "{view}");
        assert!(rows[1].starts_with("2/0   vault  v-1"), "{view}");
        let plain = snapshot_of(vec![record(
            "c-1",
            Some(0),
            AsgStatus::Successful,
            Some(100),
        )])
        .render(0);
        assert!(!plain.contains("GROUP"), "{plain}");
    }

    #[test]
    fn a_255_character_asg_name_widens_its_column_and_keeps_every_row_aligned() {
        let long = "a".repeat(255);
        let running = AsgRecord {
            started_at: Some(3_600),
            ..record(&long, Some(0), AsgStatus::InProgress, Some(40))
        };
        let failed = AsgRecord {
            started_at: Some(3_600),
            ended_at: Some(3_725),
            reason: Some("instances failed health checks".into()),
            ..record("db", Some(1), AsgStatus::Failed, Some(40))
        };
        let view = snapshot_of(vec![
            running,
            failed,
            record("web", Some(0), AsgStatus::Successful, None),
        ])
        .render(0);
        let table: Vec<&str> = view
            .lines()
            .skip_while(|l| !l.starts_with("WAVE"))
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(table.len(), 4, "{view}");
        let titles = ["ASG", "STATUS", "PROGRESS", "STARTED", "ENDED", "MESSAGE"];
        let starts: Vec<usize> = titles
            .iter()
            .map(|t| table[0].find(t).unwrap_or_else(|| panic!("no {t}: {view}")))
            .collect();
        assert!(
            starts[1] > starts[0] + 255,
            "the ASG column fits the name: {view}"
        );
        let expected = [
            [
                long.as_str(),
                "InProgress",
                "[####......]  40%",
                "01:00:00",
                "",
                "",
            ],
            ["web", "Successful", "[##########] 100%", "", "", ""],
            [
                "db",
                "Failed",
                "[####......]  40%",
                "01:00:00",
                "01:02:05",
                "instances failed health checks",
            ],
        ];
        for (row, cells) in table[1..].iter().zip(expected) {
            for ((title, &at), cell) in titles.iter().zip(&starts).zip(cells) {
                let rest = row.get(at..).unwrap_or_default();
                // Rows end where their last non-empty cell does.
                let before = row.get(at - 1..at).unwrap_or(" ");
                assert_eq!(before, " ", "{title} of {row:?}");
                assert!(rest.starts_with(cell), "{title} of {row:?} is not {cell:?}");
                let after = rest[cell.len()..].chars().next();
                assert!(
                    after.is_none_or(|c| c == ' '),
                    "{title} of {row:?}: {cell:?} runs on"
                );
            }
        }
    }

    #[test]
    fn the_header_names_the_zone_of_its_timestamp() {
        let execution = Execution {
            name: "r".into(),
            arn: "arn".into(),
            status: ExecutionStatus::Running,
            started_at: 1_795_714_505,
            stopped_at: None,
            error: None,
            cause: None,
        };
        let snapshot = Snapshot::new("local", "r", Some(execution), None, vec![], vec![], None);
        assert_eq!(
            snapshot.header(1_795_714_570),
            "rollout r of ? on stack `local`\n\
             execution r RUNNING (started 2026-11-26 17:35:05 UTC, 1m05s)\n"
        );
    }

    /// A snapshot of `asgs` alone: no execution, summary or approvals.
    fn snapshot_of(asgs: Vec<AsgRecord>) -> Snapshot {
        Snapshot::new("local", "r", None, None, asgs, vec![], None)
    }

    fn record(
        asg: &str,
        wave: Option<u32>,
        status: AsgStatus,
        percentage: Option<u32>,
    ) -> AsgRecord {
        AsgRecord {
            asg: asg.into(),
            wave,
            status,
            percentage,
            ..AsgRecord::default()
        }
    }

    #[test]
    fn stamps_and_clocks_are_utc() {
        assert_eq!(stamp(0), "19700101-000000");
        // 2026-11-26 17:35:05 UTC.
        assert_eq!(stamp(1_795_714_505), "20261126-173505");
        assert_eq!(stamp(951_782_400), "20000229-000000");
        assert_eq!(clock(3_661), "01:01:01");
        assert_eq!(timestamp(-1), "1969-12-31 23:59:59 UTC");
        // Out of range: clamped, not a panic.
        assert!(
            stamp(i64::MAX).starts_with("9999123"),
            "{}",
            stamp(i64::MAX)
        );
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(7), "7s");
    }

    #[test]
    fn bars_fill_with_the_percentage() {
        assert_eq!(bar(0, 10), "[..........]");
        assert_eq!(bar(45, 10), "[#####.....]");
        assert_eq!(bar(100, 10), "[##########]");
        assert_eq!(bar(250, 4), "[####]");
    }

    #[test]
    fn totals_count_each_kind_and_rows_sort_by_wave_then_name() {
        let snapshot = Snapshot::new(
            "local",
            "r-1",
            None,
            None,
            vec![
                record("zero", None, AsgStatus::Skipped, None),
                record("b", Some(1), AsgStatus::Planned, None),
                record("a", Some(1), AsgStatus::InProgress, Some(40)),
                record("c", Some(0), AsgStatus::Successful, Some(100)),
                record("d", Some(0), AsgStatus::Failed, None),
                record("e", Some(0), AsgStatus::RollbackSuccessful, None),
            ],
            Vec::new(),
            None,
        );
        let names: Vec<&str> = snapshot.asgs.iter().map(|a| a.asg.as_str()).collect();
        assert_eq!(names, ["c", "d", "e", "a", "b", "zero"]);
        assert_eq!(
            snapshot.totals,
            Totals {
                asgs: 6,
                successful: 1,
                in_flight: 1,
                failed: 2,
                waiting: 1,
                skipped: 1,
                rolled_back: 0
            }
        );
        let view = snapshot.render(0);
        assert!(view.contains("[####......]  40%"), "{view}");
        assert!(
            view.contains("6 ASGs: 1 successful, 1 in flight, 2 failed, 1 waiting, 1 skipped"),
            "{view}"
        );
    }

    #[test]
    fn pins_and_warnings_are_shown() {
        let pinned = AsgRecord {
            pinned_from: Some("$Latest".into()),
            pinned_version: Some("3".into()),
            reason: Some("still refreshing".into()),
            ..record("web", Some(0), AsgStatus::InProgress, Some(10))
        };
        let summary = RolloutSummary {
            status: RolloutStatus::Running,
            warnings: vec!["batch follows $Latest of launch template web-lt".into()],
            ..RolloutSummary::default()
        };
        let view = Snapshot::new(
            "local",
            "r",
            None,
            Some(summary),
            vec![pinned],
            vec![],
            None,
        )
        .render(0);
        assert!(
            view.contains("pinned from $Latest to version 3; still refreshing"),
            "{view}"
        );
        assert!(
            view.contains("warning: batch follows $Latest of launch template web-lt"),
            "{view}"
        );
    }

    #[test]
    fn changes_list_only_what_moved() {
        let before = snapshot_of(vec![record("a", Some(0), AsgStatus::InProgress, Some(10))]);
        let same = snapshot_of(vec![record("a", Some(0), AsgStatus::InProgress, Some(10))]);
        let moved = snapshot_of(vec![record("a", Some(0), AsgStatus::InProgress, Some(60))]);
        assert!(same.changes(Some(&before), 0).is_empty());
        assert_eq!(
            moved.changes(Some(&before), 0),
            ["00:00:00 a                            InProgress 60%"]
        );
        assert_eq!(before.changes(None, 0).len(), 1);
    }

    #[test]
    fn restores_and_aborts_are_shown() {
        let restored = AsgRecord {
            reason: Some("restored to launch template version 1".into()),
            ..record("web", Some(0), AsgStatus::RolledBack, Some(100))
        };
        let summary = RolloutSummary {
            status: RolloutStatus::Aborted,
            message: Some("aborted by ana: 5xx up".into()),
            ..RolloutSummary::default()
        };
        let mut snapshot = Snapshot::new(
            "prod",
            "r-1",
            None,
            Some(summary.clone()),
            vec![
                restored,
                record("db", Some(0), AsgStatus::RestoreFailed, Some(40)),
            ],
            vec![],
            None,
        );
        snapshot.abort = Some(Abort {
            rollout_id: "r-1".into(),
            by: "ana".into(),
            reason: Some("5xx up".into()),
            action: "cancel".into(),
            at: 3600,
        });
        assert_eq!(
            (snapshot.totals.rolled_back, snapshot.totals.failed),
            (1, 1)
        );
        let view = snapshot.render(0);
        assert!(
            view.contains("1 failed, 0 waiting, 0 skipped, 1 rolled back"),
            "{view}"
        );
        assert!(
            view.contains("restored to launch template version 1"),
            "{view}"
        );
        assert!(
            view.contains("aborted by ana at 01:00:00 (cancel of the refreshes in flight): 5xx up"),
            "{view}"
        );
        assert!(
            view.contains("resume it: cargo xtask rollout --env prod --resume r-1"),
            "{view}"
        );
        // Once resumed, the rollout is no longer shown as aborted.
        snapshot.summary = Some(RolloutSummary {
            status: RolloutStatus::Running,
            ..summary
        });
        assert!(!snapshot.render(0).contains("aborted by"));
    }
}

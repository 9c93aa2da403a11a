//! The wave alarm gate (`[rollout] wave_alarms`): after a wave and its bake, the refresher
//! reads each alarm's state changes since the wave started (DescribeAlarmHistory,
//! `StateUpdate` items) and its current state (DescribeAlarms). An alarm that went to ALARM
//! in that span, is in ALARM now, or no longer exists fails the wave with `WaveAlarm`, naming
//! it; `cargo xtask rollout` uses [`missing`] to refuse a rollout whose alarms do not exist.
//!
//! Alarms are metric alarms: DescribeAlarms and DescribeAlarmHistory return only those when no
//! `AlarmTypes` is given, and reading a composite alarm's history needs
//! `cloudwatch:DescribeAlarmHistory` on `*`
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html>),
//! while the Lambda role is granted only the named alarms' ARNs.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use aws_sdk_cloudwatch::types::{HistoryItemType, StateValue};
use aws_sdk_cloudwatch::Client;
use aws_smithy_types::DateTime;
use generator::payload::{cap_message, AlarmsResponse};
use serde_json::Value;

use crate::error::{classify, Error};

/// The CloudWatch client of this process, made on first use from the Lambda's SDK config.
static CLIENT: OnceLock<Client> = OnceLock::new();

async fn client() -> &'static Client {
    if let Some(client) = CLIENT.get() {
        return client;
    }
    let config = crate::clients::sdk_config().await;
    CLIENT.get_or_init(|| Client::new(&config))
}

/// Most alarm names one DescribeAlarms call takes (AlarmNames, API_DescribeAlarms).
const NAMES_PER_CALL: usize = 100;

/// Why one alarm stops the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub alarm: String,
    pub why: String,
}

/// The `check_alarms` action: `Ok` when no alarm of `alarms` went to ALARM since `since`, is
/// in ALARM at `now`, or is gone; otherwise [`Error::WaveAlarm`] naming each that did.
pub async fn check(
    rollout_id: &str,
    wave: u32,
    since: i64,
    now: i64,
    alarms: &[String],
) -> Result<AlarmsResponse, Error> {
    let fired = fired(client().await, alarms, since, now).await?;
    if fired.is_empty() {
        tracing::info!(
            rollout = rollout_id,
            wave,
            alarms = alarms.len(),
            "wave alarms stayed out of ALARM"
        );
        return Ok(AlarmsResponse {
            rollout_id: rollout_id.to_string(),
            wave,
            checked: alarms.len() as u32,
        });
    }
    let message = describe(wave, &fired);
    tracing::warn!(rollout = rollout_id, wave, %message, "wave alarm");
    Err(Error::WaveAlarm(message))
}

/// One line for people, waves numbered from 1 as `status` shows them:
/// `wave 2 failed its alarm gate: db-errors went to ALARM at ...`.
pub fn describe(wave: u32, fired: &[Fired]) -> String {
    let list: Vec<String> = fired
        .iter()
        .map(|f| format!("{} {}", f.alarm, f.why))
        .collect();
    cap_message(&format!(
        "wave {} failed its alarm gate: {}",
        wave + 1,
        list.join("; ")
    ))
}

/// Every alarm of `alarms` that went to ALARM in `[since, now]`, is in ALARM now, or does
/// not exist, in the order given.
pub async fn fired(
    client: &Client,
    alarms: &[String],
    since: i64,
    now: i64,
) -> Result<Vec<Fired>, Error> {
    let current = states(client, alarms).await?;
    let mut out = Vec::new();
    for alarm in alarms {
        if let Some(at) = went_to_alarm(client, alarm, since, now).await? {
            out.push(Fired {
                alarm: alarm.clone(),
                why: format!("went to ALARM at {at}"),
            });
            continue;
        }
        match current.iter().find(|(name, _)| name == alarm) {
            None => out.push(Fired {
                alarm: alarm.clone(),
                why: "no longer exists (DescribeAlarms does not list it)".into(),
            }),
            Some((_, state)) if *state == StateValue::Alarm => out.push(Fired {
                alarm: alarm.clone(),
                why: "is in ALARM".into(),
            }),
            Some(_) => {}
        }
    }
    Ok(out)
}

/// The names of `alarms` that DescribeAlarms does not list (the `rollout` command's check).
pub async fn missing(
    config: &aws_config::SdkConfig,
    alarms: &[String],
) -> Result<Vec<String>, Error> {
    let client = Client::new(config);
    let found: BTreeSet<String> = states(&client, alarms)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    Ok(alarms
        .iter()
        .filter(|a| !found.contains(*a))
        .cloned()
        .collect())
}

/// (name, state) of each listed alarm that exists.
async fn states(client: &Client, alarms: &[String]) -> Result<Vec<(String, StateValue)>, Error> {
    let mut out = Vec::new();
    for names in alarms.chunks(NAMES_PER_CALL) {
        let mut token: Option<String> = None;
        // Bounded: at most as many pages as names.
        for _ in 0..=names.len() {
            let page = client
                .describe_alarms()
                .set_alarm_names(Some(names.to_vec()))
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| classify("reading the wave alarms (DescribeAlarms)", e))?;
            for alarm in page.metric_alarms() {
                if let (Some(name), Some(state)) = (alarm.alarm_name(), alarm.state_value()) {
                    out.push((name.to_string(), state.clone()));
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

/// When `alarm` first went to ALARM in `[since, now]`, from its StateUpdate history.
async fn went_to_alarm(
    client: &Client,
    alarm: &str,
    since: i64,
    now: i64,
) -> Result<Option<String>, Error> {
    let mut pages = client
        .describe_alarm_history()
        .alarm_name(alarm)
        .history_item_type(HistoryItemType::StateUpdate)
        .start_date(DateTime::from_secs(since))
        // One second past now: the gate must see a change made in the second it reads.
        .end_date(DateTime::from_secs(now + 1))
        .into_paginator()
        .send();
    let mut first: Option<DateTime> = None;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            classify(
                &format!("reading the history of alarm {alarm} (DescribeAlarmHistory)"),
                e,
            )
        })?;
        for item in page.alarm_history_items() {
            if !is_to_alarm(item.history_data(), item.history_summary()) {
                continue;
            }
            if let Some(at) = item.timestamp() {
                if first.is_none_or(|f| at.secs() < f.secs()) {
                    first = Some(*at);
                }
            }
        }
    }
    Ok(first.map(|at| {
        at.fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap_or_else(|_| at.secs().to_string())
    }))
}

/// Whether a StateUpdate item is a change to ALARM: its HistoryData's
/// `newState.stateValue`, or (no readable data) a summary ending "to ALARM".
pub fn is_to_alarm(data: Option<&str>, summary: Option<&str>) -> bool {
    let parsed = data.and_then(|d| serde_json::from_str::<Value>(d).ok());
    match parsed
        .as_ref()
        .and_then(|v| v.pointer("/newState/stateValue"))
        .and_then(Value::as_str)
    {
        Some(state) => state == "ALARM",
        None => summary.is_some_and(|s| s.trim_end().ends_with("to ALARM")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_to_alarm_is_read_from_the_history_data_or_the_summary() {
        let to_alarm =
            r#"{"version":"1.0","oldState":{"stateValue":"OK"},"newState":{"stateValue":"ALARM"}}"#;
        let to_ok =
            r#"{"version":"1.0","oldState":{"stateValue":"ALARM"},"newState":{"stateValue":"OK"}}"#;
        assert!(is_to_alarm(Some(to_alarm), None));
        assert!(!is_to_alarm(
            Some(to_ok),
            Some("Alarm updated from ALARM to OK")
        ));
        assert!(is_to_alarm(None, Some("Alarm updated from OK to ALARM")));
        assert!(!is_to_alarm(
            Some("not json"),
            Some("Alarm updated from ALARM to OK")
        ));
    }

    #[test]
    fn the_message_names_each_alarm() {
        let message = describe(
            1,
            &[
                Fired {
                    alarm: "db-errors".into(),
                    why: "went to ALARM at 2026-11-27T21:00:00Z".into(),
                },
                Fired {
                    alarm: "p99".into(),
                    why: "is in ALARM".into(),
                },
            ],
        );
        assert_eq!(message, "wave 2 failed its alarm gate: db-errors went to ALARM at 2026-11-27T21:00:00Z; p99 is in ALARM");
    }
}

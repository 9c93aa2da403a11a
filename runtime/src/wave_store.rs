//! The plan's waves in the progress table, so that no Step Functions state carries a list
//! of ASGs: one item per wave holding its size (`#wave#00003`) and one item per position
//! holding the ASG's name (`#wave#00003#000042`). A wave's Map iterates over positions and
//! each child reads its ASG's name at start; items are small (a name is at most 255
//! bytes) and their number grows with the fleet, never any state. A wave's size item also
//! holds its concurrency (the batch size of its group, or of the rollout) and its group's
//! name, which the `wave` action hands to the wave's Map (`MaxConcurrencyPath`).

use generator::names::table::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use std::time::Duration;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use generator::waves::Wave;

use crate::error::{classify, Error};
use crate::store::{get_n, get_s, n, s, Item, Store, RETENTION_SECONDS};

/// Sort key prefix of the wave items.
pub const WAVE_PREFIX: &str = "#wave#";
/// Most items one BatchWriteItem call takes.
const BATCH: usize = 25;
/// Rounds of resending what BatchWriteItem left unprocessed before giving up (retryable).
const UNPROCESSED_ROUNDS: u32 = 8;

/// Sort key of wave `wave`'s size item.
pub fn wave_key(wave: u32) -> String {
    format!("{WAVE_PREFIX}{wave:05}")
}

/// Sort key of position `index` of wave `wave`.
pub fn member_key(wave: u32, index: u32) -> String {
    format!("{WAVE_PREFIX}{wave:05}#{index:06}")
}

/// What the table says of one wave besides its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveInfo {
    pub size: u32,
    /// The wave's concurrency (absent in plans recorded before it was).
    pub batch_size: Option<u32>,
    /// Its group, when the stack has `[[targets.group]]`.
    pub group: Option<String>,
}

/// Records the plan's waves with no group or batch size (see [`put_plan`]).
pub async fn put_waves(
    store: &Store,
    rollout_id: &str,
    waves: &[Vec<String>],
    now: i64,
) -> Result<(), Error> {
    let waves: Vec<(&[String], Option<&str>, Option<u32>)> =
        waves.iter().map(|w| (w.as_slice(), None, None)).collect();
    write_plan(store, rollout_id, &waves, now).await
}

/// Records the plan's waves, each with its group and batch size.
pub async fn put_plan(
    store: &Store,
    rollout_id: &str,
    waves: &[Wave],
    now: i64,
) -> Result<(), Error> {
    let waves: Vec<(&[String], Option<&str>, Option<u32>)> = waves
        .iter()
        .map(|w| (w.asgs.as_slice(), w.group.as_deref(), Some(w.batch_size)))
        .collect();
    write_plan(store, rollout_id, &waves, now).await
}

/// Records the plan's waves: every position first, then each wave's size, so a reader
/// that finds a size finds its positions. A re-plan overwrites what it needs; positions
/// past a wave's new size and waves past the new count are never read.
async fn write_plan(
    store: &Store,
    rollout_id: &str,
    waves: &[(&[String], Option<&str>, Option<u32>)],
    now: i64,
) -> Result<(), Error> {
    let item = |asg: &str, extra: &[(&str, aws_sdk_dynamodb::types::AttributeValue)]| -> Item {
        let mut item = Item::new();
        item.insert(PARTITION_KEY.into(), s(rollout_id));
        item.insert(SORT_KEY.into(), s(asg));
        item.insert("updated_at".into(), n(now));
        item.insert(TTL_ATTRIBUTE.into(), n(now + RETENTION_SECONDS));
        for (key, value) in extra {
            item.insert(key.to_string(), value.clone());
        }
        item
    };
    let mut members = Vec::new();
    for (w, (wave, _, _)) in waves.iter().enumerate() {
        for (i, name) in wave.iter().enumerate() {
            members.push(item(
                &member_key(w as u32, i as u32),
                &[("wave", n(w)), ("index", n(i)), ("name", s(name))],
            ));
        }
    }
    write_all(store, members).await?;
    let sizes = waves
        .iter()
        .enumerate()
        .map(|(w, (wave, group, batch_size))| {
            let mut extra = vec![("wave", n(w)), ("size", n(wave.len()))];
            if let Some(group) = group {
                extra.push(("group", s(group)));
            }
            if let Some(batch_size) = batch_size {
                extra.push(("batch_size", n(batch_size)));
            }
            item(&wave_key(w as u32), &extra)
        })
        .collect();
    write_all(store, sizes).await
}

/// Puts every item, 25 to a call, resending what DynamoDB leaves unprocessed.
async fn write_all(store: &Store, items: Vec<Item>) -> Result<(), Error> {
    for chunk in items.chunks(BATCH) {
        let mut pending: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item.clone()))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<_, _>>()?;
        for round in 0..=UNPROCESSED_ROUNDS {
            if pending.is_empty() {
                break;
            }
            if round == UNPROCESSED_ROUNDS {
                return Err(Error::Retryable(format!(
                    "recording the waves: {} items still unprocessed after {UNPROCESSED_ROUNDS} rounds",
                    pending.len()
                )));
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(50 << round.min(6))).await;
            }
            let out = store
                .client()
                .batch_write_item()
                .request_items(store.table(), pending)
                .send()
                .await
                .map_err(|e| classify("recording the waves", e))?;
            pending = out
                .unprocessed_items()
                .and_then(|u| u.get(store.table()))
                .cloned()
                .unwrap_or_default();
        }
    }
    Ok(())
}

async fn get(store: &Store, rollout_id: &str, key: &str) -> Result<Option<Item>, Error> {
    store.read_item(rollout_id, key, "reading the waves").await
}

/// How many ASGs wave `wave` holds; an error when the plan has no such wave.
pub async fn wave_size(store: &Store, rollout_id: &str, wave: u32) -> Result<u32, Error> {
    Ok(wave_info(store, rollout_id, wave).await?.size)
}

/// Wave `wave`'s size, batch size and group; an error when the plan has no such wave.
pub async fn wave_info(store: &Store, rollout_id: &str, wave: u32) -> Result<WaveInfo, Error> {
    let item = get(store, rollout_id, &wave_key(wave)).await?;
    let size = item.as_ref().and_then(|item| get_n(item, "size"));
    match (size, item) {
        (Some(size), Some(item)) => Ok(WaveInfo {
            size,
            batch_size: get_n(&item, "batch_size"),
            group: get_s(&item, "group"),
        }),
        _ => Err(Error::InvalidInput(format!(
            "rollout {rollout_id} has no wave {wave}: plan it first"
        ))),
    }
}

/// The name of the ASG at position `index` of wave `wave`.
pub async fn wave_member(
    store: &Store,
    rollout_id: &str,
    wave: u32,
    index: u32,
) -> Result<String, Error> {
    get(store, rollout_id, &member_key(wave, index))
        .await?
        .and_then(|item| get_s(&item, "name"))
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "rollout {rollout_id} has no ASG at position {index} of wave {wave}"
            ))
        })
}

/// Every ASG of wave `wave`, in order.
pub async fn wave_members(
    store: &Store,
    rollout_id: &str,
    wave: u32,
) -> Result<Vec<String>, Error> {
    let size = wave_size(store, rollout_id, wave).await?;
    let prefix = format!("{}#", wave_key(wave));
    let items = store
        .query(rollout_id, Some(&prefix), "reading the waves")
        .await?;
    Ok(items
        .iter()
        // Positions past the size are left over from an earlier plan of the rollout.
        .filter(|item| get_n::<u32>(item, "index").is_some_and(|i| i < size))
        .map(|item| get_s(item, "name").unwrap_or_default())
        .collect())
}

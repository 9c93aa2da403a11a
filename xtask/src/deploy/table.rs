//! The progress table: on-demand, keys `rollout_id` (S, HASH) / `asg` (S, RANGE),
//! server-side encryption, point-in-time recovery and TTL on `expires_at`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    ScalarAttributeType, SseSpecification, SseStatus, Tag, TimeToLiveSpecification,
    TimeToLiveStatus,
};

use super::aws::{check_owned, desired_tags, is_owned, tags_differ, Clients, SdkResultExt};
use super::Action;

use generator::names::table::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};

/// What differs on the table, or that it must be created.
pub async fn plan(clients: &Clients) -> anyhow::Result<Action> {
    let name = clients.stack.table();
    let Some((arn, tags)) = current(clients).await? else {
        return Ok(Action::Create);
    };
    check_owned(
        &clients.stack,
        "DynamoDB table",
        &name,
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    let table = clients
        .dynamodb
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .ctx(format!("cannot describe table {name}"))?;
    let table = table.table().context("DescribeTable returned no table")?;
    let keys: Vec<(&str, &KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    if keys != [(PARTITION_KEY, &KeyType::Hash), (SORT_KEY, &KeyType::Range)] {
        bail!(
            "table {name} ({arn}) has the key schema {keys:?}, not {PARTITION_KEY} (HASH) / {SORT_KEY} (RANGE): \
             keys cannot change in place; destroy the stack or delete the table"
        );
    }
    let mut fields = Vec::new();
    if table.billing_mode_summary().and_then(|b| b.billing_mode())
        != Some(&BillingMode::PayPerRequest)
    {
        fields.push("billing mode".to_string());
    }
    if table.sse_description().and_then(|s| s.status()) != Some(&SseStatus::Enabled) {
        fields.push("encryption".to_string());
    }
    let backups = clients
        .dynamodb
        .describe_continuous_backups()
        .table_name(&name)
        .send()
        .await
        .ctx(format!("cannot read the backups of table {name}"))?;
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .is_some_and(|s| s.as_str() == "ENABLED");
    if !pitr {
        fields.push("point-in-time recovery".to_string());
    }
    let ttl = clients
        .dynamodb
        .describe_time_to_live()
        .table_name(&name)
        .send()
        .await
        .ctx(format!("cannot read the TTL of table {name}"))?;
    let ttl = ttl.time_to_live_description();
    let ttl_on = ttl
        .and_then(|t| t.time_to_live_status())
        .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
        && ttl.and_then(|t| t.attribute_name()) == Some(TTL_ATTRIBUTE);
    if !ttl_on {
        fields.push("ttl".to_string());
    }
    if tags_differ(&clients.stack, &tags) {
        fields.push("tags".to_string());
    }
    Ok(if fields.is_empty() {
        Action::Unchanged
    } else {
        Action::Update(fields)
    })
}

/// The table's ARN and tags, or `None` when it does not exist.
pub async fn current(
    clients: &Clients,
) -> anyhow::Result<Option<(String, BTreeMap<String, String>)>> {
    let name = clients.stack.table();
    let table = match clients
        .dynamodb
        .describe_table()
        .table_name(&name)
        .send()
        .await
    {
        Ok(out) => out,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None)
        }
        Err(error) => return Err(error).ctx(format!("cannot describe table {name}")),
    };
    let arn = table
        .table()
        .and_then(|t| t.table_arn())
        .unwrap_or_default()
        .to_string();
    let tags = clients
        .dynamodb
        .list_tags_of_resource()
        .resource_arn(&arn)
        .send()
        .await
        .ctx(format!("cannot read the tags of table {name}"))?;
    Ok(Some((
        arn,
        tags.tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
    )))
}

/// True when the table exists and carries the stack tag; `None` when it does not exist.
pub async fn owned(clients: &Clients) -> anyhow::Result<Option<bool>> {
    Ok(current(clients).await?.map(|(_, tags)| {
        is_owned(
            &clients.stack,
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }))
}

pub async fn apply(clients: &Clients, action: &Action) -> anyhow::Result<()> {
    let create = *action == Action::Create;
    let has = |field: &str| {
        create || matches!(action, Action::Update(fields) if fields.iter().any(|f| f == field))
    };
    let tags = tags(clients)?;
    if create {
        create_table(clients, tags).await?;
    } else {
        update_table(clients, &has, tags).await?;
    }
    if has("point-in-time recovery") {
        enable_pitr(clients, create).await?;
    }
    if has("ttl") {
        enable_ttl(clients).await?;
    }
    Ok(())
}

/// The stack's tags as DynamoDB tags.
fn tags(clients: &Clients) -> anyhow::Result<Vec<Tag>> {
    desired_tags(&clients.stack)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .context("cannot build a DynamoDB tag")
        })
        .collect()
}

/// Server-side encryption with the AWS owned key.
fn sse() -> SseSpecification {
    SseSpecification::builder().enabled(true).build()
}

/// CreateTable: the rollout key schema, on demand, encrypted, tagged; then waits for ACTIVE.
async fn create_table(clients: &Clients, tags: Vec<Tag>) -> anyhow::Result<()> {
    let name = clients.stack.table();
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    clients
        .dynamodb
        .create_table()
        .table_name(&name)
        .key_schema(key(PARTITION_KEY, KeyType::Hash)?)
        .key_schema(key(SORT_KEY, KeyType::Range)?)
        .attribute_definitions(attr(PARTITION_KEY)?)
        .attribute_definitions(attr(SORT_KEY)?)
        .billing_mode(BillingMode::PayPerRequest)
        .sse_specification(sse())
        .set_tags(Some(tags))
        .send()
        .await
        .ctx(format!("cannot create table {name}"))?;
    wait_active(clients).await
}

/// The UpdateTable and TagResource calls for the fields that differ (`has`), one at a time,
/// waiting for ACTIVE after each table update.
async fn update_table(
    clients: &Clients,
    has: &impl Fn(&str) -> bool,
    tags: Vec<Tag>,
) -> anyhow::Result<()> {
    let name = clients.stack.table();
    let db = &clients.dynamodb;
    if has("billing mode") {
        db.update_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .ctx(format!("cannot update table {name}"))?;
        wait_active(clients).await?;
    }
    if has("encryption") {
        db.update_table()
            .table_name(&name)
            .sse_specification(sse())
            .send()
            .await
            .ctx(format!("cannot encrypt table {name}"))?;
        wait_active(clients).await?;
    }
    if has("tags") {
        let (arn, _) = current(clients).await?.context("the table disappeared")?;
        db.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags))
            .send()
            .await
            .ctx(format!("cannot tag table {name}"))?;
    }
    Ok(())
}

/// Time to live on the records' TTL attribute.
async fn enable_ttl(clients: &Clients) -> anyhow::Result<()> {
    let name = clients.stack.table();
    clients
        .dynamodb
        .update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()?,
        )
        .send()
        .await
        .ctx(format!("cannot enable TTL on table {name}"))?;
    Ok(())
}

/// How long enabling point-in-time recovery waits for continuous backups to become available.
const BACKUPS_AVAILABLE: Duration = Duration::from_secs(120);

/// Enables point-in-time recovery. Right after CreateTable, DynamoDB is still turning on the
/// table's continuous backups and answers `ContinuousBackupsUnavailableException`: that one is
/// waited for (backoff, bounded, the line says why); any other error fails at once.
/// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateContinuousBackups.html
async fn enable_pitr(clients: &Clients, just_created: bool) -> anyhow::Result<()> {
    let name = clients.stack.table();
    let started = std::time::Instant::now();
    let mut delay = Duration::from_secs(2);
    loop {
        let result = clients
            .dynamodb
            .update_continuous_backups()
            .table_name(&name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()?,
            )
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let unavailable = error
            .as_service_error()
            .is_some_and(|e| e.is_continuous_backups_unavailable_exception());
        if !unavailable || started.elapsed() + delay >= BACKUPS_AVAILABLE {
            let waited = if unavailable {
                format!(" after waiting {} s", BACKUPS_AVAILABLE.as_secs())
            } else {
                String::new()
            };
            return Err(error).ctx(format!(
                "cannot enable point-in-time recovery on table {name}{waited}"
            ));
        }
        let why = if just_created {
            "the table was just created and "
        } else {
            ""
        };
        println!(
            "  table {name}: continuous backups are not available yet ({why}DynamoDB turns them on in the \
             background): retrying point-in-time recovery in {} s",
            delay.as_secs()
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Waits (DynamoDB's own waiter, at most 300 s) until the table is ACTIVE.
async fn wait_active(clients: &Clients) -> anyhow::Result<()> {
    let name = clients.stack.table();
    clients
        .dynamodb
        .wait_until_table_exists()
        .table_name(&name)
        .wait(Duration::from_secs(300))
        .await
        .with_context(|| format!("waiting for table {name} to become ACTIVE"))?;
    Ok(())
}

pub async fn delete(clients: &Clients) -> anyhow::Result<()> {
    let name = clients.stack.table();
    clients
        .dynamodb
        .delete_table()
        .table_name(&name)
        .send()
        .await
        .ctx(format!("cannot delete table {name}"))?;
    Ok(())
}

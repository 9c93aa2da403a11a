//! The progress table: on-demand, keys `rollout_id` (S, HASH) / `asg` (S, RANGE),
//! server-side encryption, point-in-time recovery and TTL on `expires_at`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    PointInTimeRecoveryStatus, ScalarAttributeType, SseSpecification, SseStatus, Tag,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use generator::names::table::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use generator::names::Stack;

use super::aws::{desired_tags, Clients, SdkResultExt};
use super::engine::{changes, differing, tags_differ, Found, Resource};

/// The stack's progress table.
pub struct Table {
    pub name: String,
}

impl Table {
    pub fn new(stack: &Stack) -> Self {
        Self {
            name: stack.table(),
        }
    }
}

/// The table as it exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    /// Its key schema, in order: (attribute, HASH or RANGE).
    pub keys: Vec<(String, KeyType)>,
    pub on_demand: bool,
    pub encrypted: bool,
    pub point_in_time_recovery: bool,
    /// TTL is on (or turning on) for the records' TTL attribute.
    pub ttl: bool,
}

changes! {
    /// What can differ on the table (its key schema cannot: see [`Resource::check`]).
    pub enum Change {
        BillingMode => "billing mode",
        Encryption => "encryption",
        PointInTimeRecovery => "point-in-time recovery",
        Ttl => "ttl",
        Tags => "tags",
    }
}

impl Resource for Table {
    type Current = Current;
    type Change = Change;

    fn kind(&self) -> &'static str {
        "dynamodb table"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn refused_as(&self) -> String {
        format!("DynamoDB table {}", self.name)
    }

    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<Current>> {
        let name = &self.name;
        let db = &clients.dynamodb;
        let table = db.describe_table().table_name(name).send().await;
        let Some(table) = table.found(
            |e| e.is_resource_not_found_exception(),
            format!("cannot describe table {name}"),
        )?
        else {
            return Ok(None);
        };
        let table = table.table().context("DescribeTable returned no table")?;
        let arn = table.table_arn().unwrap_or_default().to_string();
        let tags = db
            .list_tags_of_resource()
            .resource_arn(&arn)
            .send()
            .await
            .ctx(format!("cannot read the tags of table {name}"))?;
        let backups = db
            .describe_continuous_backups()
            .table_name(name)
            .send()
            .await
            .ctx(format!("cannot read the backups of table {name}"))?;
        let ttl = db
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .ctx(format!("cannot read the TTL of table {name}"))?;
        let ttl = ttl.time_to_live_description();
        Ok(Some(Current {
            arn,
            tags: tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            keys: table
                .key_schema()
                .iter()
                .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
                .collect(),
            on_demand: table.billing_mode_summary().and_then(|b| b.billing_mode())
                == Some(&BillingMode::PayPerRequest),
            encrypted: table.sse_description().and_then(|s| s.status())
                == Some(&SseStatus::Enabled),
            point_in_time_recovery: backups
                .continuous_backups_description()
                .and_then(|d| d.point_in_time_recovery_description())
                .and_then(|p| p.point_in_time_recovery_status())
                == Some(&PointInTimeRecoveryStatus::Enabled),
            ttl: ttl.and_then(|t| t.time_to_live_status()).is_some_and(|s| {
                matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            }) && ttl.and_then(|t| t.attribute_name()) == Some(TTL_ATTRIBUTE),
        }))
    }

    fn tags(current: &Current) -> Option<&BTreeMap<String, String>> {
        Some(&current.tags)
    }

    /// Keys cannot change in place.
    fn check(&self, current: &Current) -> anyhow::Result<()> {
        let keys: Vec<(&str, &KeyType)> =
            current.keys.iter().map(|(k, t)| (k.as_str(), t)).collect();
        if keys != [(PARTITION_KEY, &KeyType::Hash), (SORT_KEY, &KeyType::Range)] {
            bail!(
                "table {} ({}) has the key schema {keys:?}, not {PARTITION_KEY} (HASH) / {SORT_KEY} (RANGE): \
                 keys cannot change in place; destroy the stack or delete the table",
                self.name,
                current.arn
            );
        }
        Ok(())
    }

    fn diff(&self, stack: &Stack, current: &Current) -> Vec<Change> {
        differing([
            (Change::BillingMode, current.on_demand),
            (Change::Encryption, current.encrypted),
            (Change::PointInTimeRecovery, current.point_in_time_recovery),
            (Change::Ttl, current.ttl),
            (Change::Tags, !tags_differ(stack, &current.tags)),
        ])
    }

    /// CreateTable (then waits for ACTIVE), point-in-time recovery, TTL.
    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        create_table(clients, &self.name).await?;
        enable_pitr(clients, &self.name, true).await?;
        enable_ttl(clients, &self.name).await
    }

    /// One call per change, in the order billing mode, encryption (each waiting for ACTIVE),
    /// tags, point-in-time recovery, TTL.
    async fn update(
        &self,
        clients: &Clients,
        current: &Current,
        changes: &[Change],
    ) -> anyhow::Result<()> {
        let name = &self.name;
        let db = &clients.dynamodb;
        let has = |change| changes.contains(&change);
        if has(Change::BillingMode) {
            db.update_table()
                .table_name(name)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
                .ctx(format!("cannot update table {name}"))?;
            wait_active(clients, name).await?;
        }
        if has(Change::Encryption) {
            db.update_table()
                .table_name(name)
                .sse_specification(sse())
                .send()
                .await
                .ctx(format!("cannot encrypt table {name}"))?;
            wait_active(clients, name).await?;
        }
        if has(Change::Tags) {
            db.tag_resource()
                .resource_arn(&current.arn)
                .set_tags(Some(tags(&clients.stack)?))
                .send()
                .await
                .ctx(format!("cannot tag table {name}"))?;
        }
        if has(Change::PointInTimeRecovery) {
            enable_pitr(clients, name, false).await?;
        }
        if has(Change::Ttl) {
            enable_ttl(clients, name).await?;
        }
        Ok(())
    }

    async fn delete(&self, clients: &Clients, _current: &Current) -> anyhow::Result<()> {
        let name = &self.name;
        clients
            .dynamodb
            .delete_table()
            .table_name(name)
            .send()
            .await
            .ctx(format!("cannot delete table {name}"))?;
        Ok(())
    }
}

/// The stack's tags as DynamoDB tags.
fn tags(stack: &Stack) -> anyhow::Result<Vec<Tag>> {
    desired_tags(stack)
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
async fn create_table(clients: &Clients, name: &str) -> anyhow::Result<()> {
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
        .table_name(name)
        .key_schema(key(PARTITION_KEY, KeyType::Hash)?)
        .key_schema(key(SORT_KEY, KeyType::Range)?)
        .attribute_definitions(attr(PARTITION_KEY)?)
        .attribute_definitions(attr(SORT_KEY)?)
        .billing_mode(BillingMode::PayPerRequest)
        .sse_specification(sse())
        .set_tags(Some(tags(&clients.stack)?))
        .send()
        .await
        .ctx(format!("cannot create table {name}"))?;
    wait_active(clients, name).await
}

/// Time to live on the records' TTL attribute.
async fn enable_ttl(clients: &Clients, name: &str) -> anyhow::Result<()> {
    clients
        .dynamodb
        .update_time_to_live()
        .table_name(name)
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
async fn enable_pitr(clients: &Clients, name: &str, just_created: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_secs(2);
    loop {
        let result = clients
            .dynamodb
            .update_continuous_backups()
            .table_name(name)
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
async fn wait_active(clients: &Clients, name: &str) -> anyhow::Result<()> {
    clients
        .dynamodb
        .wait_until_table_exists()
        .table_name(name)
        .wait(Duration::from_secs(300))
        .await
        .with_context(|| format!("waiting for table {name} to become ACTIVE"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::create_table::CreateTableOutput;
    use aws_sdk_dynamodb::operation::delete_table::DeleteTableOutput;
    use aws_sdk_dynamodb::operation::describe_continuous_backups::DescribeContinuousBackupsOutput;
    use aws_sdk_dynamodb::operation::describe_table::{DescribeTableError, DescribeTableOutput};
    use aws_sdk_dynamodb::operation::describe_time_to_live::DescribeTimeToLiveOutput;
    use aws_sdk_dynamodb::operation::list_tags_of_resource::ListTagsOfResourceOutput;
    use aws_sdk_dynamodb::operation::tag_resource::TagResourceOutput;
    use aws_sdk_dynamodb::operation::update_continuous_backups::UpdateContinuousBackupsOutput;
    use aws_sdk_dynamodb::operation::update_table::UpdateTableOutput;
    use aws_sdk_dynamodb::operation::update_time_to_live::UpdateTimeToLiveOutput;
    use aws_sdk_dynamodb::types::error::ResourceNotFoundException;
    use aws_sdk_dynamodb::types::{
        BillingModeSummary, ContinuousBackupsDescription, ContinuousBackupsStatus,
        PointInTimeRecoveryDescription, SseDescription, TableDescription, TableStatus,
        TimeToLiveDescription,
    };
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, Rule};

    use super::super::engine::replay::{self, clients, mutating, OURS};
    use super::super::engine::{Planned, Step, Verb};
    use super::*;

    fn name() -> String {
        replay::stack().table()
    }

    fn arn() -> String {
        format!("arn:aws:dynamodb:us-east-1:123456789012:table/{}", name())
    }

    /// A table as deploy leaves it; each test turns one thing off.
    #[derive(Clone, Copy)]
    struct Deployed {
        tags: &'static [(&'static str, &'static str)],
        keys: &'static [(&'static str, KeyType)],
        on_demand: bool,
        encrypted: bool,
        pitr: bool,
        ttl: bool,
    }

    const KEYS: &[(&str, KeyType)] = &[(PARTITION_KEY, KeyType::Hash), (SORT_KEY, KeyType::Range)];

    const UP_TO_DATE: Deployed = Deployed {
        tags: OURS,
        keys: KEYS,
        on_demand: true,
        encrypted: true,
        pitr: true,
        ttl: true,
    };

    fn description(table: Deployed) -> DescribeTableOutput {
        let mut description = TableDescription::builder()
            .table_name(name())
            .table_arn(arn())
            .table_status(TableStatus::Active)
            .billing_mode_summary(
                BillingModeSummary::builder()
                    .billing_mode(if table.on_demand {
                        BillingMode::PayPerRequest
                    } else {
                        BillingMode::Provisioned
                    })
                    .build(),
            );
        for (attribute, kind) in table.keys {
            description = description.key_schema(
                KeySchemaElement::builder()
                    .attribute_name(*attribute)
                    .key_type(kind.clone())
                    .build()
                    .unwrap(),
            );
        }
        if table.encrypted {
            description = description
                .sse_description(SseDescription::builder().status(SseStatus::Enabled).build());
        }
        DescribeTableOutput::builder()
            .table(description.build())
            .build()
    }

    /// DescribeTable (also the ACTIVE waiter's) and the reads after it, for `table`.
    fn deployed(table: Deployed) -> Vec<Rule> {
        vec![
            mock!(Client::describe_table)
                .match_requests(|r| r.table_name() == Some(name().as_str()))
                .then_output(move || description(table)),
            mock!(Client::list_tags_of_resource)
                .match_requests(|r| r.resource_arn() == Some(arn().as_str()))
                .then_output(move || {
                    let tags = table
                        .tags
                        .iter()
                        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap());
                    ListTagsOfResourceOutput::builder()
                        .set_tags(Some(tags.collect()))
                        .build()
                }),
            mock!(Client::describe_continuous_backups).then_output(move || {
                let status = if table.pitr {
                    PointInTimeRecoveryStatus::Enabled
                } else {
                    PointInTimeRecoveryStatus::Disabled
                };
                DescribeContinuousBackupsOutput::builder()
                    .continuous_backups_description(
                        ContinuousBackupsDescription::builder()
                            .continuous_backups_status(ContinuousBackupsStatus::Enabled)
                            .point_in_time_recovery_description(
                                PointInTimeRecoveryDescription::builder()
                                    .point_in_time_recovery_status(status)
                                    .build(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
            }),
            mock!(Client::describe_time_to_live).then_output(move || {
                let ttl = TimeToLiveDescription::builder().attribute_name(TTL_ATTRIBUTE);
                let ttl = if table.ttl {
                    ttl.time_to_live_status(TimeToLiveStatus::Enabled)
                } else {
                    ttl.time_to_live_status(TimeToLiveStatus::Disabled)
                };
                DescribeTimeToLiveOutput::builder()
                    .time_to_live_description(ttl.build())
                    .build()
            }),
        ]
    }

    /// Every mutating request deploy may make on the table, each matched on exactly what it
    /// must carry: (change it applies, rule).
    fn writes() -> Vec<(Change, Rule)> {
        let on_demand = Some(&BillingMode::PayPerRequest);
        vec![
            (
                Change::BillingMode,
                mock!(Client::update_table)
                    .match_requests(move |r| {
                        r.billing_mode() == on_demand && r.sse_specification().is_none()
                    })
                    .then_output(|| UpdateTableOutput::builder().build()),
            ),
            (
                Change::Encryption,
                mock!(Client::update_table)
                    .match_requests(|r| {
                        r.billing_mode().is_none()
                            && r.sse_specification().and_then(|s| s.enabled()) == Some(true)
                    })
                    .then_output(|| UpdateTableOutput::builder().build()),
            ),
            (
                Change::PointInTimeRecovery,
                mock!(Client::update_continuous_backups)
                    .match_requests(|r| {
                        r.table_name() == Some(name().as_str())
                            && r.point_in_time_recovery_specification()
                                .is_some_and(|p| p.point_in_time_recovery_enabled())
                    })
                    .then_output(|| UpdateContinuousBackupsOutput::builder().build()),
            ),
            (
                Change::Ttl,
                mock!(Client::update_time_to_live)
                    .match_requests(|r| {
                        r.time_to_live_specification()
                            .is_some_and(|t| t.enabled() && t.attribute_name() == TTL_ATTRIBUTE)
                    })
                    .then_output(|| UpdateTimeToLiveOutput::builder().build()),
            ),
            (
                Change::Tags,
                mock!(Client::tag_resource)
                    .match_requests(|r| {
                        r.resource_arn() == Some(arn().as_str())
                            && r.tags()
                                .iter()
                                .map(|t| (t.key().to_string(), t.value().to_string()))
                                .collect::<BTreeMap<_, _>>()
                                == replay::tag_map(OURS)
                    })
                    .then_output(|| TagResourceOutput::builder().build()),
            ),
        ]
    }

    fn replay(reads: &[Rule], writes: &[Rule]) -> Clients {
        clients(&reads.iter().chain(writes).collect::<Vec<_>>())
    }

    async fn plan(clients: &Clients) -> anyhow::Result<Planned<Table>> {
        Planned::wanted(Table::new(&clients.stack), clients).await
    }

    #[tokio::test]
    async fn creates_a_missing_table_then_turns_on_recovery_and_ttl() {
        let described = mock!(Client::describe_table)
            .sequence()
            .error(|| {
                DescribeTableError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().build(),
                )
            })
            .output(|| description(UP_TO_DATE))
            .repeatedly()
            .build();
        let create = mock!(Client::create_table)
            .match_requests(|r| {
                let keys: Vec<(&str, &KeyType)> = r
                    .key_schema()
                    .iter()
                    .map(|k| (k.attribute_name(), k.key_type()))
                    .collect();
                r.table_name() == Some(name().as_str())
                    && keys == [(PARTITION_KEY, &KeyType::Hash), (SORT_KEY, &KeyType::Range)]
                    && r.billing_mode() == Some(&BillingMode::PayPerRequest)
                    && r.sse_specification().and_then(|s| s.enabled()) == Some(true)
                    && r.tags().len() == OURS.len()
            })
            .then_output(|| CreateTableOutput::builder().build());
        let writes = writes();
        let [pitr, ttl] = [Change::PointInTimeRecovery, Change::Ttl]
            .map(|c| writes.iter().find(|(w, _)| *w == c).unwrap().1.clone());
        let clients = replay(
            &[described.clone(), create.clone()],
            &[pitr.clone(), ttl.clone()],
        );
        let planned = plan(&clients).await.unwrap();
        assert_eq!(planned.verb(), Verb::Create);
        planned.apply(&clients).await.unwrap();
        assert_eq!(
            (create.num_calls(), pitr.num_calls(), ttl.num_calls()),
            (1, 1, 1)
        );
        assert_eq!(mutating(&clients), 3);
        // The read, then the ACTIVE waiter's.
        assert_eq!(described.num_calls(), 2);
    }

    #[tokio::test]
    async fn each_field_that_differs_is_one_request_and_nothing_else() {
        type Off = fn(&mut Deployed);
        let cases: [(Change, Off); 5] = [
            (Change::BillingMode, |t| t.on_demand = false),
            (Change::Encryption, |t| t.encrypted = false),
            (Change::PointInTimeRecovery, |t| t.pitr = false),
            (Change::Ttl, |t| t.ttl = false),
            (Change::Tags, |t| t.tags = &[("asg-refresh:stack", "local")]),
        ];
        for (change, off) in cases {
            let mut table = UP_TO_DATE;
            off(&mut table);
            let writes = writes();
            let rules: Vec<Rule> = writes.iter().map(|(_, r)| r.clone()).collect();
            let clients = replay(&deployed(table), &rules);
            let planned = plan(&clients).await.unwrap();
            assert_eq!(
                (planned.verb(), planned.detail()),
                (Verb::Update, change.to_string())
            );
            planned.apply(&clients).await.unwrap();
            for (write, rule) in &writes {
                assert_eq!(
                    rule.num_calls(),
                    usize::from(*write == change),
                    "{change}: {write}"
                );
            }
            assert_eq!(mutating(&clients), 1, "{change}");
        }
    }

    #[tokio::test]
    async fn an_up_to_date_table_makes_no_request() {
        let clients = replay(&deployed(UP_TO_DATE), &[]);
        let planned = plan(&clients).await.unwrap();
        assert_eq!(planned.verb(), Verb::Unchanged);
        planned.apply(&clients).await.unwrap();
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn a_table_without_the_stack_tag_is_refused() {
        let clients = replay(
            &deployed(Deployed {
                tags: &[("team", "db")],
                ..UP_TO_DATE
            }),
            &[],
        );
        let error = plan(&clients).await.err().expect("refused");
        assert_eq!(
            error.to_string(),
            format!(
                "DynamoDB table {} exists and is not tagged asg-refresh:stack=local: refusing to take it over",
                name()
            )
        );
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn other_keys_stop_the_plan_but_not_destroy() {
        let table = Deployed {
            keys: &[(PARTITION_KEY, KeyType::Hash)],
            ..UP_TO_DATE
        };
        let clients = replay(&deployed(table), &[]);
        let error = plan(&clients).await.err().expect("refused");
        assert!(
            error.to_string().contains("keys cannot change in place"),
            "{error}"
        );
        let delete = mock!(Client::delete_table)
            .match_requests(|r| r.table_name() == Some(name().as_str()))
            .then_output(|| DeleteTableOutput::builder().build());
        let clients = replay(&deployed(table), std::slice::from_ref(&delete));
        let mut skipped = Vec::new();
        let step = Planned::absent(Table::new(&clients.stack), &clients)
            .await
            .unwrap()
            .into_step(&mut skipped)
            .expect("deleted");
        step.apply(&clients).await.unwrap();
        assert_eq!((delete.num_calls(), mutating(&clients)), (1, 1));
        assert!(skipped.is_empty());
    }
}

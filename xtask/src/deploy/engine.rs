//! The deploy engine. Each stack resource is a [`Resource`]: `read` what exists, a pure `diff`
//! of what the stack wants against it (typed changes, one enum per resource), then `create`,
//! `update` (only the changed fields) or `delete`. A deploy plans every resource into one ordered
//! list of [`Step`]s, prints it, and applies the same list; destroy plans the same resources as
//! absent, in deletion order.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use generator::names::{Stack, STACK_TAG};

use aws_smithy_runtime_api::client::result::SdkError;

use super::aws::{desired_tags, Clients, SdkResultExt};

/// One AWS resource of the stack, as the stack wants it.
pub trait Resource {
    /// What AWS has now: enough to diff, update and delete it.
    type Current;
    /// One field that can differ; `Display` is what the plan says ("point-in-time recovery").
    type Change: fmt::Display + Clone + PartialEq + fmt::Debug;

    /// What the plan calls it: "dynamodb table".
    fn kind(&self) -> &'static str;
    /// Its name in AWS.
    fn name(&self) -> String;
    /// What the refusal to take it over calls it: "<kind> <name>" unless that message has
    /// always said it otherwise ("EventBridge rule ...", an ARN).
    fn refused_as(&self) -> String {
        format!("{} {}", self.kind(), self.name())
    }
    /// What exists, or `None` when nothing does.
    fn read(
        &self,
        clients: &Clients,
    ) -> impl Future<Output = anyhow::Result<Option<Self::Current>>>;
    /// The tags of what exists: the engine takes over nothing without this stack's tag.
    /// `None` for what has no tags of its own (a function's permission, a rule's target): it
    /// belongs to the stack through its parent.
    fn tags(current: &Self::Current) -> Option<&BTreeMap<String, String>>;
    /// Fails when what exists, ours, cannot become what the stack wants in place (a table's
    /// key schema): the plan stops there, before any change. Destroy does not ask.
    fn check(&self, _current: &Self::Current) -> anyhow::Result<()> {
        Ok(())
    }
    /// What differs: pure, no AWS call. An empty list means nothing to do.
    fn diff(&self, stack: &Stack, current: &Self::Current) -> Vec<Self::Change>;
    fn create(&self, clients: &Clients) -> impl Future<Output = anyhow::Result<()>>;
    /// Applies exactly `changes` (never empty) to what exists.
    fn update(
        &self,
        clients: &Clients,
        current: &Self::Current,
        changes: &[Self::Change],
    ) -> impl Future<Output = anyhow::Result<()>>;
    fn delete(
        &self,
        clients: &Clients,
        current: &Self::Current,
    ) -> impl Future<Output = anyhow::Result<()>>;
    /// Unified diffs of the documents `changes` rewrite, for review before apply.
    fn review(&self, _current: &Self::Current, _changes: &[Self::Change]) -> String {
        String::new()
    }
}

/// What a deploy does to one resource; `C` is the resource's typed change (see
/// [`Resource::Change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<C> {
    Create,
    /// Update these fields.
    Update(Vec<C>),
    Unchanged,
    /// Delete it: the stack no longer has it (the completer and its rule with
    /// `completion = "poll"`).
    Delete,
}

impl<C> Action<C> {
    /// `Unchanged` when no field differs, else `Update` of those fields.
    pub fn from_fields(fields: Vec<C>) -> Self {
        if fields.is_empty() {
            Action::Unchanged
        } else {
            Action::Update(fields)
        }
    }
}

/// True when `tags` carry this stack's tag (or there are none of its own: see
/// [`Resource::tags`]).
pub fn owned_by(stack: &Stack, tags: Option<&BTreeMap<String, String>>) -> bool {
    tags.is_none_or(|tags| tags.get(STACK_TAG) == Some(&stack.env))
}

/// The stack's tags missing or different in `current`.
pub fn tags_differ(stack: &Stack, current: &BTreeMap<String, String>) -> bool {
    desired_tags(stack)
        .iter()
        .any(|(k, v)| current.get(k) != Some(v))
}

/// A read whose "no such resource" answer is an error (DescribeTable, ListRoleTags...).
pub trait Found<T, E> {
    /// `None` when the error is the one `missing` recognises, the output otherwise; any other
    /// error fails with `what` as its context.
    fn found(
        self,
        missing: impl FnOnce(&E) -> bool,
        what: impl fmt::Display,
    ) -> anyhow::Result<Option<T>>;
}

impl<T, E, R> Found<T, E> for Result<T, SdkError<E, R>>
where
    E: std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    fn found(
        self,
        missing: impl FnOnce(&E) -> bool,
        what: impl fmt::Display,
    ) -> anyhow::Result<Option<T>> {
        match self {
            Ok(out) => Ok(Some(out)),
            Err(error) if error.as_service_error().is_some_and(missing) => Ok(None),
            Err(error) => Err(error).ctx(what),
        }
    }
}

/// The changes whose field is not as the stack wants it, from `(change, as wanted)` pairs in
/// the order apply makes them.
pub fn differing<C>(fields: impl IntoIterator<Item = (C, bool)>) -> Vec<C> {
    fields
        .into_iter()
        .filter(|(_, as_wanted)| !as_wanted)
        .map(|(change, _)| change)
        .collect()
}

/// A resource's [`Resource::Change`]: a fieldless enum whose `Display` is what the plan says
/// of each variant, written once beside it:
/// `changes! { pub enum Change { BillingMode => "billing mode", Tags => "tags" } }`.
macro_rules! changes {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_attr:meta])* $variant:ident => $label:literal),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$variant_attr])* $variant),+
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $label),+
                })
            }
        }
    };
}
pub(crate) use changes;

/// A resource, what exists of it, and what apply does to it.
pub struct Planned<R: Resource> {
    pub resource: R,
    pub current: Option<R::Current>,
    pub action: Action<R::Change>,
}

impl<R: Resource> Planned<R> {
    /// The resource as the stack wants it: create it, update what differs, or nothing. Fails
    /// when it exists without this stack's tag: a resource someone else owns is never taken over.
    pub async fn wanted(resource: R, clients: &Clients) -> anyhow::Result<Self> {
        let current = resource.read(clients).await?;
        let action = match &current {
            None => Action::Create,
            Some(current) => {
                if !owned_by(&clients.stack, R::tags(current)) {
                    anyhow::bail!(
                        "{} exists and is not tagged {STACK_TAG}={}: refusing to take it over",
                        resource.refused_as(),
                        clients.stack.env
                    );
                }
                resource.check(current)?;
                Action::from_fields(resource.diff(&clients.stack, current))
            }
        };
        Ok(Self {
            resource,
            current,
            action,
        })
    }

    /// The resource as the stack no longer has it: delete it when it exists and carries this
    /// stack's tag; see [`Absent`] for what else it can find.
    pub async fn absent(resource: R, clients: &Clients) -> anyhow::Result<Absent<R>> {
        Ok(match resource.read(clients).await? {
            None => Absent::Missing,
            Some(current) if !owned_by(&clients.stack, R::tags(&current)) => Absent::NotOurs {
                kind: resource.kind(),
                name: resource.name(),
            },
            Some(current) => Absent::Doomed(Self {
                resource,
                current: Some(current),
                action: Action::Delete,
            }),
        })
    }
}

/// What planning a resource the stack does not want found.
pub enum Absent<R: Resource> {
    Missing,
    /// It exists without this stack's tag: left alone.
    NotOurs {
        kind: &'static str,
        name: String,
    },
    Doomed(Planned<R>),
}

impl<R: Resource + 'static> Absent<R> {
    /// The delete step, if any; a resource that is not ours is reported on `skipped`.
    pub fn into_step(self, skipped: &mut Vec<(&'static str, String)>) -> Option<Box<dyn Step>> {
        match self {
            Absent::Missing => None,
            Absent::NotOurs { kind, name } => {
                skipped.push((kind, name));
                None
            }
            Absent::Doomed(planned) => Some(Box::new(planned)),
        }
    }
}

/// What the plan and the summary say of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Update,
    Unchanged,
    Delete,
}

impl Verb {
    pub fn plan(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Unchanged => "unchanged",
            Verb::Delete => "delete",
        }
    }

    pub fn progress(self) -> &'static str {
        match self {
            Verb::Create => "creating",
            Verb::Update => "updating",
            Verb::Unchanged => "keeping",
            Verb::Delete => "deleting",
        }
    }

    pub fn result(self) -> &'static str {
        match self {
            Verb::Create => "created",
            Verb::Update => "updated",
            Verb::Unchanged => "unchanged",
            Verb::Delete => "deleted",
        }
    }
}

pub type StepFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// One line of the plan, and what apply does for it: any resource, type-erased, so a deploy is
/// one ordered list.
pub trait Step {
    fn kind(&self) -> &'static str;
    fn name(&self) -> String;
    fn verb(&self) -> Verb;
    /// The changed fields, ", "-joined (empty unless an update).
    fn detail(&self) -> String;
    /// Unified diffs of what an update rewrites (empty when none).
    fn review(&self) -> String;
    fn apply<'a>(&'a self, clients: &'a Clients) -> StepFuture<'a>;
}

impl<R: Resource> Step for Planned<R> {
    fn kind(&self) -> &'static str {
        self.resource.kind()
    }

    fn name(&self) -> String {
        self.resource.name()
    }

    fn verb(&self) -> Verb {
        match self.action {
            Action::Create => Verb::Create,
            Action::Update(_) => Verb::Update,
            Action::Unchanged => Verb::Unchanged,
            Action::Delete => Verb::Delete,
        }
    }

    fn detail(&self) -> String {
        match &self.action {
            Action::Update(changes) => changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        }
    }

    fn review(&self) -> String {
        match (&self.action, &self.current) {
            (Action::Update(changes), Some(current)) => self.resource.review(current, changes),
            _ => String::new(),
        }
    }

    fn apply<'a>(&'a self, clients: &'a Clients) -> StepFuture<'a> {
        Box::pin(async move {
            match (&self.action, &self.current) {
                (Action::Create, _) => self.resource.create(clients).await,
                (Action::Update(changes), Some(current)) => {
                    self.resource.update(clients, current, changes).await
                }
                (Action::Delete, Some(current)) => self.resource.delete(clients, current).await,
                (Action::Unchanged, _) => Ok(()),
                (Action::Update(_) | Action::Delete, None) => {
                    anyhow::bail!("{} {}: nothing to change", self.kind(), self.name())
                }
            }
        })
    }
}

#[cfg(test)]
pub mod replay {
    //! Replay clients for the resources' tests: every client answers from
    //! `aws_smithy_mocks` rules and counts its calls like a deploy does, so a test states which
    //! requests a plan and apply make and that nothing else is sent (an unmatched request
    //! panics).

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_iam::config::{Credentials, SharedCredentialsProvider};
    use aws_smithy_mocks::{create_mock_http_client, MockResponseInterceptor, Rule, RuleMode};
    use generator::config::StackConfig;

    use super::super::aws::Clients;

    /// A stack config for the tests (envs/local.toml's shape).
    pub fn config() -> StackConfig {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envs/local.toml");
        generator::config::load(&path).expect("envs/local.toml loads")
    }

    /// Clients whose every request is answered by one of `rules`.
    pub fn clients(rules: &[&Rule]) -> Clients {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDREPLAY",
                "replay",
                None,
                None,
                "replay",
            )))
            .http_client(create_mock_http_client())
            .build();
        let interceptor = || {
            vec![rules.iter().fold(
                MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
                |i, r| i.with_rule(r),
            )]
        };
        Clients::from_sdk(&config(), &sdk, interceptor)
    }

    /// The stack of [`config`].
    pub fn stack() -> generator::names::Stack {
        generator::names::Stack::new(&config())
    }

    /// The tags deploy puts on every resource of the stack (`local`).
    pub const OURS: &[(&str, &str)] = &[
        ("asg-refresh:stack", "local"),
        ("asg-refresh:managed", "true"),
    ];

    /// `tags` as owned pairs, sorted.
    pub fn tag_map(tags: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        tags.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The mutating calls the clients sent.
    pub fn mutating(clients: &Clients) -> u64 {
        clients.counter.totals().1
    }
}

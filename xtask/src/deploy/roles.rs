//! The stack's IAM roles (the Lambdas', the state machine's and, with `completion = "events"`,
//! the completer's): trust policy, one inline permission policy and tags, from
//! `generator::iam::documents` (the documents `render` writes).

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_iam::types::Tag;
use generator::config::StackConfig;
use generator::names::Stack;
use serde_json::Value;

use super::aws::{desired_tags, Clients, SdkResultExt};
use super::engine::{changes, differing, tags_differ, Found, Resource};

/// A role as the stack wants it.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub trust: Value,
    pub policy: Value,
}

impl Role {
    /// A role the stack no longer wants, by name (its documents do not matter: it is only
    /// read and deleted).
    pub fn named(name: String) -> Self {
        Self {
            name,
            trust: Value::Null,
            policy: Value::Null,
        }
    }

    /// The inline policy's name: the role's own.
    pub fn policy_name(&self) -> &str {
        &self.name
    }
}

/// Every role the stack wants, with its documents.
pub fn desired(config: &StackConfig) -> anyhow::Result<Vec<Role>> {
    let documents = generator::iam::documents(config).context("cannot render the IAM documents")?;
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for doc in documents {
        let role = roles
            .entry(doc.role_name.clone())
            .or_insert_with(|| Role::named(doc.role_name.clone()));
        match doc.kind {
            "trust" => role.trust = doc.json,
            _ => role.policy = doc.json,
        }
    }
    Ok(roles.into_values().collect())
}

/// The role as it exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub tags: BTreeMap<String, String>,
    pub trust: Option<Value>,
    /// Its inline policy of the role's name, `None` when it has none.
    pub policy: Option<Value>,
}

changes! {
    /// What can differ on a role.
    pub enum Change {
        TrustPolicy => "trust policy",
        InlinePolicy => "inline policy",
        Tags => "tags",
    }
}

impl Resource for Role {
    type Current = Current;
    type Change = Change;

    fn kind(&self) -> &'static str {
        "iam role"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn refused_as(&self) -> String {
        format!("IAM role {}", self.name)
    }

    /// ListRoleTags (which says whether it exists), GetRole, GetRolePolicy.
    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<Current>> {
        let name = &self.name;
        let tags = clients.iam.list_role_tags().role_name(name).send().await;
        let Some(tags) = tags.found(
            |e| e.is_no_such_entity_exception(),
            format!("cannot read the tags of role {name}"),
        )?
        else {
            return Ok(None);
        };
        let role = clients
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .ctx(format!("cannot read role {name}"))?;
        let trust = role
            .role()
            .and_then(|r| r.assume_role_policy_document())
            .map(parse_document);
        let policy = clients
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(self.policy_name())
            .send()
            .await
            .found(
                |e| e.is_no_such_entity_exception(),
                format!("cannot read the inline policy of role {name}"),
            )?;
        Ok(Some(Current {
            tags: tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            trust,
            policy: policy.map(|p| parse_document(p.policy_document())),
        }))
    }

    fn tags(current: &Current) -> Option<&BTreeMap<String, String>> {
        Some(&current.tags)
    }

    fn diff(&self, stack: &Stack, current: &Current) -> Vec<Change> {
        differing([
            (
                Change::TrustPolicy,
                current.trust.as_ref() == Some(&self.trust),
            ),
            (
                Change::InlinePolicy,
                current.policy.as_ref() == Some(&self.policy),
            ),
            (Change::Tags, !tags_differ(stack, &current.tags)),
        ])
    }

    /// CreateRole (trust policy and tags), then PutRolePolicy. Lambda and Step Functions may
    /// not be able to assume a new role for a few seconds: their creation retries.
    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        let name = &self.name;
        clients
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(self.trust.to_string())
            .set_tags(Some(tags(&clients.stack)?))
            .send()
            .await
            .ctx(format!("cannot create role {name}"))?;
        self.put_policy(clients).await
    }

    /// One call per change: trust policy, inline policy, tags.
    async fn update(
        &self,
        clients: &Clients,
        _current: &Current,
        changes: &[Change],
    ) -> anyhow::Result<()> {
        let name = &self.name;
        if changes.contains(&Change::TrustPolicy) {
            clients
                .iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(self.trust.to_string())
                .send()
                .await
                .ctx(format!("cannot update the trust policy of role {name}"))?;
        }
        if changes.contains(&Change::InlinePolicy) {
            self.put_policy(clients).await?;
        }
        if changes.contains(&Change::Tags) {
            clients
                .iam
                .tag_role()
                .role_name(name)
                .set_tags(Some(tags(&clients.stack)?))
                .send()
                .await
                .ctx(format!("cannot tag role {name}"))?;
        }
        Ok(())
    }

    /// Deletes every inline policy of the role, then the role.
    async fn delete(&self, clients: &Clients, _current: &Current) -> anyhow::Result<()> {
        let name = &self.name;
        let policies = clients
            .iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .ctx(format!("cannot list the policies of {name}"))?;
        for policy in policies.policy_names() {
            clients
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
                .ctx(format!("cannot delete policy {policy} of role {name}"))?;
        }
        clients
            .iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .ctx(format!("cannot delete role {name}"))?;
        Ok(())
    }

    /// The unified diffs of the trust and the inline policy an update rewrites.
    fn review(&self, current: &Current, changes: &[Change]) -> String {
        let diff = |what: &str, deployed: &Option<Value>, desired: &Value| {
            super::diff::json(
                &format!("role {} {what}", self.name),
                deployed.as_ref().unwrap_or(&Value::Null),
                desired,
            )
        };
        changes
            .iter()
            .map(|change| match change {
                Change::TrustPolicy => diff("trust policy", &current.trust, &self.trust),
                Change::InlinePolicy => diff("inline policy", &current.policy, &self.policy),
                Change::Tags => String::new(),
            })
            .collect()
    }
}

impl Role {
    /// PutRolePolicy: the inline policy, named after the role.
    async fn put_policy(&self, clients: &Clients) -> anyhow::Result<()> {
        let name = &self.name;
        clients
            .iam
            .put_role_policy()
            .role_name(name)
            .policy_name(self.policy_name())
            .policy_document(self.policy.to_string())
            .send()
            .await
            .ctx(format!("cannot put the inline policy of role {name}"))?;
        Ok(())
    }
}

fn tags(stack: &Stack) -> anyhow::Result<Vec<Tag>> {
    desired_tags(stack)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .context("cannot build an IAM tag")
        })
        .collect()
}

/// A policy document as IAM returns it (URL-encoded on AWS, plain on some emulators).
pub fn parse_document(text: &str) -> Value {
    serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&percent_decode(text)))
        .unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Decodes `%XX` escapes (RFC 3986); anything else is kept as it is.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use aws_sdk_iam::error::ErrorMetadata;
    use aws_sdk_iam::operation::create_role::CreateRoleOutput;
    use aws_sdk_iam::operation::delete_role::DeleteRoleOutput;
    use aws_sdk_iam::operation::delete_role_policy::DeleteRolePolicyOutput;
    use aws_sdk_iam::operation::get_role::GetRoleOutput;
    use aws_sdk_iam::operation::get_role_policy::{GetRolePolicyError, GetRolePolicyOutput};
    use aws_sdk_iam::operation::list_role_policies::ListRolePoliciesOutput;
    use aws_sdk_iam::operation::list_role_tags::{ListRoleTagsError, ListRoleTagsOutput};
    use aws_sdk_iam::operation::put_role_policy::PutRolePolicyOutput;
    use aws_sdk_iam::operation::tag_role::TagRoleOutput;
    use aws_sdk_iam::operation::update_assume_role_policy::UpdateAssumeRolePolicyOutput;
    use aws_sdk_iam::types::error::NoSuchEntityException;
    use aws_sdk_iam::types::Role as SdkRole;
    use aws_sdk_iam::Client;
    use aws_smithy_mocks::{mock, Rule};
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

    use super::super::engine::replay::{self, clients, mutating, OURS};
    use super::super::engine::{Planned, Step, Verb};
    use super::super::refusal::RoleChanges;
    use super::*;

    /// The states role as the stack wants it (envs/local.toml's documents).
    fn wanted() -> Role {
        let name = replay::stack().states_role();
        desired(&replay::config())
            .unwrap()
            .into_iter()
            .find(|r| r.name == name)
            .expect("the stack has a states role")
    }

    fn no_such_entity() -> NoSuchEntityException {
        NoSuchEntityException::builder()
            .meta(ErrorMetadata::builder().code("NoSuchEntity").build())
            .build()
    }

    /// A role as IAM has it: its tags, its trust policy and its inline policy, if any. IAM
    /// returns documents URL-encoded.
    #[derive(Clone)]
    struct Deployed {
        tags: &'static [(&'static str, &'static str)],
        trust: Value,
        policy: Option<Value>,
    }

    fn up_to_date() -> Deployed {
        let role = wanted();
        Deployed {
            tags: OURS,
            trust: role.trust,
            policy: Some(role.policy),
        }
    }

    fn encoded(document: &Value) -> String {
        utf8_percent_encode(&document.to_string(), NON_ALPHANUMERIC).to_string()
    }

    fn is_ours(name: Option<&str>) -> bool {
        name == Some(wanted().name.as_str())
    }

    fn tags_are_ours(tags: &[Tag]) -> bool {
        tags.iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect::<BTreeMap<_, _>>()
            == replay::tag_map(OURS)
    }

    /// The reads of a role that exists as `role`, or of none.
    fn deployed(role: Option<Deployed>) -> Vec<Rule> {
        let Some(role) = role else {
            return vec![mock!(Client::list_role_tags)
                .match_requests(|r| is_ours(r.role_name()))
                .then_error(|| ListRoleTagsError::NoSuchEntityException(no_such_entity()))];
        };
        let (tags, trust, policy) = (role.tags, role.trust, role.policy);
        vec![
            mock!(Client::list_role_tags)
                .match_requests(|r| is_ours(r.role_name()))
                .then_output(move || {
                    let tags = tags
                        .iter()
                        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap());
                    ListRoleTagsOutput::builder()
                        .set_tags(Some(tags.collect()))
                        .build()
                        .unwrap()
                }),
            mock!(Client::get_role)
                .match_requests(|r| is_ours(r.role_name()))
                .then_output(move || {
                    let name = wanted().name;
                    let role = SdkRole::builder()
                        .path("/")
                        .role_id("AROAREPLAY")
                        .arn(format!("arn:aws:iam::123456789012:role/{name}"))
                        .role_name(name)
                        .create_date(aws_smithy_types::DateTime::from_secs(0))
                        .assume_role_policy_document(encoded(&trust))
                        .build()
                        .unwrap();
                    GetRoleOutput::builder().role(role).build()
                }),
            match policy {
                Some(policy) => mock!(Client::get_role_policy)
                    .match_requests(|r| is_ours(r.role_name()) && is_ours(r.policy_name()))
                    .then_output(move || {
                        GetRolePolicyOutput::builder()
                            .role_name(wanted().name)
                            .policy_name(wanted().name)
                            .policy_document(encoded(&policy))
                            .build()
                            .unwrap()
                    }),
                None => mock!(Client::get_role_policy)
                    .then_error(|| GetRolePolicyError::NoSuchEntityException(no_such_entity())),
            },
        ]
    }

    /// Every mutating request deploy may make on a role, each matched on what it must carry:
    /// (what it does, rule).
    fn writes() -> Vec<(&'static str, Rule)> {
        let role = wanted();
        let (trust, policy) = (role.trust.clone(), role.policy.clone());
        let trust_again = trust.clone();
        vec![
            (
                "create",
                mock!(Client::create_role)
                    .match_requests(move |r| {
                        is_ours(r.role_name())
                            && r.assume_role_policy_document().map(parse_document)
                                == Some(trust.clone())
                            && tags_are_ours(r.tags())
                    })
                    .then_output(|| CreateRoleOutput::builder().build()),
            ),
            (
                "trust policy",
                mock!(Client::update_assume_role_policy)
                    .match_requests(move |r| {
                        is_ours(r.role_name())
                            && r.policy_document().map(parse_document) == Some(trust_again.clone())
                    })
                    .then_output(|| UpdateAssumeRolePolicyOutput::builder().build()),
            ),
            (
                "inline policy",
                mock!(Client::put_role_policy)
                    .match_requests(move |r| {
                        is_ours(r.role_name())
                            && is_ours(r.policy_name())
                            && r.policy_document().map(parse_document) == Some(policy.clone())
                    })
                    .then_output(|| PutRolePolicyOutput::builder().build()),
            ),
            (
                "tags",
                mock!(Client::tag_role)
                    .match_requests(|r| is_ours(r.role_name()) && tags_are_ours(r.tags()))
                    .then_output(|| TagRoleOutput::builder().build()),
            ),
        ]
    }

    fn replay(reads: &[Rule], writes: &[(&str, Rule)]) -> Clients {
        let writes = writes.iter().map(|(_, r)| r);
        clients(&reads.iter().chain(writes).collect::<Vec<_>>())
    }

    async fn plan(clients: &Clients) -> anyhow::Result<Planned<Role>> {
        Planned::wanted(wanted(), clients).await
    }

    /// The calls each write got, by what it does.
    fn calls(writes: &[(&'static str, Rule)]) -> Vec<(&'static str, usize)> {
        writes.iter().map(|(w, r)| (*w, r.num_calls())).collect()
    }

    #[tokio::test]
    async fn creates_a_missing_role_with_its_trust_tags_and_inline_policy() {
        let writes = writes();
        let clients = replay(&deployed(None), &writes);
        let planned = plan(&clients).await.unwrap();
        assert_eq!(planned.verb(), Verb::Create);
        assert_eq!(
            RoleChanges::of(&planned.action),
            RoleChanges {
                trust: true,
                policy: true
            }
        );
        planned.apply(&clients).await.unwrap();
        assert_eq!(
            calls(&writes),
            [
                ("create", 1),
                ("trust policy", 0),
                ("inline policy", 1),
                ("tags", 0)
            ]
        );
        assert_eq!(mutating(&clients), 2);
    }

    #[tokio::test]
    async fn each_field_that_differs_is_one_request_and_nothing_else() {
        let narrowed = serde_json::json!({"Version": "2012-10-17", "Statement": []});
        let cases = [
            (
                Deployed {
                    trust: narrowed.clone(),
                    ..up_to_date()
                },
                "trust policy",
            ),
            (
                Deployed {
                    policy: Some(narrowed.clone()),
                    ..up_to_date()
                },
                "inline policy",
            ),
            (
                Deployed {
                    policy: None,
                    ..up_to_date()
                },
                "inline policy",
            ),
            (
                Deployed {
                    tags: &[("asg-refresh:stack", "local")],
                    ..up_to_date()
                },
                "tags",
            ),
        ];
        for (role, change) in cases {
            let writes = writes();
            let clients = replay(&deployed(Some(role)), &writes);
            let planned = plan(&clients).await.unwrap();
            assert_eq!(
                (planned.verb(), planned.detail().as_str()),
                (Verb::Update, change)
            );
            let changes = RoleChanges::of(&planned.action);
            assert_eq!(
                (changes.trust, changes.policy),
                (change == "trust policy", change == "inline policy")
            );
            let review = planned.review();
            let header = format!("--- role {} {change} (deployed)\n", wanted().name);
            assert_eq!(review.starts_with(&header), change != "tags", "{review}");
            planned.apply(&clients).await.unwrap();
            for (write, calls) in calls(&writes) {
                assert_eq!(calls, usize::from(write == change), "{change}: {write}");
            }
            assert_eq!(mutating(&clients), 1, "{change}");
        }
    }

    #[tokio::test]
    async fn an_up_to_date_role_makes_no_request() {
        let clients = replay(&deployed(Some(up_to_date())), &[]);
        let planned = plan(&clients).await.unwrap();
        assert_eq!(planned.verb(), Verb::Unchanged);
        assert_eq!(planned.review(), "");
        assert_eq!(RoleChanges::of(&planned.action), RoleChanges::default());
        planned.apply(&clients).await.unwrap();
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn a_role_without_the_stack_tag_is_refused() {
        let role = Deployed {
            tags: &[("team", "db")],
            ..up_to_date()
        };
        let clients = replay(&deployed(Some(role)), &[]);
        let error = plan(&clients).await.err().expect("refused");
        assert_eq!(
            error.to_string(),
            format!(
                "IAM role {} exists and is not tagged asg-refresh:stack=local: refusing to take it over",
                wanted().name
            )
        );
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn a_role_the_stack_no_longer_wants_loses_its_policies_then_goes() {
        let listed = mock!(Client::list_role_policies)
            .match_requests(|r| is_ours(r.role_name()))
            .then_output(|| {
                ListRolePoliciesOutput::builder()
                    .policy_names(wanted().name)
                    .build()
                    .unwrap()
            });
        let policy_deleted = mock!(Client::delete_role_policy)
            .match_requests(|r| is_ours(r.role_name()) && is_ours(r.policy_name()))
            .then_output(|| DeleteRolePolicyOutput::builder().build());
        let deleted = mock!(Client::delete_role)
            .match_requests(|r| is_ours(r.role_name()))
            .then_output(|| DeleteRoleOutput::builder().build());
        let mut rules = deployed(Some(up_to_date()));
        rules.extend([listed, policy_deleted.clone(), deleted.clone()]);
        let clients = replay(&rules, &[]);
        let mut skipped = Vec::new();
        let step = Planned::absent(Role::named(wanted().name), &clients)
            .await
            .unwrap()
            .into_step(&mut skipped)
            .expect("deleted");
        assert_eq!(step.verb(), Verb::Delete);
        step.apply(&clients).await.unwrap();
        assert_eq!((policy_deleted.num_calls(), deleted.num_calls()), (1, 1));
        assert_eq!(mutating(&clients), 2);
        // Someone else's role of that name is left alone, and said so.
        let role = Deployed {
            tags: &[("team", "db")],
            ..up_to_date()
        };
        let clients = replay(&deployed(Some(role)), &[]);
        let absent = Planned::absent(Role::named(wanted().name), &clients)
            .await
            .unwrap();
        assert!(absent.into_step(&mut skipped).is_none());
        assert_eq!(skipped, [("iam role", wanted().name)]);
    }

    #[test]
    fn url_encoded_documents_parse() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            parse_document(encoded),
            serde_json::json!({"Version": "2012-10-17", "Statement": []})
        );
        assert_eq!(parse_document("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(percent_decode("100%"), "100%");
    }
}

//! The stack's IAM roles (the Lambdas', the state machine's and, with `completion = "events"`,
//! the completer's): trust policy, one inline permission policy and tags, from
//! `generator::iam::documents` (the documents `render` writes).

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_iam::types::Tag;
use generator::config::StackConfig;
use serde_json::Value;

use super::aws::{check_owned, desired_tags, is_owned, tags_differ, Clients, SdkResultExt};
use super::Action;

/// A role as the stack wants it.
#[derive(Debug, Clone)]
pub struct DesiredRole {
    pub name: String,
    pub trust: Value,
    pub policy: Value,
}

impl DesiredRole {
    /// The inline policy's name: the role's own.
    pub fn policy_name(&self) -> &str {
        &self.name
    }
}

/// A role's desired state and what differs from what exists.
#[derive(Debug, Clone)]
pub struct RolePlan {
    pub desired: DesiredRole,
    pub action: Action,
    /// What an update changes in the trust and inline policies (unified diffs).
    pub diffs: Vec<String>,
}

/// Every role the stack wants, with its documents.
pub fn desired(config: &StackConfig) -> anyhow::Result<Vec<DesiredRole>> {
    let documents = generator::iam::documents(config).context("cannot render the IAM documents")?;
    let mut roles: BTreeMap<String, DesiredRole> = BTreeMap::new();
    for doc in documents {
        let role = roles
            .entry(doc.role_name.clone())
            .or_insert_with(|| DesiredRole {
                name: doc.role_name.clone(),
                trust: Value::Null,
                policy: Value::Null,
            });
        match doc.kind {
            "trust" => role.trust = doc.json,
            _ => role.policy = doc.json,
        }
    }
    Ok(roles.into_values().collect())
}

/// The completer's role when the stack no longer has a completer (`completion = "poll"`) and
/// an earlier deploy made it: `Some(Action::Delete)`; `None` when it is wanted, absent or
/// someone else's role of that name (left alone).
pub async fn leftover(clients: &Clients, config: &StackConfig) -> anyhow::Result<Option<Action>> {
    if config.rollout.completion == generator::config::Completion::Events {
        return Ok(None);
    }
    Ok(
        match owned(clients, &clients.stack.completer_role()).await? {
            Some(true) => Some(Action::Delete),
            Some(false) | None => None,
        },
    )
}

/// Reads each role and diffs it; fails before any change on a role this stack does not own.
pub async fn plan(clients: &Clients, desired: Vec<DesiredRole>) -> anyhow::Result<Vec<RolePlan>> {
    let mut out = Vec::new();
    for role in desired {
        let (action, diffs) = diff(clients, &role).await?;
        out.push(RolePlan {
            desired: role,
            action,
            diffs,
        });
    }
    Ok(out)
}

async fn diff(clients: &Clients, desired: &DesiredRole) -> anyhow::Result<(Action, Vec<String>)> {
    let Some(tags) = current_tags(clients, &desired.name).await? else {
        return Ok((Action::Create, Vec::new()));
    };
    check_owned(
        &clients.stack,
        "IAM role",
        &desired.name,
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    let role = clients
        .iam
        .get_role()
        .role_name(&desired.name)
        .send()
        .await
        .ctx(format!("cannot read role {}", desired.name))?;
    let mut fields = Vec::new();
    let mut diffs = Vec::new();
    let trust = role
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .map(parse_document);
    if trust.as_ref() != Some(&desired.trust) {
        fields.push("trust policy".to_string());
        diffs.push(super::diff::json(
            &format!("role {} trust policy", desired.name),
            trust.as_ref().unwrap_or(&Value::Null),
            &desired.trust,
        ));
    }
    let policy = match clients
        .iam
        .get_role_policy()
        .role_name(&desired.name)
        .policy_name(desired.policy_name())
        .send()
        .await
    {
        Ok(out) => Some(parse_document(out.policy_document())),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            None
        }
        Err(error) => {
            return Err(error).ctx(format!(
                "cannot read the inline policy of role {}",
                desired.name
            ))
        }
    };
    if policy.as_ref() != Some(&desired.policy) {
        fields.push("inline policy".to_string());
        diffs.push(super::diff::json(
            &format!("role {} inline policy", desired.name),
            policy.as_ref().unwrap_or(&Value::Null),
            &desired.policy,
        ));
    }
    if tags_differ(&clients.stack, &tags) {
        fields.push("tags".to_string());
    }
    Ok((Action::from_fields(fields), diffs))
}

/// The role's tags, or `None` when the role does not exist.
pub async fn current_tags(
    clients: &Clients,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    match clients.iam.list_role_tags().role_name(name).send().await {
        Ok(out) => Ok(Some(
            out.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        )),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            Ok(None)
        }
        Err(error) => Err(error).ctx(format!("cannot read the tags of role {name}")),
    }
}

/// Creates or updates the role (Lambda and Step Functions may not be able to assume a new
/// role for a few seconds: their creation retries).
pub async fn apply(clients: &Clients, plan: &RolePlan) -> anyhow::Result<()> {
    let role = &plan.desired;
    let name = &role.name;
    if plan.action == Action::Delete {
        return delete(clients, name).await;
    }
    let has = |field: &str| matches!(&plan.action, Action::Update(fields) if fields.iter().any(|f| f == field));
    let create = plan.action == Action::Create;
    if create {
        let mut request = clients
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(role.trust.to_string());
        for tag in tags(clients)? {
            request = request.tags(tag);
        }
        request
            .send()
            .await
            .ctx(format!("cannot create role {name}"))?;
    }
    if has("trust policy") {
        clients
            .iam
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(role.trust.to_string())
            .send()
            .await
            .ctx(format!("cannot update the trust policy of role {name}"))?;
    }
    if create || has("inline policy") {
        clients
            .iam
            .put_role_policy()
            .role_name(name)
            .policy_name(role.policy_name())
            .policy_document(role.policy.to_string())
            .send()
            .await
            .ctx(format!("cannot put the inline policy of role {name}"))?;
    }
    if has("tags") {
        clients
            .iam
            .tag_role()
            .role_name(name)
            .set_tags(Some(tags(clients)?))
            .send()
            .await
            .ctx(format!("cannot tag role {name}"))?;
    }
    Ok(())
}

fn tags(clients: &Clients) -> anyhow::Result<Vec<Tag>> {
    desired_tags(&clients.stack)
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

/// True when the role exists and carries this stack's tag; `None` when it does not exist.
pub async fn owned(clients: &Clients, name: &str) -> anyhow::Result<Option<bool>> {
    Ok(current_tags(clients, name).await?.map(|tags| {
        is_owned(
            &clients.stack,
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }))
}

/// Deletes every inline policy of the role, then the role.
pub async fn delete(clients: &Clients, name: &str) -> anyhow::Result<()> {
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
    use super::*;

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

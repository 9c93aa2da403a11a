//! The CloudWatch Logs group the state machine writes its execution logs to.

use std::collections::{BTreeMap, HashMap};

use super::aws::{check_owned, desired_tags, is_owned, tags_differ, Clients, SdkResultExt};
use super::Action;

/// The group's ARN (without the `:*` suffix) and tags, or `None` when it does not exist.
pub async fn current(
    clients: &Clients,
) -> anyhow::Result<Option<(String, BTreeMap<String, String>)>> {
    let name = clients.stack.state_machine_log_group();
    let groups = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&name)
        .send()
        .await
        .ctx(format!("cannot list log group {name}"))?;
    let Some(group) = groups
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name.as_str()))
    else {
        return Ok(None);
    };
    let arn = group
        .log_group_arn()
        .map(str::to_string)
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_string()))
        .unwrap_or_else(|| {
            clients
                .stack
                .state_machine_log_group_arn()
                .trim_end_matches(":*")
                .to_string()
        });
    let tags = clients
        .logs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .ctx(format!("cannot read the tags of log group {name}"))?;
    let tags = tags
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(Some((arn, tags)))
}

pub async fn plan(clients: &Clients) -> anyhow::Result<Action> {
    let name = clients.stack.state_machine_log_group();
    let Some((_, tags)) = current(clients).await? else {
        return Ok(Action::Create);
    };
    check_owned(
        &clients.stack,
        "log group",
        &name,
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    Ok(if tags_differ(&clients.stack, &tags) {
        Action::Update(vec!["tags".to_string()])
    } else {
        Action::Unchanged
    })
}

pub async fn apply(clients: &Clients, action: &Action) -> anyhow::Result<()> {
    let name = clients.stack.state_machine_log_group();
    let tags: HashMap<String, String> = desired_tags(&clients.stack).into_iter().collect();
    match action {
        Action::Create => {
            clients
                .logs
                .create_log_group()
                .log_group_name(&name)
                .set_tags(Some(tags))
                .send()
                .await
                .ctx(format!("cannot create log group {name}"))?;
        }
        Action::Update(_) => {
            let (arn, _) = current(clients)
                .await?
                .ok_or_else(|| anyhow::anyhow!("log group {name} disappeared"))?;
            clients
                .logs
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(tags))
                .send()
                .await
                .ctx(format!("cannot tag log group {name}"))?;
        }
        Action::Unchanged | Action::Delete => {}
    }
    Ok(())
}

pub async fn owned(clients: &Clients) -> anyhow::Result<Option<bool>> {
    Ok(current(clients).await?.map(|(_, tags)| {
        is_owned(
            &clients.stack,
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }))
}

pub async fn delete(clients: &Clients) -> anyhow::Result<()> {
    let name = clients.stack.state_machine_log_group();
    clients
        .logs
        .delete_log_group()
        .log_group_name(&name)
        .send()
        .await
        .ctx(format!("cannot delete log group {name}"))?;
    Ok(())
}

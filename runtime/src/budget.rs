//! The error budget (`[rollout] max_failures`): each child whose refresh failed counts its ASG
//! against the budget before it ends. Within the budget the child ends as absorbed (its
//! failure stays recorded on its record, and Finish reports it); one failure more fails the
//! child with `ErrorBudgetSpent`, which fails its wave, so `on_failure` applies at that
//! failure, not at the wave's end.
//!
//! The count is one item per rollout (`#budget`), a string set of the ASGs that spent it,
//! grown by a conditional UpdateItem: concurrent children never overspend it, and a retried
//! or re-run spend of the same ASG counts it once.

use aws_sdk_dynamodb::types::AttributeValue;
use generator::config::MaxFailures;
use generator::names::table::{PARTITION_KEY, SORT_KEY};
use serde_json::{json, Value};

use crate::error::{classify, Error};
use crate::store::{n, s, Store};
use crate::wave_store;

/// The budget item's sort key.
pub const BUDGET_KEY: &str = "#budget";

/// The `spend_budget` action.
pub async fn spend(
    store: &Store,
    rollout_id: &str,
    wave: u32,
    index: u32,
    planned: u32,
    max: MaxFailures,
) -> Result<Value, Error> {
    let asg = wave_store::wave_member(store, rollout_id, wave, index).await?;
    let budget = max.budget(planned);
    let spent_by_this = |spent: u32| json!({"rollout_id": rollout_id, "asg": asg, "budget": budget, "spent": spent});
    if budget > 0 {
        let added = store
            .client()
            .update_item()
            .table_name(store.table())
            .key(PARTITION_KEY, s(rollout_id))
            .key(SORT_KEY, s(BUDGET_KEY))
            .update_expression("ADD spent :asgs")
            .condition_expression(
                "attribute_not_exists(spent) OR (size(spent) < :budget AND NOT contains(spent, :asg))",
            )
            .expression_attribute_values(":asgs", AttributeValue::Ss(vec![asg.clone()]))
            .expression_attribute_values(":asg", s(&asg))
            .expression_attribute_values(":budget", n(budget))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        match added {
            Ok(out) => {
                let spent = out
                    .attributes()
                    .and_then(|a| a.get("spent"))
                    .and_then(|v| v.as_ss().ok())
                    .map_or(1, |set| set.len() as u32);
                tracing::info!(
                    rollout = rollout_id,
                    asg,
                    spent,
                    budget,
                    "failure within the error budget"
                );
                return Ok(spent_by_this(spent));
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(classify("counting a failure against the error budget", e)),
        }
    }
    // Refused: either this ASG already spent its share (a retry or a re-run), or the budget
    // is spent.
    let spent = spent_set(store, rollout_id).await?;
    if spent.contains(&asg) {
        return Ok(spent_by_this(spent.len() as u32));
    }
    Err(Error::BudgetSpent(format!(
        "{asg} failed: one failure more than max_failures = {max} tolerates ({budget} of {planned} planned ASGs{}); already failed: {}",
        match max {
            MaxFailures::Percent(_) => ", rounded down",
            MaxFailures::Count(_) => "",
        },
        if spent.is_empty() { "none".to_string() } else { generator::payload::cap_names(&spent).join(", ") }
    )))
}

/// The ASGs that spent the budget so far.
async fn spent_set(store: &Store, rollout_id: &str) -> Result<Vec<String>, Error> {
    let item = store
        .read_item(rollout_id, BUDGET_KEY, "reading the error budget")
        .await?;
    let mut names: Vec<String> = item
        .as_ref()
        .and_then(|i| i.get("spent"))
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default();
    names.sort();
    Ok(names)
}

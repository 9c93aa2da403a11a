//! The error budget in the rendered state machine (`[rollout] max_failures`): a child's
//! failure goes to `SpendErrorBudget` before it ends, the wave still tolerates no failed
//! child (so the failure past the budget stops it at once), and the budget's arithmetic.

mod common;

use common::machine::{self, machine_json, FIVE_ASGS, STACK};
use generator::config::{self, MaxFailures, StackConfig};
use generator::rollout::states as s;

fn parse(rollout_extra: &str) -> StackConfig {
    let text = format!(
        r#"{STACK}{FIVE_ASGS}[rollout]
strategy = "window"
batch_size = 2
poll_seconds = 45
completion = "poll"
{rollout_extra}
"#
    );
    machine::parse(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_failed_child_spends_the_budget_before_it_ends() {
    for (policy, completion) in [("stop", "poll"), ("rollback", "events")] {
        let config = parse(&format!(
            "on_failure = \"{policy}\"\nmax_failures = \"40%\"\n"
        ));
        let mut config = config;
        config.rollout.completion = if completion == "poll" {
            config::Completion::Poll
        } else {
            config::Completion::Events
        };
        let m = machine_json(&config);
        let wave = &m["States"][s::WAVE];
        assert_eq!(wave["ToleratedFailureCount"], 0, "{policy}");
        assert_eq!(wave["ItemSelector"]["planned.$"], "$.plan.planned");
        let child = &wave["ItemProcessor"]["States"];
        assert_eq!(child[s::START]["Catch"][0]["Next"], s::SPEND_BUDGET);
        assert_eq!(child[s::CHECK]["Catch"][0]["Next"], s::SPEND_BUDGET);
        if completion == "events" {
            let catches = child[s::AWAIT]["Catch"].as_array().unwrap();
            assert_eq!(catches.last().unwrap()["Next"], s::SPEND_BUDGET);
        }
        let spend = &child[s::SPEND_BUDGET];
        assert_eq!(spend["Parameters"]["Payload"]["action"], "spend_budget");
        assert_eq!(spend["Parameters"]["Payload"]["max_failures"], "40%");
        assert!(
            spend.get("Catch").is_none(),
            "past the budget the child fails"
        );
        assert_eq!(spend["Next"], s::REFRESH_FAILED);
        assert_eq!(child[s::REFRESH_FAILED]["Type"], "Succeed");
    }
}

#[test]
fn without_a_budget_a_failed_child_fails_its_wave() {
    let m = machine_json(&parse("on_failure = \"stop\"\n"));
    let child = &m["States"][s::WAVE]["ItemProcessor"]["States"];
    assert!(child.get(s::SPEND_BUDGET).is_none());
    assert!(child[s::START].get("Catch").is_none());
}

#[test]
fn the_budget_is_a_count_or_a_percentage_of_the_planned_asgs_rounded_down() {
    assert_eq!(
        parse("max_failures = 2").rollout.max_failures,
        Some(MaxFailures::Count(2))
    );
    assert_eq!(
        parse("max_failures = \"25%\"").rollout.max_failures,
        Some(MaxFailures::Percent(25))
    );
    assert_eq!(MaxFailures::Count(2).budget(10), 2);
    assert_eq!(MaxFailures::Percent(25).budget(10), 2);
    assert_eq!(MaxFailures::Percent(25).budget(3), 0);
    assert_eq!(MaxFailures::Percent(100).budget(7), 7);
    assert_eq!(MaxFailures::Percent(0).budget(7), 0);
}

//! The rollout state machine, built from a stack config with the ASL DSL.
//!
//! Shape: `Plan` → loop over waves (`SelectWave` → `Wave`, a Distributed Map whose
//! children each start, poll and gate one ASG) → `Finish`. Waves are walked by a counter
//! at the top level, so the parent's history grows by a handful of events per wave while
//! every ASG's poll loop lives in its own child execution: thousands of ASGs fit under the
//! 25,000-event cap. `batches` gets waves of `batch_size`; `window` gets one wave after the
//! canary, over which `MaxConcurrency = batch_size` slides.
//!
//! How a child learns that its refresh has ended is `[rollout] completion`: `poll` waits
//! `poll_seconds` and checks (DescribeInstanceRefreshes) until it has; `events` waits on a
//! task token that the completer Lambda answers when EC2 Auto Scaling's EventBridge event for
//! the refresh arrives, and checks once by polling only when that wait times out (see
//! [`event_wait_seconds`]).
//!
//! No state carries ASG names, so every state stays far under the 256 KiB Step Functions
//! allows whatever the fleet: `Plan` returns counts (the planner records the waves in the
//! table), `SelectWave` asks the refresher for the wave's positions, each child reads its
//! ASG's name at `start` and ends without output.

use serde_json::json;

use crate::asl::{
    Arg, Branch, Catcher, Choice, ChoiceRule, Comparison, Condition, ExecutionType, Fail,
    Intrinsic, JitterStrategy, Kind, Map, Pass, PathOrNull, Retrier, State, StateMachine, States,
    Succeed, Task, Template, Wait,
};
use crate::config::{Approval, Completion, OnFailure, Rollout, StackConfig};
use crate::names::Stack;
use crate::payload::errors;

/// Most time an operator has to approve the next wave.
pub const APPROVAL_TIMEOUT_SECONDS: u32 = 7 * 24 * 3600;

/// With `completion = "events"`, how many times a child's wait for its refresh's event may
/// time out before `timeout_minutes` has passed: each timeout costs one check by polling.
pub const EVENT_WAITS: u32 = 3;

/// `TimeoutSeconds` of a child's wait for its refresh's event (`completion = "events"`):
/// `timeout_minutes` split in [`EVENT_WAITS`], and never shorter than `poll_seconds`.
///
/// The refresh's span is not known in advance; `timeout_minutes` is the operator's bound
/// on it. A refresh that ends within the first third of its timeout is never polled when its
/// event arrives; a longer one is polled once per third that passes (so at most
/// [`EVENT_WAITS`] times, and the check that finds `timeout_minutes` passed fails it with
/// `RefreshTimedOut`, as polling does). A lost event costs at most one wait: the check after
/// the timeout finds the refresh ended.
pub fn event_wait_seconds(rollout: &Rollout) -> u32 {
    (rollout.timeout_minutes.saturating_mul(60))
        .div_ceil(EVENT_WAITS)
        .max(rollout.poll_seconds)
}

/// State names, shared with the report and tests.
pub mod states {
    pub const PLAN: &str = "Plan";
    pub const FIRST_WAVE: &str = "FirstWave";
    pub const MORE_WAVES: &str = "MoreWaves";
    pub const SELECT_WAVE: &str = "SelectWave";
    pub const WAVE: &str = "Wave";
    pub const BAKE: &str = "BakeWave";
    pub const CHECK_ALARMS: &str = "CheckWaveAlarms";
    pub const IS_LAST_WAVE: &str = "IsLastWave";
    pub const APPROVE_NEXT_WAVE: &str = "ApproveNextWave";
    pub const NEXT_WAVE: &str = "NextWave";
    pub const FINISH: &str = "Finish";
    pub const ANY_FAILED: &str = "AnyFailed";
    pub const DONE: &str = "Done";
    pub const ROLL_BACK: &str = "RollBack";
    pub const ROLLBACKS_ENDED: &str = "RollbacksEnded";
    pub const WAIT_FOR_ROLLBACKS: &str = "WaitForRollbacks";
    pub const CHECK_ROLLBACKS: &str = "CheckRollbacks";
    pub const FINISH_FAILED: &str = "FinishFailed";
    pub const ROLLOUT_FAILED: &str = "RolloutFailed";
    pub const SUMMARY_LOST: &str = "SummaryNotRecorded";
    pub const LOCKED: &str = "Locked";
    pub const START: &str = "StartRefresh";
    pub const STARTED: &str = "Started";
    pub const WAIT: &str = "WaitForRefresh";
    pub const CHECK: &str = "CheckRefresh";
    pub const AWAIT: &str = "AwaitRefreshEvent";
    pub const GATE: &str = "IsRefreshed";
    pub const REFRESHED: &str = "Refreshed";
    pub const REFRESH_FAILED: &str = "RefreshFailed";
    pub const SPEND_BUDGET: &str = "SpendErrorBudget";
}

use states::*;

/// The state machine for a stack.
pub fn build(config: &StackConfig) -> StateMachine {
    let stack = Stack::new(config);
    let b = Builder {
        config,
        stack: &stack,
    };
    let waves = b.wave_loop();
    // The planner refuses a plan with more waves than the wave loop's history allows.
    let max_waves = crate::review::max_waves_of(&waves);
    let mut top = States::new()
        .add(PLAN, b.plan(max_waves))
        .add(FIRST_WAVE, b.first_wave());
    for (name, state) in waves.iter() {
        top.push(name, state.clone());
    }
    top.push(FINISH, b.finish());
    // Whatever the policy, an execution never succeeds while the table holds a failed ASG.
    top.push(ANY_FAILED, b.any_failed());
    top.push(DONE, State::new(Kind::Succeed(Succeed::default())));
    if config.rollout.on_failure == OnFailure::Rollback {
        top.push(ROLL_BACK, b.roll_back());
        top.push(ROLLBACKS_ENDED, b.rollbacks_ended());
        top.push(
            WAIT_FOR_ROLLBACKS,
            State::new(Kind::Wait(Wait::seconds(b.rollback_poll_seconds()))).next(CHECK_ROLLBACKS),
        );
        top.push(CHECK_ROLLBACKS, b.check_rollbacks());
    }
    top.push(FINISH_FAILED, b.finish_failed());
    top.push(
        ROLLOUT_FAILED,
        Kind::Fail(Fail::error(errors::ROLLOUT_FAILED).cause_path("$.summary.message")),
    );
    top.push(
        SUMMARY_LOST,
        Kind::Fail(Fail::error(errors::ROLLOUT_FAILED).cause(
            "the rollout failed and its summary could not be recorded: see the execution history",
        )),
    );
    top.push(
        LOCKED,
        Kind::Fail(Fail::error(errors::ROLLOUT_LOCKED).cause_path("$.error.Cause")),
    );
    let mut machine = StateMachine::new(top);
    machine.comment = Some(format!(
        "asg-refresh {}: {} of {} ASGs at a time, on failure {}. Generated by `cargo xtask render`, do not edit by hand.",
        config.name,
        config.rollout.strategy.as_str(),
        config.rollout.batch_size,
        config.rollout.on_failure.as_str(),
    ));
    // Ordered groups set their own batch sizes: say them, in order.
    let groups = crate::groups::plan_groups(config);
    if let (Some(comment), false) = (machine.comment.as_mut(), groups.is_empty()) {
        let order: Vec<String> = groups
            .iter()
            .map(|g| format!("{} ({} at a time)", g.name, g.batch_size))
            .collect();
        comment.push_str(&format!(" Ordered groups: {}.", order.join(", then ")));
    }
    machine
}

struct Builder<'a> {
    config: &'a StackConfig,
    stack: &'a Stack,
}

impl Builder<'_> {
    fn invoke_resource(&self, suffix: &str) -> String {
        format!(
            "arn:{}:states:::lambda:invoke{suffix}",
            self.stack.partition
        )
    }

    /// A Task invoking one of the stack's Lambdas with `payload`, retried on transient
    /// faults; it times out 30 s after the function would.
    fn invoke(&self, function: &str, function_timeout: u32, payload: Template) -> Task {
        Task {
            resource: self.invoke_resource(""),
            parameters: Some(
                Template::new()
                    .lit("FunctionName", self.stack.function_arn(function))
                    .object("Payload", payload),
            ),
            timeout_seconds: Some(function_timeout + 30),
            retry: retriers(&errors::LAMBDA_UNFINISHED),
            ..Task::default()
        }
    }

    fn planner(&self, payload: Template) -> Task {
        self.invoke(
            &self.stack.planner_function(),
            self.config.lambda.planner_timeout_seconds,
            payload,
        )
    }

    fn refresher(&self, payload: Template) -> Task {
        self.invoke(
            &self.stack.refresher_function(),
            self.config.lambda.timeout_seconds,
            payload,
        )
    }

    /// The states that walk the waves: select the next, run it, its gate (bake, then read
    /// its alarms), the approval, and on to the next.
    fn wave_loop(&self) -> States {
        let rollout = &self.config.rollout;
        let mut waves = States::new()
            .add(MORE_WAVES, self.more_waves())
            .add(SELECT_WAVE, self.select_wave())
            .add(WAVE, self.wave());
        if rollout.bake_minutes > 0 {
            waves.push(BAKE, self.bake());
        }
        if !rollout.wave_alarms.is_empty() {
            waves.push(CHECK_ALARMS, self.check_alarms());
        }
        if rollout.approval.is_on() {
            waves.push(IS_LAST_WAVE, self.is_last_wave());
            waves.push(APPROVE_NEXT_WAVE, self.approve_next_wave());
        }
        waves.push(NEXT_WAVE, self.next_wave());
        waves
    }

    fn failure_target(&self) -> &'static str {
        if self.config.rollout.on_failure == OnFailure::Rollback {
            ROLL_BACK
        } else {
            FINISH_FAILED
        }
    }

    fn plan(&self, max_waves: u64) -> State {
        let targets = &self.config.targets;
        let rollout = &self.config.rollout;
        let mut payload = Template::new()
            .path("rollout_id", "$.rollout_id")
            .path("ami", "$.ami")
            .lit(
                "targets",
                json!({"asgs": targets.asgs, "tags": targets.tags}),
            )
            .lit("canary", json!(rollout.canary))
            .lit("strategy", rollout.strategy.as_str())
            .lit("batch_size", rollout.batch_size)
            .lit("max_waves", max_waves)
            .lit("auto_rollback", self.config.refresh.auto_rollback)
            .lit("instance_roles", json!(self.config.refresh.instance_roles));
        // Ordered groups travel only when there are some: other stacks' Plan is unchanged.
        if !targets.groups.is_empty() {
            payload = payload.lit("groups", json!(crate::groups::plan_groups(self.config)));
        }
        let mut task = self.planner(payload);
        // Counts only: the waves stay in the table, so the state is small at any fleet size.
        task.result_selector = Some(answer_fields(&["wave_count", "last_wave", "planned"]));
        task.result_path = PathOrNull::path("$.plan");
        task.catch = vec![
            Catcher::new(&[errors::ROLLOUT_LOCKED], LOCKED).result_path("$.error"),
            Catcher::new(&["States.ALL"], FINISH_FAILED).result_path("$.error"),
        ];
        State::new(Kind::Task(task))
            .comment("Resolve targets, run the pre-checks, split into waves, take the stack lock.")
            .next(FIRST_WAVE)
    }

    fn first_wave(&self) -> State {
        State::new(Kind::Pass(Pass {
            result: Some(json!({"wave": 0})),
            result_path: PathOrNull::path("$.cursor"),
            ..Pass::default()
        }))
        .next(MORE_WAVES)
    }

    fn more_waves(&self) -> State {
        State::new(Kind::Choice(Choice {
            choices: vec![ChoiceRule::new(
                Condition::test(
                    "$.cursor.wave",
                    Comparison::NumericLessThanPath("$.plan.wave_count".into()),
                ),
                SELECT_WAVE,
            )],
            default: Some(FINISH.into()),
            ..Choice::default()
        }))
    }

    fn select_wave(&self) -> State {
        let mut task = self.refresher(event("wave").path("wave", "$.cursor.wave"));
        let mut kept = vec!["wave", "items", "started_at"];
        if !self.config.targets.groups.is_empty() {
            // Ordered groups: each wave's concurrency is its group's batch size (the Map's
            // MaxConcurrencyPath), and the wave says which group it belongs to.
            kept.extend(["max_concurrency", "group"]);
        }
        task.result_selector = Some(answer_fields(&kept));
        task.result_path = PathOrNull::path("$.current");
        task.catch = catch_all(self.failure_target(), "$.error");
        State::new(Kind::Task(task))
            .comment("The wave's positions (numbers, not names): each child reads its ASG from the table.")
            .next(WAVE)
    }

    fn wave(&self) -> State {
        let rollout = &self.config.rollout;
        let mut map = Map::new("$.current.items", self.per_asg());
        map.item_selector = Some(
            Template::new()
                .path("rollout_id", "$.rollout_id")
                .path("ami", "$.ami")
                .path("wave", "$.current.wave")
                .path("index", "$$.Map.Item.Value"),
        );
        if self.has_budget() {
            // The error budget's percentage is of the planned ASGs.
            if let Some(selector) = map.item_selector.take() {
                map.item_selector = Some(selector.path("planned", "$.plan.planned"));
            }
        }
        map.max_concurrency = Some(rollout.batch_size);
        if !self.config.targets.groups.is_empty() {
            // Waves of different groups run at different batch sizes: the `wave` action says
            // each wave's, from the plan (MaxConcurrencyPath, evaluated on the Map's input).
            map.max_concurrency = None;
            map.max_concurrency_path = Some("$.current.max_concurrency".into());
        }
        match rollout.on_failure {
            // Any failed ASG fails the wave, which stops the rollout.
            OnFailure::Stop | OnFailure::Rollback => map.tolerated_failure_count = Some(0),
            // Each child catches its own failure (see per_asg), so the wave never sees one:
            // the same on every engine, with no ToleratedFailurePercentage to disagree on.
            // The refresher recorded the failure; Finish reports it.
            OnFailure::Continue => {}
        }
        map.result_path = Some(PathOrNull::Null);
        map.catch = catch_all(self.failure_target(), "$.error");
        let after = if rollout.bake_minutes > 0 {
            BAKE
        } else if !rollout.wave_alarms.is_empty() {
            CHECK_ALARMS
        } else {
            self.after_gate()
        };
        State::new(Kind::Map(map))
            .comment("Refresh the wave's ASGs, at most batch_size at once, each in its own child execution.")
            .next(after)
    }

    /// Where a wave goes once its gate (bake, alarms) has passed.
    fn after_gate(&self) -> &'static str {
        if self.config.rollout.approval.is_on() {
            IS_LAST_WAVE
        } else {
            NEXT_WAVE
        }
    }

    /// `bake_minutes` of waiting after the wave's refreshes have ended.
    fn bake(&self) -> State {
        let rollout = &self.config.rollout;
        let next = if rollout.wave_alarms.is_empty() {
            self.after_gate()
        } else {
            CHECK_ALARMS
        };
        State::new(Kind::Wait(Wait::seconds(rollout.bake_minutes * 60)))
            .comment("Bake: let the wave's new instances serve before the next wave starts.")
            .next(next)
    }

    /// Reads `wave_alarms` (history since the wave's start, and current state): one that went
    /// to ALARM fails the wave with WaveAlarm, which goes where a failed wave goes.
    fn check_alarms(&self) -> State {
        let mut task = self.refresher(
            event("check_alarms")
                .path("wave", "$.current.wave")
                .path("since", "$.current.started_at")
                .lit("alarms", json!(self.config.rollout.wave_alarms)),
        );
        task.result_path = Some(PathOrNull::Null);
        task.catch = catch_all(self.failure_target(), "$.error");
        State::new(Kind::Task(task))
            .comment("DescribeAlarmHistory and DescribeAlarms of wave_alarms: any ALARM since the wave started fails it (WaveAlarm).")
            .next(self.after_gate())
    }

    /// `[rollout] max_failures` with a policy that stops (never with `continue`, which the
    /// config refuses).
    fn has_budget(&self) -> bool {
        self.config.rollout.max_failures.is_some()
            && self.config.rollout.on_failure != OnFailure::Continue
    }

    /// Where a failed step of a child goes: `continue` ends the child (the failure is
    /// recorded); an error budget spends one failure first; otherwise nowhere (the child fails).
    fn absorb_target(&self) -> Option<&'static str> {
        if self.config.rollout.on_failure == OnFailure::Continue {
            Some(REFRESH_FAILED)
        } else if self.has_budget() {
            Some(SPEND_BUDGET)
        } else {
            None
        }
    }

    /// `SpendErrorBudget`: counts the child's failure against `max_failures`; within it the
    /// child ends (the failure is recorded; Finish reports it), past it the child fails
    /// with ErrorBudgetSpent and so does its wave.
    fn spend_budget(&self) -> State {
        let max = self
            .config
            .rollout
            .max_failures
            .expect("spend_budget only with max_failures");
        let mut task = self.refresher(
            event("spend_budget")
                .path("wave", "$.wave")
                .path("index", "$.index")
                .path("planned", "$.planned")
                .lit("max_failures", json!(max)),
        );
        task.result_path = Some(PathOrNull::Null);
        State::new(Kind::Task(task))
            .comment("max_failures: count this failure; within the budget the child ends, past it the wave fails (ErrorBudgetSpent).")
            .next(REFRESH_FAILED)
    }

    /// One ASG: start, then poll until the refresh has ended (the gate); with
    /// `completion = "events"`, wait for its event instead, and check once by polling after
    /// each wait that times out.
    fn per_asg(&self) -> Branch {
        let rollout = &self.config.rollout;
        let absorb_to = self.absorb_target();
        let start = self.step(
            event("start")
                .path("wave", "$.wave")
                .path("index", "$.index")
                .path("ami", "$.ami")
                .lit("preferences", self.refresh_preferences()),
            absorb_to,
        );
        let check = self.step(
            event("check")
                .path("asg", "$.refresh.asg")
                .lit("timeout_minutes", rollout.timeout_minutes),
            absorb_to,
        );
        let events = rollout.completion == Completion::Events;
        let not_done = if events { AWAIT } else { WAIT };
        let mut states = States::new()
            .add(
                START,
                State::new(Kind::Task(start))
                    .comment("New launch template version with the AMI, then StartInstanceRefresh; adopts a refresh it already started.")
                    .next(STARTED),
            )
            .add(STARTED, refresh_gate(not_done));
        if events {
            states.push(
                AWAIT,
                State::new(Kind::Task(self.await_event(absorb_to)))
                    .comment("Store the task token with the ASG's record; the completer answers it when the refresh's event arrives. A timeout (a lost event) checks once by polling.")
                    .next(REFRESHED),
            );
        } else {
            states.push(
                WAIT,
                State::new(Kind::Wait(Wait::seconds(rollout.poll_seconds))).next(CHECK),
            );
        }
        states.push(
            CHECK,
            State::new(Kind::Task(check))
                .comment("DescribeInstanceRefreshes; fails with RefreshFailed or RefreshTimedOut.")
                .next(GATE),
        );
        states.push(GATE, refresh_gate(not_done));
        states.push(REFRESHED, State::new(Kind::Succeed(silent())));
        self.push_absorbed_end(&mut states, absorb_to);
        Branch::new(states).distributed(ExecutionType::Standard)
    }

    /// The StartInstanceRefresh preferences of `[refresh]`, as the refresher reads them.
    fn refresh_preferences(&self) -> serde_json::Value {
        let r = &self.config.refresh;
        json!({
            "min_healthy_percentage": r.min_healthy_percentage,
            "max_healthy_percentage": r.max_healthy_percentage,
            "instance_warmup": r.instance_warmup,
            "skip_matching": r.skip_matching,
            "auto_rollback": r.auto_rollback,
            "alarms": r.alarms,
            "checkpoint_percentages": r.checkpoint_percentages,
            "checkpoint_delay": r.checkpoint_delay,
            "bake_time": r.bake_time,
        })
    }

    /// A child's step on its ASG (start, check) sending `payload`: the refresher's answer
    /// (the ASG, its status, whether it is done) goes to `$.refresh`; a failure goes to
    /// `absorb_to` when there is one, and fails the child otherwise.
    fn step(&self, payload: Template, absorb_to: Option<&str>) -> Task {
        let mut task = self.refresher(payload);
        task.result_selector = Some(answer_fields(&["asg", "status", "done"]));
        task.result_path = PathOrNull::path("$.refresh");
        if let Some(target) = absorb_to {
            task.catch = catch_all(target, "$.error");
        }
        task
    }

    /// Where a child's absorbed failure ends (see [`Self::absorb_target`]): through
    /// `SpendErrorBudget`, or at once with `continue`; either way without failing the child.
    fn push_absorbed_end(&self, states: &mut States, absorb_to: Option<&str>) {
        let why = match absorb_to {
            Some(SPEND_BUDGET) => {
                states.push(SPEND_BUDGET, self.spend_budget());
                "Within max_failures: the refresher recorded the failure; Finish reports it."
            }
            Some(_) => {
                "on_failure = continue: the refresher recorded the failure; Finish reports it."
            }
            None => return,
        };
        states.push(
            REFRESH_FAILED,
            State::new(Kind::Succeed(silent())).comment(why),
        );
    }

    /// The wait for the refresh's event: a `.waitForTaskToken` Task on the refresher, which
    /// stores the token (and answers it itself when the refresh's end was recorded first).
    /// The completer answers with SendTaskSuccess (the refresh succeeded) or SendTaskFailure
    /// `RefreshEnded` (it ended Failed, Cancelled or rolled back), which goes to one check so
    /// that the table gets AWS's reason and the child fails as polling fails it. Retried like
    /// every Lambda Task, except `States.Timeout`: that is the event not coming, and goes to
    /// the same check.
    fn await_event(&self, absorb_to: Option<&'static str>) -> Task {
        let mut task = self.wait_for_token(
            event("await_refresh").path("asg", "$.refresh.asg"),
            event_wait_seconds(&self.config.rollout),
        );
        task.catch = vec![
            Catcher::new(&["States.Timeout", errors::REFRESH_ENDED], CHECK).result_path("$.wait"),
        ];
        if let Some(target) = absorb_to {
            task.catch
                .push(Catcher::new(&["States.ALL"], target).result_path("$.error"));
        }
        task
    }

    /// A `.waitForTaskToken` Task on the refresher: `payload` and the task token go to the
    /// refresher, which stores the token; the state waits up to `timeout_seconds` for an
    /// answer and discards its result. Retried like every Lambda Task, except
    /// `States.Timeout`: the answer not coming is an outcome, never retried.
    fn wait_for_token(&self, payload: Template, timeout_seconds: u32) -> Task {
        let mut task = self.refresher(payload.path("task_token", "$$.Task.Token"));
        task.resource = self.invoke_resource(".waitForTaskToken");
        task.timeout_seconds = Some(timeout_seconds);
        task.retry = retriers(&errors::LAMBDA_UNFINISHED_NO_TIMEOUT);
        task.result_path = Some(PathOrNull::Null);
        task
    }

    /// Whether the next wave waits for approval: never after the last wave, and with
    /// `approval = "after-canary"` only after the first (the canary) wave.
    fn is_last_wave(&self) -> State {
        let mut choices = vec![ChoiceRule::new(
            Condition::test(
                "$.cursor.wave",
                Comparison::NumericEqualsPath("$.plan.last_wave".into()),
            ),
            NEXT_WAVE,
        )];
        if self.config.rollout.approval == Approval::AfterCanary {
            choices.push(ChoiceRule::new(
                Condition::test("$.cursor.wave", Comparison::NumericGreaterThan(0.0)),
                NEXT_WAVE,
            ));
        }
        State::new(Kind::Choice(Choice {
            choices,
            default: Some(APPROVE_NEXT_WAVE.into()),
            ..Choice::default()
        }))
    }

    fn approve_next_wave(&self) -> State {
        // Past the approval timeout nobody approved: the wave's failure path.
        let mut task = self.wait_for_token(
            event("await_approval").path("wave", "$.cursor.wave"),
            APPROVAL_TIMEOUT_SECONDS,
        );
        task.catch = catch_all(self.failure_target(), "$.error");
        State::new(Kind::Task(task))
            .comment("Pause until an operator approves the next wave.")
            .next(NEXT_WAVE)
    }

    fn next_wave(&self) -> State {
        State::new(Kind::Pass(Pass {
            parameters: Some(Template::new().call(
                "wave",
                Intrinsic::MathAdd(Arg::path("$.cursor.wave"), Arg::Num(1.0)),
            )),
            result_path: PathOrNull::path("$.cursor"),
            ..Pass::default()
        }))
        .next(MORE_WAVES)
    }

    fn finish_payload(&self, outcome: &str) -> Template {
        let t = event("finish").lit("outcome", outcome);
        if outcome == "failed" {
            t.path("error", "$.error")
        } else {
            t
        }
    }

    fn summary(&self) -> Template {
        answer_fields(&["succeeded", "failed", "skipped", "message"])
    }

    fn finish(&self) -> State {
        let mut task = self.refresher(self.finish_payload("succeeded"));
        task.result_selector = Some(self.summary());
        task.result_path = PathOrNull::path("$.summary");
        State::new(Kind::Task(task))
            .comment("Release the lock and write the rollout summary.")
            .next(ANY_FAILED)
    }

    fn any_failed(&self) -> State {
        State::new(Kind::Choice(Choice {
            choices: vec![ChoiceRule::new(
                Condition::test("$.summary.failed", Comparison::NumericGreaterThan(0.0)),
                ROLLOUT_FAILED,
            )],
            default: Some(DONE.into()),
            ..Choice::default()
        }))
    }

    fn roll_back(&self) -> State {
        let task = self.refresher(
            event("rollback")
                .lit("scope", self.config.rollout.rollback_scope().as_str())
                .lit(
                    "preferences",
                    json!(crate::payload::RefreshPreferences::from(
                        &self.config.refresh
                    )),
                ),
        );
        // The first read of the rollbacks is round 0.
        let selector = answer_fields(&["pending"]).lit("round", 0);
        self.settle(
            task,
            selector,
            "Roll back every refresh of this rollout that is still in flight.",
        )
    }

    /// A step of the rollback (`task`: start the rollbacks, or read them) going on to
    /// `RollbacksEnded`: `selector` keeps how many are pending and the round at `$.settle`;
    /// an error ends the failure path at `FinishFailed` with `$.rollback_error`.
    fn settle(&self, mut task: Task, selector: Template, comment: &str) -> State {
        task.result_selector = Some(selector);
        task.result_path = PathOrNull::path("$.settle");
        task.catch = catch_all(FINISH_FAILED, "$.rollback_error");
        State::new(Kind::Task(task))
            .comment(comment)
            .next(ROLLBACKS_ENDED)
    }

    /// Seconds between two reads of the rollbacks: the poll interval, stretched so that
    /// [`crate::review::SETTLE_ROUNDS_MAX`] reads cover `timeout_minutes`.
    fn rollback_poll_seconds(&self) -> u32 {
        let rollout = &self.config.rollout;
        let spread =
            (rollout.timeout_minutes * 60).div_ceil(crate::review::SETTLE_ROUNDS_MAX as u32);
        rollout.poll_seconds.max(spread)
    }

    /// How many reads of the rollbacks before the rollout stops waiting for them.
    fn rollback_rounds(&self) -> u32 {
        (self.config.rollout.timeout_minutes * 60)
            .div_ceil(self.rollback_poll_seconds())
            .max(1)
    }

    fn rollbacks_ended(&self) -> State {
        State::new(Kind::Choice(Choice {
            choices: vec![ChoiceRule::new(
                Condition::and(vec![
                    Condition::test("$.settle.pending", Comparison::NumericGreaterThan(0.0)),
                    Condition::test("$.settle.round", Comparison::NumericLessThan(f64::from(self.rollback_rounds()))),
                ]),
                WAIT_FOR_ROLLBACKS,
            )],
            default: Some(FINISH_FAILED.into()),
            ..Choice::default()
        }))
        .comment("Wait (bounded by timeout_minutes) until every rollback has ended, so the table says how each ended.")
    }

    fn check_rollbacks(&self) -> State {
        self.settle(
            self.refresher(event("settle_rollbacks").path("round", "$.settle.round")),
            answer_fields(&["pending", "round"]),
            "DescribeInstanceRefreshes of each rollback; records how far each got.",
        )
    }

    fn finish_failed(&self) -> State {
        let mut task = self.refresher(self.finish_payload("failed"));
        task.result_selector = Some(self.summary());
        task.result_path = PathOrNull::path("$.summary");
        task.catch = catch_all(SUMMARY_LOST, "$.finish_error");
        State::new(Kind::Task(task))
            .comment("Release the lock and record why the rollout failed.")
            .next(ROLLOUT_FAILED)
    }
}

/// Retriers of a Lambda Task: transient faults of the Lambda service and the handlers'
/// own `Retryable` with backoff; then, a few times, invocations that did not finish
/// (`unfinished`: a crash or timeout of the function, or the Task's own timeout). Every
/// action is safe to run again: `start` adopts the refresh it already started, `check`,
/// `wave` and `settle_rollbacks` read and record, `finish` rewrites the summary and
/// releases the lock only if still held, and `plan` keeps recorded progress.
fn retriers(unfinished: &[&str]) -> Vec<Retrier> {
    let mut transient: Vec<&str> = errors::LAMBDA_TRANSIENT.to_vec();
    transient.push(errors::RETRYABLE);
    vec![
        Retrier::new(&transient)
            .interval(2)
            .attempts(6)
            .backoff(2.0)
            .max_delay(60)
            .jitter(JitterStrategy::Full),
        Retrier::new(unfinished)
            .interval(5)
            .attempts(2)
            .backoff(2.0),
    ]
}

/// The event of the refresher's `action` for this execution's rollout; the action's own
/// fields follow.
fn event(action: &str) -> Template {
    Template::new()
        .lit("action", action)
        .path("rollout_id", "$.rollout_id")
}

/// A ResultSelector keeping `fields` of a Lambda's answer (its `Payload`), under the same
/// names.
fn answer_fields(fields: &[&str]) -> Template {
    fields.iter().fold(Template::new(), |selector, field| {
        selector.path(field, &format!("$.Payload.{field}"))
    })
}

/// Every error (`States.ALL`) goes to `next`, with the error at `result_path`.
fn catch_all(next: &str, result_path: &str) -> Vec<Catcher> {
    vec![Catcher::new(&["States.ALL"], next).result_path(result_path)]
}

/// The gate after a child's start or check: done (refreshed, or nothing to do) ends the
/// child; otherwise `not_done` (poll again, or wait for the refresh's event again).
fn refresh_gate(not_done: &str) -> State {
    State::new(Kind::Choice(Choice {
        choices: vec![ChoiceRule::new(
            Condition::test("$.refresh.done", Comparison::BooleanEquals(true)),
            REFRESHED,
        )],
        default: Some(not_done.into()),
        ..Choice::default()
    }))
}

/// A Succeed state that returns nothing: a Distributed Map gathers every child's output
/// into its result, which must stay under 256 KiB at any fleet size.
fn silent() -> Succeed {
    let mut succeed = Succeed::default();
    succeed.filters.output_path = Some(PathOrNull::Null);
    succeed
}

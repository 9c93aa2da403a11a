//! `cargo xtask demo`: the whole job on the local emulator, in one command. Starts the
//! emulator (moto plus instance refreshes, Lambda and Step Functions executions), deploys
//! `envs/local.toml` to it, creates a fleet of launch templates and Auto Scaling groups,
//! rolls a new AMI across it with live progress and prints the final table.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use asg_refresh_emulator::Moto;
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use clap::Args;
use generator::config::StackConfig;

use crate::deploy::aws::{runtime, sdk_config, SdkResultExt};
use crate::deploy::DeployArgs;
use crate::drift;
use crate::env_file::{Endpoint, StackSelector};
use crate::rollout::{self, Ops};

/// The AMI the fleet starts on.
const OLD_AMI: &str = "ami-0123456789abcdef0";
/// The AMI the demo rolls out.
const NEW_AMI: &str = "ami-0fedcba9876543210";

/// The demo fleet: name, desired capacity, seconds its instance refresh takes.
const FLEET: [(&str, i32, u32); 12] = [
    ("demo-api-1", 2, 6),
    ("demo-api-2", 2, 9),
    ("demo-api-3", 2, 4),
    ("demo-web-1", 3, 12),
    ("demo-web-2", 3, 5),
    ("demo-web-3", 3, 8),
    ("demo-web-4", 3, 3),
    ("demo-worker-1", 1, 10),
    ("demo-worker-2", 1, 7),
    ("demo-worker-3", 1, 4),
    ("demo-cache-1", 2, 6),
    // Scaled to zero: the planner skips it and says why.
    ("demo-batch-1", 0, 5),
];

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Seconds between two progress reads
    #[arg(long, default_value_t = 1, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=60))]
    pub interval: u64,
}

impl DemoArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        keep_off_real_credentials();
        let stack = StackSelector {
            env: Some("local".into()),
            config: None,
        };
        let (_, config) = stack.load()?;
        let (emulator, endpoint) = deploy_to_emulator(stack)?;
        let interval = Duration::from_secs(self.interval);
        let result = runtime()?.block_on(roll_out(&config, &endpoint, interval, started));
        if result.is_err() {
            let logs = emulator.lambda_logs();
            if !logs.is_empty() {
                eprintln!("the Lambdas' output, for the error below:\n{logs}");
            }
        }
        drop(emulator);
        result
    }
}

/// The emulator takes any credentials; these keep the SDK off real ones.
fn keep_off_real_credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "demo");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "demo");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    for var in ["AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"] {
        std::env::remove_var(var);
    }
}

/// Steps 1 to 3: installs the emulator while building the Lambdas, starts it, deploys the
/// local stack there. Returns the running emulator and its endpoint.
fn deploy_to_emulator(stack: StackSelector) -> anyhow::Result<(Moto, String)> {
    println!(
        "== 1/6 installing the emulator into .venv (tests/requirements.txt; a first install takes a minute or two) \
         while building the Lambdas for it"
    );
    let zips = tempfile_dir("demo-zips")?;
    // pip waits on the network, cargo on the CPU: side by side.
    let python = std::thread::spawn(crate::tools::ensure_python);
    let built = crate::build::local_zips(&zips);
    let python = python
        .join()
        .map_err(|_| anyhow!("installing the emulator panicked"))?;
    let deployed = built.and(python).and_then(|_| {
        println!("== 2/6 starting the emulator on 127.0.0.1");
        let emulator = Moto::try_start_extended().map_err(|e| anyhow!(e))?;
        let endpoint = emulator.endpoint();
        println!("   emulator at {endpoint}");
        println!("== 3/6 deploying envs/local.toml");
        DeployArgs {
            stack,
            dry_run: false,
            endpoint: Endpoint::at(endpoint.clone()),
            zip_dir: Some(zips.clone()),
        }
        .run()
        .context("deploying the local stack to the emulator")?;
        Ok((emulator, endpoint))
    });
    let _ = std::fs::remove_dir_all(&zips);
    deployed
}

/// Steps 4 to 6: creates the fleet, rolls [`NEW_AMI`] out with live progress, and checks
/// what each group launches afterwards.
async fn roll_out(
    config: &StackConfig,
    endpoint: &str,
    interval: Duration,
    started: Instant,
) -> anyhow::Result<()> {
    println!(
        "== 4/6 creating the fleet: {} Auto Scaling groups on {OLD_AMI}",
        FLEET.len()
    );
    create_fleet(config, endpoint).await?;
    println!(
        "== 5/6 rolling out {NEW_AMI}: strategy {}, {} at a time, on failure {}",
        config.rollout.strategy.as_str(),
        config.rollout.batch_size,
        config.rollout.on_failure.as_str()
    );
    let ops = Ops::connect(config, Some(endpoint)).await?;
    let rollout_id = format!("demo-{}", rollout::view::stamp(rollout::now()));
    let (name, _) = ops.start(&rollout_id, NEW_AMI, false).await?;
    println!("   rollout {rollout_id}, execution {name}");
    let last = ops.watch(&rollout_id, interval).await?;
    rollout::outcome(&last)?;
    println!("== 6/6 what each group launches now");
    check_fleet(config, endpoint).await?;
    let t = &last.totals;
    println!(
        "demo done in {:.0} s: {} ASGs refreshed to {NEW_AMI}, {} skipped (see the table for why)",
        started.elapsed().as_secs_f64(),
        t.successful,
        t.skipped
    );
    Ok(())
}

/// One launch template per group (on [`OLD_AMI`]) and the groups, tagged so the local
/// stack's targets find them, with the emulator's refresh duration tag.
async fn create_fleet(config: &StackConfig, endpoint: &str) -> anyhow::Result<()> {
    let sdk = sdk_config(config, Some(endpoint)).await?;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);
    for (name, capacity, seconds) in FLEET {
        let template = ec2
            .create_launch_template()
            .launch_template_name(format!("{name}-lt"))
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(OLD_AMI)
                    .instance_type("t3.micro".into())
                    .build(),
            )
            .send()
            .await
            .ctx(format!("creating the launch template of {name}"))?;
        let template_id = template
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .unwrap_or_default();
        let mut create = autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(template_id)
                    .version("$Default")
                    .build(),
            )
            .min_size(0)
            .max_size(capacity.max(1) * 2)
            .desired_capacity(capacity)
            .availability_zones(format!("{}a", config.region));
        let tags = config
            .targets
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([("emulator:refresh-seconds".to_string(), seconds.to_string())]);
        for (key, value) in tags {
            create = create.tags(
                Tag::builder()
                    .key(key)
                    .value(value)
                    .propagate_at_launch(false)
                    .build(),
            );
        }
        create
            .send()
            .await
            .ctx(format!("creating Auto Scaling group {name}"))?;
        println!("   {name:<15} capacity {capacity}, refresh takes {seconds:>2} s");
    }
    Ok(())
}

/// Reads each group's launch template version and its AMI, and fails unless every group
/// with instances launches [`NEW_AMI`] and the scaled-to-zero one was left on [`OLD_AMI`].
async fn check_fleet(config: &StackConfig, endpoint: &str) -> anyhow::Result<()> {
    let sdk = sdk_config(config, Some(endpoint)).await?;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);
    let names: Vec<String> = FLEET.iter().map(|(name, ..)| name.to_string()).collect();
    let groups = drift::current_groups(&autoscaling, &names).await?;
    let mut wrong = Vec::new();
    for (name, capacity, _) in FLEET {
        let group = groups
            .get(name)
            .ok_or_else(|| anyhow!("Auto Scaling group {name} is gone"))?;
        if group.template_id.is_none() && group.template_name.is_none() {
            bail!("Auto Scaling group {name} has no launch template");
        }
        let (number, image) = drift::version_image(&ec2, group)
            .await
            .with_context(|| format!("describing the launch template of {name}"))?;
        let version = group.version.as_deref().unwrap_or("$Default");
        let number = number.as_deref().unwrap_or("0");
        let image = image.as_deref().unwrap_or("-");
        let expected = if capacity > 0 { NEW_AMI } else { OLD_AMI };
        let verdict = if image == expected {
            "ok"
        } else {
            "UNEXPECTED"
        };
        println!(
            "   {name:<15} launch template version {number:<3} ({version:<8}) {image}  {verdict}"
        );
        if image != expected {
            wrong.push(format!("{name} launches {image}, expected {expected}"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "the rollout did not leave the fleet as expected: {}",
            wrong.join("; ")
        ))
    }
}

/// A fresh folder under the system's temporary directory, for this process.
fn tempfile_dir(what: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("asg-refresh-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

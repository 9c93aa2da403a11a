//! Fixtures for the Lambda tests: SDK clients pointed at a moto server, the progress
//! table, launch templates, target groups and ASGs.

#![allow(dead_code)]

#[path = "../../../tests/support/mixed.rs"]
pub mod mixed;
pub mod mocks;
#[path = "../../../tests/support/dynamodb.rs"]
mod tables;
#[path = "../../../tests/support/templates.rs"]
mod templates;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use asg_refresh_tests::Moto;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use generator::config::Strategy;
use generator::payload::{PlanRequest, TargetSpec};
use runtime::planner::Planner;
use runtime::store::Store;
use runtime::Clock;

pub const TABLE: &str = "asg-refresh-test";
pub const OLD_AMI: &str = "ami-0123456789abcdef0";
pub const NEW_AMI: &str = "ami-0fedcba9876543210";

/// A moto server with clients and the progress table.
pub struct Emulator {
    pub moto: Moto,
    pub config: SdkConfig,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub now: Arc<AtomicI64>,
}

impl Emulator {
    pub async fn start() -> Self {
        Self::on(Moto::start()).await
    }

    /// The same on the project's extended emulator (instance refreshes, the test images,
    /// `POST /emulator/images`).
    pub async fn start_extended() -> Self {
        Self::on(Moto::start_extended()).await
    }

    /// A fresh emulator holding what `fleet` makes in it, and an AMI that exists there.
    pub async fn with_fleet(fleet: impl AsyncFnOnce(&Emulator)) -> (Self, String) {
        let emulator = Self::start().await;
        let ami = emulator.existing_ami().await;
        fleet(&emulator).await;
        (emulator, ami)
    }

    async fn on(moto: Moto) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        let emulator = Self {
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            ec2: aws_sdk_ec2::Client::new(&config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            config,
            moto,
            now: Arc::new(AtomicI64::new(1_800_000_000)),
        };
        emulator.create_table().await;
        emulator
    }

    /// The planner on this emulator's clients, table and clock.
    pub fn planner(&self) -> Planner {
        Planner {
            autoscaling: self.autoscaling.clone(),
            elb: self.elb.clone(),
            ec2: self.ec2.clone(),
            iam: aws_sdk_iam::Client::new(&self.config),
            store: self.store(),
            clock: self.clock(),
        }
    }

    /// A Step Functions client on the emulator (for Lambdas whose test never answers a token).
    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.config)
    }

    pub fn store(&self) -> Store {
        Store::new(self.dynamodb.clone(), TABLE)
    }

    /// A clock the test moves with `advance`.
    pub fn clock(&self) -> Clock {
        let now = self.now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    }

    pub fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }

    async fn create_table(&self) {
        tables::create_table(&self.dynamodb, TABLE, "rollout_id", Some("asg")).await;
    }

    /// A t3.micro launch template with `ami`; returns its id.
    pub async fn launch_template(&self, name: &str, ami: &str) -> String {
        let data = RequestLaunchTemplateData::builder()
            .image_id(ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .build();
        self.launch_template_of(name, data).await
    }

    /// A launch template with `data`; returns its id.
    pub async fn launch_template_of(&self, name: &str, data: RequestLaunchTemplateData) -> String {
        templates::create(&self.ec2, name, data).await
    }

    /// A target group in the default VPC; returns its ARN.
    pub async fn target_group(&self, name: &str) -> String {
        let vpcs = self
            .ec2
            .describe_vpcs()
            .send()
            .await
            .expect("describe vpcs");
        let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_string();
        let out = self
            .elb
            .create_target_group()
            .name(name)
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(80)
            .vpc_id(vpc)
            .send()
            .await
            .expect("create target group");
        out.target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string()
    }

    /// An ASG on a new launch template with `OLD_AMI`.
    pub async fn asg(
        &self,
        name: &str,
        desired: i32,
        tags: &[(&str, &str)],
        target_groups: &[String],
    ) {
        self.launch_template(&format!("{name}-lt"), OLD_AMI).await;
        let mut request = self
            .autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(format!("{name}-lt"))
                    .version("$Latest")
                    .build(),
            )
            .min_size(0)
            .max_size(4)
            .desired_capacity(desired)
            .availability_zones("us-east-1a")
            .set_target_group_arns(Some(target_groups.to_vec()));
        for (key, value) in tags {
            request = request.tags(
                Tag::builder()
                    .key(*key)
                    .value(*value)
                    .propagate_at_launch(true)
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .build(),
            );
        }
        request.send().await.expect("create ASG");
    }

    /// An available x86_64 image that moto knows (the planner checks the AMI exists and
    /// suits the groups' t3.micro instances), with an id the Lambdas accept.
    pub async fn existing_ami(&self) -> String {
        let filter = |name: &str, value: &str| {
            aws_sdk_ec2::types::Filter::builder()
                .name(name)
                .values(value)
                .build()
        };
        let out = self
            .ec2
            .describe_images()
            .filters(filter("architecture", "x86_64"))
            .filters(filter("state", "available"))
            .send()
            .await
            .expect("describe images");
        out.images()
            .iter()
            .filter_map(|i| i.image_id())
            .find(|id| runtime::validate_ami(id).is_ok())
            .expect("moto has an available x86_64 image")
            .to_string()
    }

    /// The instances a target group holds.
    pub async fn targets(&self, target_group: &str) -> Vec<String> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .unwrap();
        out.target_health_descriptions()
            .iter()
            .filter_map(|t| t.target().and_then(|t| t.id()).map(str::to_string))
            .collect()
    }
}

/// The targets `asgs` by name and the groups tagged with each of `tags`.
pub fn target_spec(asgs: &[&str], tags: &[(&str, &str)]) -> TargetSpec {
    TargetSpec {
        asgs: asgs.iter().map(|s| s.to_string()).collect(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A plan of `rollout_id` to `ami` for the groups `asgs` and those tagged with each of
/// `tags`: batches of 10, no canary, at most 1000 waves, no rollback or role checks.
pub fn plan_request(
    rollout_id: &str,
    ami: &str,
    asgs: &[&str],
    tags: &[(&str, &str)],
) -> PlanRequest {
    PlanRequest {
        rollout_id: rollout_id.into(),
        ami: ami.into(),
        targets: target_spec(asgs, tags),
        canary: Vec::new(),
        strategy: Strategy::Batches,
        batch_size: 10,
        max_waves: 1000,
        auto_rollback: false,
        instance_roles: Vec::new(),
        groups: Vec::new(),
    }
}

//! The planner's check of the AMI, once per rollout before any launch template version is
//! made: it exists (DescribeImages), is `available`, and its architecture is one every
//! group's instance types support (DescribeInstanceTypes, ProcessorInfo.SupportedArchitectures).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{ArchitectureType, ImageState, InstanceType};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{classify, Error};
use crate::planner::{Candidate, Planner};
use crate::shapes::{instance_types, listed, TemplateData};

/// Most instance types DescribeInstanceTypes takes in one call.
const TYPES_PER_CALL: usize = 100;

impl Planner {
    /// The AMI exists, is available and runs on every group's instance types.
    pub(crate) async fn check_image(
        &self,
        ami: &str,
        shaped: &[(&Candidate, TemplateData)],
    ) -> Result<(), Error> {
        let described = self.ec2.describe_images().image_ids(ami).send().await;
        let image = match described {
            Ok(out) => out
                .images()
                .iter()
                .find(|i| i.image_id() == Some(ami))
                .cloned(),
            Err(e) => {
                let code = e.as_service_error().and_then(|s| s.code());
                if code.is_some_and(|c| c.starts_with("InvalidAMIID")) {
                    None
                } else {
                    return Err(classify(&format!("describing {ami}"), e));
                }
            }
        };
        let image = image.ok_or_else(|| {
            Error::InvalidInput(format!(
                "AMI {ami} does not exist in this region or is not shared with this account"
            ))
        })?;
        if image.state() != Some(&ImageState::Available) {
            let state = image.state().map_or("in an unknown state", |s| s.as_str());
            return Err(Error::InvalidInput(format!(
                "AMI {ami} is {state}, not available: wait for it or pick another"
            )));
        }
        let Some(architecture) = image.architecture().map(|a| a.as_str().to_string()) else {
            return Ok(());
        };
        let types: BTreeSet<String> = shaped
            .iter()
            .flat_map(|(c, d)| instance_types(c, d))
            .collect();
        let supported = self.architectures(types.into_iter().collect()).await?;
        let mut mismatched = Vec::new();
        for (candidate, data) in shaped {
            let wrong: Vec<String> = instance_types(candidate, data)
                .into_iter()
                .filter(|t| {
                    supported
                        .get(t)
                        .is_some_and(|archs| !archs.contains(&architecture))
                })
                .collect();
            if !wrong.is_empty() {
                mismatched.push(format!("{} ({})", candidate.name, wrong.join(", ")));
            }
        }
        if mismatched.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "AMI {ami} is {architecture}, which these groups' instance types cannot run: {}",
            listed(&mismatched)
        )))
    }

    /// The architectures each instance type supports.
    async fn architectures(
        &self,
        types: Vec<String>,
    ) -> Result<BTreeMap<String, Vec<String>>, Error> {
        let mut out = BTreeMap::new();
        for chunk in types.chunks(TYPES_PER_CALL) {
            let mut pages = self
                .ec2
                .describe_instance_types()
                .set_instance_types(Some(
                    chunk
                        .iter()
                        .map(|t| InstanceType::from(t.as_str()))
                        .collect(),
                ))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("describing instance types", e))?;
                for info in page.instance_types() {
                    let Some(name) = info.instance_type() else {
                        continue;
                    };
                    let archs = info
                        .processor_info()
                        .map(|p| {
                            p.supported_architectures()
                                .iter()
                                .map(ArchitectureType::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    out.insert(name.as_str().to_string(), archs);
                }
            }
        }
        Ok(out)
    }
}

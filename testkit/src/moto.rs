//! The AWS emulator the test command starts (moto server): its endpoint, an SDK configuration
//! pointed at it, names no other test uses, and helpers to make and read its resources.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use calsync::crypto::random_token;

/// The emulator's endpoint. The README's test command sets it; running these tests without it
/// is a mistake worth a clear message rather than a silent skip.
pub fn aws_endpoint() -> Result<String> {
    std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
        anyhow!("AWS_ENDPOINT_URL is not set: run the tests with ./scripts/test, which starts moto")
    })
}

/// How many requests a client sent (retries included), counted by an interceptor.
#[derive(Debug, Clone, Default)]
pub struct RequestCount(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl RequestCount {
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl aws_sdk_dynamodb::config::Intercept for RequestCount {
    fn name(&self) -> &'static str {
        "RequestCount"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// A DynamoDB client for moto whose requests are counted.
pub fn counted_dynamodb(sdk: &aws_config::SdkConfig) -> (aws_sdk_dynamodb::Client, RequestCount) {
    let count = RequestCount::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(count.clone())
            .build(),
    );
    (client, count)
}

/// An SDK configuration for moto, on the same HTTPS client calsync itself uses.
pub async fn aws_config() -> Result<aws_config::SdkConfig> {
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(calsync::adapters::aws::https_client())
        .endpoint_url(aws_endpoint()?)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "calsync-tests",
        ))
        .load()
        .await)
}

/// A name no other test uses, so tests share one emulator without interfering.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        random_token(6)
            .to_ascii_lowercase()
            .replace(['_', '-'], "x")
    )
}

pub async fn create_fifo_queue(sdk: &aws_config::SdkConfig, name: &str) -> Result<String> {
    let out = aws_sdk_sqs::Client::new(sdk)
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await?;
    out.queue_url().map(str::to_owned).context("no queue URL")
}

/// Every item of a table, as text, sorted: to compare storage before and after.
pub async fn table_snapshot(sdk: &aws_config::SdkConfig, table: &str) -> Result<Vec<String>> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let mut rows = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for item in out.items() {
            let sorted: BTreeMap<_, _> = item
                .iter()
                .map(|(k, v)| (k.clone(), attr_text(v)))
                .collect();
            rows.push(format!("{sorted:?}"));
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    rows.sort();
    Ok(rows)
}

/// A canonical text form: maps sorted by key, so equal items always print the same.
fn attr_text(value: &AttributeValue) -> String {
    match value {
        AttributeValue::M(map) => {
            let sorted: BTreeMap<_, _> =
                map.iter().map(|(k, v)| (k.clone(), attr_text(v))).collect();
            format!("{sorted:?}")
        }
        AttributeValue::L(list) => format!("{:?}", list.iter().map(attr_text).collect::<Vec<_>>()),
        other => format!("{other:?}"),
    }
}

/// Creates a CloudFormation stack in the emulator (region eu-west-1) from a JSON template, with
/// `parameters`; moto creates it at once. Its outputs are what `calsync --stack` reads.
pub async fn create_stack(name: &str, template: &str, parameters: &[(&str, &str)]) -> Result<()> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "CreateStack")
        .append_pair("Version", "2010-05-15")
        .append_pair("StackName", name)
        .append_pair("TemplateBody", template);
    for (n, (key, value)) in parameters.iter().enumerate() {
        let n = n + 1;
        form.append_pair(&format!("Parameters.member.{n}.ParameterKey"), key)
            .append_pair(&format!("Parameters.member.{n}.ParameterValue"), value);
    }
    // moto reads the region from the credential scope and does not check the signature.
    let response = reqwest::Client::new()
        .post(format!("{}/", aws_endpoint()?.trim_end_matches('/')))
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/cloudformation/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(form.finish())
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.is_success(), "CreateStack answered {status}: {body}");
    Ok(())
}

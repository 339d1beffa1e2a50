//! Test support: clients for the AWS emulator the test command starts (moto server).
#![allow(dead_code)]

use calsync::crypto::random_token;

/// The emulator's endpoint. The README's test command sets it; running these tests without it
/// is a mistake worth a clear message rather than a silent skip.
pub fn aws_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run the tests with ./scripts/test, which starts moto")
    })
}

pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(aws_endpoint())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "calsync-tests",
        ))
        .load()
        .await
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

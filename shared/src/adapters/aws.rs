//! The AWS SDK's shared configuration, as every AWS adapter (DynamoDB, Secrets Manager, SQS)
//! is built from it: the usual credential and region chain, and an HTTPS client on rustls with
//! the ring provider — the same crypto provider reqwest uses for Graph, Microsoft sign-in and
//! the CRM, so each binary carries one.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// Loads the SDK configuration from the environment (`AWS_REGION`, `AWS_ENDPOINT_URL`,
/// credentials, profiles where the `sso` feature is on).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The HTTPS client of every AWS call: rustls with ring.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

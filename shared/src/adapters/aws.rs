//! The AWS SDK's shared configuration, as every AWS adapter (DynamoDB, Secrets Manager, SQS)
//! is built from it: the usual credential and region chain, and an HTTPS client on rustls with
//! the ring provider — the same crypto provider reqwest uses for Graph, Microsoft sign-in and
//! the CRM, so each binary carries one.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
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

/// An AWS call that failed: the service's own code and message, or why it got no answer.
/// Built from the SDK's error without its raw response, so nothing sent or received leaks.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{service} refused the call: {code}: {message}")]
    Service {
        service: &'static str,
        code: String,
        message: String,
    },
    #[error("{service} did not answer")]
    NoAnswer {
        service: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AwsError {
    pub fn from_sdk<E, R>(service: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match err.as_service_error() {
            Some(e) => AwsError::Service {
                service,
                code: e.code().unwrap_or("unknown").to_owned(),
                message: e.message().unwrap_or("no message").to_owned(),
            },
            None => AwsError::NoAnswer {
                service,
                source: err.into_source().unwrap_or_else(|e| Box::new(e)),
            },
        }
    }
}

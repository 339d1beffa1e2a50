//! Secrets Manager adapter.

use async_trait::async_trait;

use crate::adapters::aws::AwsError;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::Filter;
use aws_sdk_secretsmanager::types::FilterNameStringType;
use aws_sdk_secretsmanager::Client;

use super::{SecretStore, SecretStoreError};
use calsync_core::secret::Secret;

#[derive(Clone)]
pub struct SecretsManagerStore {
    client: Client,
}

impl SecretsManagerStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn code_of<E: ProvideErrorMetadata>(
    err: &aws_sdk_secretsmanager::error::SdkError<
        E,
        aws_sdk_secretsmanager::config::http::HttpResponse,
    >,
) -> Option<String> {
    err.as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned)
}

// Never the secret value: only the service's error code and message, or the transport's error.
fn backend<E>(
    err: aws_sdk_secretsmanager::error::SdkError<
        E,
        aws_sdk_secretsmanager::config::http::HttpResponse,
    >,
) -> SecretStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    SecretStoreError::backend(AwsError::from_sdk("Secrets Manager", err))
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get(&self, name: &str) -> Result<Option<Secret>, SecretStoreError> {
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => Ok(out.secret_string.map(Secret::new)),
            Err(e) if code_of(&e).as_deref() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError> {
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value.expose())
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if code_of(&e).as_deref() == Some("ResourceExistsException") => self
                .client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value.expose())
                .send()
                .await
                .map(|_| ())
                .map_err(backend),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<bool, SecretStoreError> {
        // Ask first: emulators (and AWS within a recovery window) accept deleting a deleted name.
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(out) if out.deleted_date.is_none() => {}
            Ok(_) => return Ok(false),
            Err(e) if code_of(&e).as_deref() == Some("ResourceNotFoundException") => {
                return Ok(false)
            }
            Err(e) => return Err(backend(e)),
        }
        match self
            .client
            .delete_secret()
            .secret_id(name)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if code_of(&e).as_deref() == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, SecretStoreError> {
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(prefix)
            .build();
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_secrets()
                .filters(filter.clone())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(backend)?;
            // The name filter matches by prefix on AWS but loosely elsewhere: check it here.
            names.extend(
                out.secret_list()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|n| n.starts_with(prefix))
                    .map(str::to_owned),
            );
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

//! SQS FIFO adapter.

use async_trait::async_trait;

use crate::adapters::aws::AwsError;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use std::time::Duration;

use super::{JobQueue, QueueError, ReceivedJob, SyncJob};
use crate::crypto::random_token;

/// SQS takes at most 10 messages per batch call.
const SQS_BATCH_LIMIT: usize = 10;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

fn backend<E>(
    err: aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    QueueError::backend(AwsError::from_sdk("SQS", err))
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, jobs: &[SyncJob]) -> Result<(), QueueError> {
        for chunk in jobs.chunks(SQS_BATCH_LIMIT) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, job) in chunk.iter().enumerate() {
                let body = serde_json::to_string(job).map_err(QueueError::Encode)?;
                // A fresh deduplication id per job: identical bodies minutes apart are distinct
                // work (a second change after a finished sync), never to be dropped.
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .message_group_id(job.group_id())
                    .message_deduplication_id(random_token(24))
                    .build()
                    .map_err(QueueError::backend)?;
                entries.push(entry);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(backend)?;
            if let Some(first) = out.failed().first() {
                return Err(QueueError::NotQueued {
                    failed: out.failed().len(),
                    total: jobs.len(),
                    code: first.code().to_owned(),
                });
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, SQS_BATCH_LIMIT) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(backend)?;
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let job: SyncJob = serde_json::from_str(m.body().unwrap_or_default())
                    .map_err(QueueError::BadMessage)?;
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Ok(ReceivedJob {
                    job,
                    receipt: m.receipt_handle.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect()
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(backend)
    }
}

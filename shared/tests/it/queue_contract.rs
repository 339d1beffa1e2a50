//! One contract for the job-queue port: SQS FIFO (against moto) and the in-process queue.

use calsync::adapters::queue::{JobQueue, JobReason, MemoryQueue, SqsQueue, SyncJob};
use calsync_core::ids::{CrmUserName, TenantId};
use std::time::Duration;

fn job(user: &str, reason: JobReason) -> SyncJob {
    SyncJob {
        tenant: TenantId::parse("acme").unwrap(),
        user: CrmUserName::parse(user).unwrap(),
        reason,
        full: reason == JobReason::Connected,
        origin: None,
    }
}

/// Receives until `count` jobs were seen or time runs out, acknowledging each.
async fn drain(queue: &dyn JobQueue, count: usize) -> Vec<SyncJob> {
    let mut seen = Vec::new();
    for _ in 0..40 {
        if seen.len() >= count {
            break;
        }
        for received in queue.receive(10, Duration::from_millis(500)).await.unwrap() {
            queue.ack(&received.receipt).await.unwrap();
            seen.push(received.job);
        }
    }
    seen
}

async fn contract(queue: &dyn JobQueue) {
    // 25 jobs need several batch calls on SQS; all arrive, in order for each user.
    let mut jobs = Vec::new();
    for i in 0..25 {
        let user = if i % 2 == 0 { "ana" } else { "luis" };
        let reason = if i < 2 {
            JobReason::Connected
        } else {
            JobReason::Notification
        };
        jobs.push(job(user, reason));
    }
    // Identical bodies are distinct jobs: nothing may be deduplicated away.
    jobs.push(job("ana", JobReason::Notification));
    queue.send(&jobs).await.unwrap();
    let seen = drain(queue, jobs.len()).await;
    assert_eq!(seen.len(), jobs.len());
    for user in ["ana", "luis"] {
        let sent: Vec<_> = jobs.iter().filter(|j| j.user.as_str() == user).collect();
        let got: Vec<_> = seen.iter().filter(|j| j.user.as_str() == user).collect();
        assert_eq!(sent, got, "order kept for {user}");
    }
    assert!(queue
        .receive(10, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());

    // A job that is not acknowledged comes back after the visibility timeout.
    queue.send(&[job("eva", JobReason::Manual)]).await.unwrap();
    let first = queue.receive(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    let mut again = Vec::new();
    for _ in 0..25 {
        again = queue.receive(1, Duration::from_millis(200)).await.unwrap();
        if !again.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(again.len(), 1, "redelivered");
    assert_eq!(again[0].job, first[0].job);
    assert_eq!(again[0].receive_count, 2);
    queue.ack(&again[0].receipt).await.unwrap();
}

#[tokio::test]
async fn memory_queue_meets_the_contract() {
    contract(&MemoryQueue::new(Duration::from_secs(1))).await;
}

#[tokio::test]
async fn sqs_fifo_queue_meets_the_contract() {
    let sdk = calsync_testkit::moto::aws_config().await.expect("moto");
    let client = aws_sdk_sqs::Client::new(&sdk);
    let created = client
        .create_queue()
        .queue_name(format!(
            "{}.fifo",
            calsync_testkit::moto::unique("calsync-jobs")
        ))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .unwrap();
    let queue = SqsQueue::new(client.clone(), created.queue_url().unwrap());
    contract(&queue).await;

    // Messages carry the `tenant#user` group id.
    queue
        .send(&[job("ana", JobReason::Schedule)])
        .await
        .unwrap();
    let raw = client
        .receive_message()
        .queue_url(created.queue_url().unwrap())
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
        )
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let message = &raw.messages()[0];
    assert_eq!(
        message.attributes().unwrap()
            [&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId],
        "acme#ana"
    );
    let body: serde_json::Value = serde_json::from_str(message.body().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"tenant":"acme","user":"ana","reason":"schedule","full":false})
    );
}

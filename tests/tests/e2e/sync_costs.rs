//! What a sync run with nothing to do costs, counted at the wire (docs/design.md §6): Graph
//! requests and CRM requests as the sandbox saw them, DynamoDB and Secrets Manager calls as the AWS
//! SDK sent them to moto (an interceptor on the App's clients counts every transmitted
//! request, retries included).

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use calsync::services::sync_run::RunOutcome;
use calsync_testkit::syncbed::SyncBed;
use calsync_testkit::testbed::{aws_config, BedOptions, USER_OID};
use serde_json::json;

/// Logs the operation (`x-amz-target`) of every request the SDK transmits.
#[derive(Debug, Clone, Default)]
struct CallLog {
    calls: Arc<Mutex<Vec<String>>>,
}

impl CallLog {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("(no x-amz-target)")
            .to_owned();
        self.calls.lock().unwrap().push(target);
        Ok(())
    }
}

fn seed_outlook(bed: &SyncBed, subject: &str, day: &str) {
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            USER_OID,
            json!({
                "subject": subject,
                "start": {"dateTime": format!("{day}T15:00:00"), "timeZone": "UTC"},
                "end": {"dateTime": format!("{day}T16:00:00"), "timeZone": "UTC"},
            }),
        )
        .unwrap();
}

#[tokio::test]
async fn a_run_with_nothing_to_do_costs_one_call_per_side_and_two_dynamodb_calls() {
    let sdk = aws_config().await.unwrap();
    let dynamodb_calls = CallLog::default();
    let secrets_calls = CallLog::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(dynamodb_calls.clone())
            .build(),
    );
    let secretsmanager = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .interceptor(secrets_calls.clone())
            .build(),
    );
    let bed = SyncBed::start_with(
        "UTC",
        BedOptions {
            dynamodb: Some(dynamodb),
            secretsmanager: Some(secretsmanager),
            ..BedOptions::default()
        },
    )
    .await
    .unwrap();
    bed.seed_crm("Demo for ACME", "2026-12-03", "09:00:00", "10:00:00");
    bed.seed_crm("Quarterly review", "2026-12-07", "09:00:00", "10:00:00");
    seed_outlook(&bed, "Dentist", "2026-12-04");
    seed_outlook(&bed, "Team lunch", "2026-12-08");

    let first = bed.sync().await.unwrap();
    assert_eq!(first.outcome, RunOutcome::Synced, "{first:?}");
    // Echo runs until a run finds nothing to do.
    let mut settled = false;
    for _ in 0..5 {
        if bed.sync().await.unwrap().outcome == RunOutcome::Quiet {
            settled = true;
            break;
        }
    }
    assert!(settled, "the echo runs did not settle");
    assert_eq!(bed.outlook().len(), 4);
    assert_eq!(bed.crm().len(), 4);

    let graph = bed.bed.sandbox.graph();
    let crm = bed.bed.sandbox.crm();
    graph.clear_requests();
    crm.reset_counts();
    dynamodb_calls.take();
    secrets_calls.take();

    let quiet = bed.sync().await.unwrap();
    assert_eq!(quiet.outcome, RunOutcome::Quiet, "{quiet:?}");

    let graph_requests: Vec<String> = graph
        .requests()
        .iter()
        .filter(|r| r.mailbox.as_deref() == Some(USER_OID))
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect();
    let crm_requests: Vec<String> = crm
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.operation))
        .collect();
    let dynamodb_requests = dynamodb_calls.take();
    let secrets_requests = secrets_calls.take();
    let all = format!(
        "graph: {graph_requests:#?}\ncrm: {crm_requests:#?}\ndynamodb: {dynamodb_requests:#?}\nsecrets manager: {secrets_requests:#?}"
    );
    println!("{all}");
    assert!(graph_requests.len() <= 1, "{all}");
    assert!(crm_requests.len() <= 1, "{all}");
    assert!(dynamodb_requests.len() <= 2, "{all}");
    assert!(secrets_requests.is_empty(), "{all}");
    // Every Graph request of the run was maria's: nothing else was asked of Microsoft.
    assert_eq!(graph.requests().len(), graph_requests.len(), "{all}");
}

/// A stranger's body naming hundreds of made-up subscriptions costs a bounded number of reads.
#[tokio::test]
async fn a_webhook_request_looks_up_a_bounded_number_of_subscriptions() {
    let sdk = aws_config().await.unwrap();
    let dynamodb_calls = CallLog::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(dynamodb_calls.clone())
            .build(),
    );
    let bed = calsync_testkit::testbed::TestBed::start_with(BedOptions {
        dynamodb: Some(dynamodb),
        ..BedOptions::default()
    })
    .await
    .unwrap();
    let notifications: Vec<serde_json::Value> = (0..300)
        .map(|n| {
            json!({
                "subscriptionId": format!("00000000-0000-4000-8000-{n:012}"),
                "changeType": "updated",
                "clientState": "guess",
                "resource": format!("Users/x/Events/AAMk{n}="),
            })
        })
        .collect();
    dynamodb_calls.take();
    let answer = calsync_testkit::web::webhook(
        &bed.app,
        &calsync_testkit::web::WebRequest {
            method: "POST".into(),
            path: "/notifications".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({"value": notifications}).to_string().into_bytes(),
        },
    )
    .await;
    assert_eq!(answer.status, 202);
    let reads = dynamodb_calls.take();
    assert!(
        reads.len() <= 50,
        "{} reads for 300 made-up ids",
        reads.len()
    );
}

//! What calsync's operations cost, counted at the wire: Graph, CRM and Microsoft sign-in
//! requests as the sandbox saw them; DynamoDB, Secrets Manager and SQS calls as the AWS SDK sent
//! them to moto (an interceptor on the App's clients sees every transmitted request, retries
//! included, with its body and the answer's). From the DynamoDB bodies each call's request units
//! are worked out the way DynamoDB bills them (item sizes by its rules, 4 KB per strongly
//! consistent read unit, 1 KB per write unit, twice that in a transaction).
//!
//! docs/design.md §6 holds a quiet run to its bounds; docs/COST.md turns the counts printed here
//! into dollars. `./scripts/test --quick -p calsync-tests -- sync_costs --nocapture` prints them.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use calsync::adapters::queue::{JobReason, SqsQueue, SyncJob};
use calsync::adapters::secret_store::SecretsManagerStore;
use calsync::adapters::store::DynamoStore;
use calsync::nudge::Nudge;
use calsync::services::subscriptions::Upkeep;
use calsync::services::sweeps::SweepClock;
use calsync::services::sync_run::{RunOutcome, RunReport, RECORDED_RUN_AT_LEAST_EVERY_SECS};
use calsync::services::tokens::STORE_ROTATED_AFTER_SECS;
use calsync::services::users::{SyncSummary, UserStatus};
use calsync::App;
use calsync_testkit::syncbed::SyncBed;
use calsync_testkit::testbed::{
    aws_config, edit_user, now, put_user, BedOptions, TestBed, USER_OID,
};
use calsync_testkit::web::WebRequest;
use calsync_testkit::{binary_path, FunctionProcess};
use serde_json::{json, Map, Value};

/// One request the SDK transmitted: its operation, its body, and the body that came back.
#[derive(Debug, Clone)]
struct Call {
    operation: String,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
}

/// Logs every request an SDK client transmits (operation from `x-amz-target`, the body) and
/// the answer's body. Answers are paired with requests in order, which holds while a client
/// has one call in flight at a time, as a run's calls are.
#[derive(Debug, Clone, Default)]
struct CallLog {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl CallLog {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// The operations only, as `x-amz-target` names them (`DynamoDB_20120810.GetItem`).
    fn take_operations(&self) -> Vec<String> {
        self.take().into_iter().map(|c| c.operation).collect()
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
        let request = context.request();
        let operation = request
            .headers()
            .get("x-amz-target")
            .unwrap_or("(no x-amz-target)")
            .to_owned();
        let body = request.body().bytes().unwrap_or_default().to_vec();
        self.calls.lock().unwrap().push(Call {
            operation,
            request: body,
            response: None,
        });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.response().body().bytes().unwrap_or_default();
        let mut calls = self.calls.lock().unwrap();
        if let Some(call) = calls.iter_mut().find(|c| c.response.is_none()) {
            call.response = Some(body.to_vec());
        }
        Ok(())
    }
}

// --- DynamoDB request units, as DynamoDB bills them -------------------------------------------

/// The size DynamoDB bills for one attribute value in its JSON form: strings and binaries by
/// their bytes, numbers by their significant digits, lists and maps with 3 bytes of overhead
/// and one per element (docs: "Item sizes").
fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => {
            let digits: String = inner
                .as_str()
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            let significant = digits.trim_matches('0').len().max(1);
            significant.div_ceil(2) + 1
        }
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|v| 1 + value_size(v)).sum())
        }
        "M" => 3 + inner.as_object().map_or(0, item_size_of_map),
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |l| {
            l.iter().map(|v| v.as_str().map_or(0, str::len)).sum()
        }),
        _ => 0,
    }
}

fn item_size_of_map(map: &Map<String, Value>) -> usize {
    map.iter().map(|(k, v)| k.len() + 1 + value_size(v)).sum()
}

/// The billed size of an item in DynamoDB JSON (`{"pk": {"S": …}, …}`).
fn item_size(item: &Value) -> usize {
    item.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

fn units_of(bytes: usize, unit: usize) -> u64 {
    bytes.div_ceil(unit).max(1) as u64
}

/// Read and write request units of one DynamoDB call. Reads are strongly consistent (the store
/// asks for it): 1 unit per 4 KB, a Query summing its page's items. Writes: 1 unit per 1 KB of
/// the item written (a put's new item, an update's or delete's item as returned; DynamoDB bills
/// the larger of before and after, which these hardly differ from), 2 per 1 KB in a transaction.
fn request_units(call: &Call) -> (u64, u64) {
    let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).unwrap_or(Value::Null);
    let request = parse(&call.request);
    let response = call.response.as_deref().map(parse).unwrap_or(Value::Null);
    let operation = call.operation.rsplit('.').next().unwrap_or_default();
    match operation {
        "GetItem" => (units_of(item_size(&response["Item"]), 4096), 0),
        "Query" | "Scan" => {
            let bytes = response["Items"]
                .as_array()
                .map_or(0, |items| items.iter().map(item_size).sum());
            (units_of(bytes, 4096), 0)
        }
        "PutItem" => (0, units_of(item_size(&request["Item"]), 1024)),
        "UpdateItem" | "DeleteItem" => (0, units_of(item_size(&response["Attributes"]), 1024)),
        "TransactWriteItems" => {
            let writes = request["TransactItems"].as_array().map_or(0, |items| {
                items
                    .iter()
                    .map(|entry| match entry.get("Put") {
                        Some(put) => 2 * units_of(item_size(&put["Item"]), 1024),
                        None => 2,
                    })
                    .sum()
            });
            (0, writes)
        }
        // Each put or delete of the batch is billed as the write it stands for. An item
        // DynamoDB leaves unprocessed is counted again when it is sent again (an overestimate).
        "BatchWriteItem" => {
            let writes = request["RequestItems"].as_object().map_or(0, |tables| {
                tables
                    .values()
                    .filter_map(Value::as_array)
                    .flatten()
                    .map(|entry| match entry.get("PutRequest") {
                        Some(put) => units_of(item_size(&put["Item"]), 1024),
                        None => 1,
                    })
                    .sum()
            });
            (0, writes)
        }
        _ => (0, 0),
    }
}

// --- one "container": an App with counted clients -------------------------------------------

/// A fresh App over the bed's table, secrets and queue, as a new Lambda container would build
/// it (nothing cached), whose AWS clients are counted.
struct Container {
    app: App,
    dynamodb: CallLog,
    secrets: CallLog,
    sqs: CallLog,
}

impl Container {
    async fn of(bed: &TestBed) -> Self {
        let sdk = aws_config().await.unwrap();
        let (dynamodb, secrets, sqs) = (CallLog::default(), CallLog::default(), CallLog::default());
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&sdk)
                    .interceptor(dynamodb.clone())
                    .build(),
            ),
            bed.table.clone(),
        );
        let secret_store = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .interceptor(secrets.clone())
                .build(),
        ));
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&sdk)
                    .interceptor(sqs.clone())
                    .build(),
            ),
            bed.queue_url.clone(),
        );
        let app = App::with_parts(
            bed.app.config.clone(),
            Arc::new(store),
            Arc::new(secret_store),
            Arc::new(queue),
        )
        .unwrap();
        Self {
            app,
            dynamodb,
            secrets,
            sqs,
        }
    }

    fn forget_calls(&self) {
        self.dynamodb.take();
        self.secrets.take();
        self.sqs.take();
    }
}

// --- what one operation cost ------------------------------------------------------------------

/// Everything one operation sent out.
#[derive(Debug, Default)]
struct Cost {
    graph: Vec<String>,
    crm: Vec<String>,
    sign_in: u64,
    dynamodb: Vec<Call>,
    secrets: Vec<Call>,
    sqs: Vec<Call>,
    wall: Duration,
    /// Bytes of the job's embedded-metric line (jobs only).
    metric_bytes: usize,
}

impl Cost {
    /// What `container` sent since its calls were last taken (it calls neither Graph nor the
    /// CRM: the webhook).
    fn of(container: &Container) -> Self {
        Self {
            dynamodb: container.dynamodb.take(),
            secrets: container.secrets.take(),
            sqs: container.sqs.take(),
            ..Self::default()
        }
    }

    fn read_units(&self) -> u64 {
        self.dynamodb.iter().map(|c| request_units(c).0).sum()
    }

    fn write_units(&self) -> u64 {
        self.dynamodb.iter().map(|c| request_units(c).1).sum()
    }

    fn dynamodb_operations(&self) -> Vec<&str> {
        self.dynamodb
            .iter()
            .map(|c| c.operation.rsplit('.').next().unwrap_or_default())
            .collect()
    }

    fn sqs_messages(&self) -> usize {
        self.sqs
            .iter()
            .map(|c| {
                serde_json::from_slice::<Value>(&c.request)
                    .ok()
                    .and_then(|v| v["Entries"].as_array().map(Vec::len))
                    .unwrap_or(1)
            })
            .sum()
    }

    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |",
            self.graph.len(),
            self.crm.len(),
            self.sign_in,
            self.dynamodb.len(),
            self.read_units(),
            self.write_units(),
            self.secrets.len(),
            self.sqs.len(),
            self.sqs_messages(),
            self.wall.as_millis(),
            self.metric_bytes,
        )
    }

    fn detail(&self, name: &str) -> String {
        let dynamodb: Vec<String> = self
            .dynamodb
            .iter()
            .map(|c| {
                let (r, w) = request_units(c);
                let op = c.operation.rsplit('.').next().unwrap_or_default();
                match (r, w) {
                    (0, w) => format!("{op} {w}W"),
                    (r, _) => format!("{op} {r}R"),
                }
            })
            .collect();
        let ops = |calls: &[Call]| -> Vec<String> {
            calls
                .iter()
                .map(|c| {
                    c.operation
                        .rsplit('.')
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        };
        format!(
            "{name}\n  graph: {:?}\n  crm: {:?}\n  dynamodb: {dynamodb:?}\n  secrets manager: {:?}\n  sqs: {:?}",
            self.graph,
            self.crm,
            ops(&self.secrets),
            ops(&self.sqs),
        )
    }
}

const TABLE_HEADER: &str = "| operation | Graph | CRM | sign-in | DynamoDB calls | RRU | WRU | Secrets Manager | SQS requests / messages | wall ms | metric line bytes |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// Reads what happened since the last [`Meter::start`]: the sandbox's logs and one container's
/// calls.
struct Meter<'a> {
    sandbox: &'a calsync_sandbox::Sandbox,
    sign_in_before: u64,
    started: Instant,
}

impl<'a> Meter<'a> {
    fn start(sandbox: &'a calsync_sandbox::Sandbox, containers: &[&Container]) -> Self {
        sandbox.graph().clear_requests();
        sandbox.crm().reset_counts();
        for container in containers {
            container.forget_calls();
        }
        Self {
            sandbox,
            sign_in_before: sandbox.identity().token_request_counts().total(),
            started: Instant::now(),
        }
    }

    fn read(&self, container: &Container) -> Cost {
        Cost {
            graph: self
                .sandbox
                .graph()
                .requests()
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect(),
            crm: self
                .sandbox
                .crm()
                .requests()
                .iter()
                .map(|r| format!("{} {}", r.method, r.operation))
                .collect(),
            sign_in: self.sandbox.identity().token_request_counts().total() - self.sign_in_before,
            dynamodb: container.dynamodb.take(),
            secrets: container.secrets.take(),
            sqs: container.sqs.take(),
            wall: self.started.elapsed(),
            metric_bytes: 0,
        }
    }
}

/// Runs one job in `container` as the sync function would, and what it cost (with the bytes of
/// the metric line the function writes for it).
async fn run_job(
    sandbox: &calsync_sandbox::Sandbox,
    container: &Container,
    job: &SyncJob,
) -> (RunReport, Cost) {
    let meter = Meter::start(sandbox, &[container]);
    let report = calsync::entry::jobs::run_job(&container.app, job)
        .await
        .unwrap_or_else(|e| panic!("{job:?}: {}", calsync::errors::chain(&e)));
    let mut cost = meter.read(container);
    let line = calsync::entry::metrics::job(
        job,
        Some(&report),
        cost.wall,
        now() * 1000,
        container.app.config.metrics_by_tenant,
    );
    cost.metric_bytes = line.to_string().len() + 1;
    (report, cost)
}

/// Waits until Graph has made at least `at_least` deliveries in all, and then nothing more for
/// a while.
async fn quiesce(graph: &calsync_sandbox::graph::Graph, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while graph.deliveries().len() < at_least && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen = graph.deliveries().len();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = graph.deliveries().len();
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// What a function process logged after `before` bytes, once its output stops growing (the
/// pipes are read in the background).
async fn logged_after(process: &FunctionProcess, before: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = process.logs().len();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = process.logs().len();
        if (now == seen && now > before) || Instant::now() >= deadline {
            return process.logs()[before..].to_owned();
        }
        seen = now;
    }
}

/// Every queued job, as the sync function would receive them.
async fn queued_jobs(bed: &TestBed) -> Vec<SyncJob> {
    let mut jobs = Vec::new();
    loop {
        let taken = bed.take_jobs().await.unwrap();
        if taken.is_empty() {
            return jobs;
        }
        jobs.extend(
            taken
                .into_iter()
                .map(|(_, body)| serde_json::from_value::<SyncJob>(body).unwrap()),
        );
    }
}

/// Serves the webhook routes on a loopback port for the sandbox's Graph to deliver to: through
/// the App put in the returned cell once there is one; until then it answers Graph's
/// validation handshake only (a subscription is made while the bed connects its user).
async fn serve_webhook() -> (String, Arc<OnceLock<App>>) {
    use axum::body::Bytes;
    use axum::extract::RawQuery;
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cell: Arc<OnceLock<App>> = Arc::default();
    let serving = cell.clone();
    let router = axum::Router::new().fallback(move |RawQuery(query): RawQuery, body: Bytes| {
        let cell = serving.clone();
        async move {
            let query = query.unwrap_or_default();
            match cell.get() {
                Some(app) => calsync::entry::webhook::receive(app, &query, &body).await,
                None => {
                    let token = url::form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == "validationToken")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    token.into_response()
                }
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, cell)
}

fn seed_outlook(bed: &SyncBed, subject: &str, day: &str) -> String {
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
        .unwrap()
}

fn nudge_request(bed: &TestBed, nonce: &str) -> WebRequest {
    let body = Nudge {
        tenant: bed.tenant.clone(),
        user: bed.user.clone(),
        sent_at: now(),
        nonce: nonce.to_owned(),
    }
    .form(&bed.link_key);
    WebRequest {
        method: "POST".into(),
        path: "/nudge".into(),
        query: String::new(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into_bytes(),
    }
}

// --- the tests --------------------------------------------------------------------------------

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
    let dynamodb_requests = dynamodb_calls.take_operations();
    let secrets_requests = secrets_calls.take_operations();
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

/// Every operation a connected user causes, end to end and counted, for docs/COST.md: runs
/// (quiet, a sweep that lists the linked series, a token refresh), an Outlook change pushed by
/// Graph through the webhook to a run that writes the CRM, a CRM change nudged to a run that
/// writes Outlook and the echo of that write, and a dispatch round that renews a subscription.
/// The webhook and the sync function each get a container of their own, as in AWS.
#[tokio::test]
async fn what_each_operation_of_a_user_costs() {
    let (webhook_url, webhook_cell) = serve_webhook().await;
    let bed = SyncBed::start_with(
        "UTC",
        BedOptions {
            webhook_url: Some(webhook_url),
            ..BedOptions::default()
        },
    )
    .await
    .unwrap();
    let sandbox = &bed.bed.sandbox;
    let graph = sandbox.graph();
    assert_eq!(graph.subscriptions().len(), 1, "connecting subscribed");
    let webhook = Container::of(&bed.bed).await;
    let sync = Container::of(&bed.bed).await;
    assert!(webhook_cell.set(webhook.app.clone()).is_ok());

    // Twelve linked events: six made in the CRM, six in Outlook.
    let mut crm_ids = Vec::new();
    let mut outlook_ids = Vec::new();
    for day in 1..=6 {
        crm_ids.push(bed.seed_crm(
            &format!("Customer visit {day}"),
            &format!("2026-12-{:02}", day),
            "09:00:00",
            "10:00:00",
        ));
        outlook_ids.push(seed_outlook(
            &bed,
            &format!("Internal review {day}"),
            &format!("2026-12-{:02}", day + 10),
        ));
    }
    bed.settle().await.unwrap();
    quiesce(graph, 0).await;
    queued_jobs(&bed.bed).await;
    let job = |reason: JobReason| SyncJob {
        reason,
        ..bed.job(false)
    };
    let mut rows: Vec<(String, Cost)> = Vec::new();

    // A scheduled run in a new container: it reads the tenant's settings and secret, gets an
    // access token (containers keep their own) and logs in to the CRM, then only looks.
    let (report, cold) = run_job(sandbox, &sync, &job(JobReason::Schedule)).await;
    assert!(report.looked_only, "{report:?}");
    assert_eq!(cold.secrets.len(), 1, "{}", cold.detail("cold"));
    assert_eq!(cold.sign_in, 1, "{}", cold.detail("cold"));
    // The only write is the quiet look's small item (status's freshness), never the user's.
    assert_eq!(cold.write_units(), 1, "{}", cold.detail("cold"));
    rows.push(("scheduled run that only looks, new container".into(), cold));

    // The same in a warm container: one read of the user's item, a page from each side, the
    // quiet look noted.
    let (report, looked) = run_job(sandbox, &sync, &job(JobReason::Schedule)).await;
    assert!(report.looked_only, "{report:?}");
    assert!(looked.graph.len() <= 1, "{}", looked.detail("look"));
    assert!(looked.crm.len() <= 1, "{}", looked.detail("look"));
    assert_eq!(
        looked.dynamodb_operations(),
        ["GetItem", "PutItem"],
        "{}",
        looked.detail("look")
    );
    assert!(looked.secrets.is_empty() && looked.sqs.is_empty() && looked.sign_in == 0);
    rows.push(("scheduled run that only looks".into(), looked));

    // A run that holds the user and finds nothing (a notification of nothing calsync carries):
    // design.md §6's bound.
    let (report, quiet) = run_job(sandbox, &sync, &job(JobReason::Notification)).await;
    assert_eq!(report.outcome, RunOutcome::Quiet, "{report:?}");
    assert!(!report.looked_only);
    assert!(quiet.graph.len() <= 1, "{}", quiet.detail("quiet"));
    assert!(quiet.crm.len() <= 1, "{}", quiet.detail("quiet"));
    assert!(quiet.dynamodb.len() <= 2, "{}", quiet.detail("quiet"));
    assert!(quiet.secrets.is_empty() && quiet.sqs.is_empty());
    rows.push(("run that holds the user, nothing new".into(), quiet));

    // A scheduled run six hours after the last recorded one: it runs, records, and lists the
    // linked series, reading every link of the user (one Query), whether or not any is a
    // series.
    edit_user(&bed.bed.app, &bed.bed.tenant, &bed.bed.user, |r| {
        if let Some(summary) = r.last_sync.as_mut() {
            summary.last_run_at = Some(now() - RECORDED_RUN_AT_LEAST_EVERY_SECS);
        }
        if let Some(progress) = r.progress.as_mut() {
            progress.series_checked_at = Some(now() - RECORDED_RUN_AT_LEAST_EVERY_SECS);
        }
    })
    .await
    .unwrap();
    let (report, sweep) = run_job(sandbox, &sync, &job(JobReason::Schedule)).await;
    assert!(!report.looked_only, "{report:?}");
    assert_eq!(report.counts.writes(), 0, "{report:?}");
    assert_eq!(
        sweep.dynamodb_operations(),
        ["GetItem", "UpdateItem", "Query", "PutItem"],
        "{}",
        sweep.detail("sweep")
    );
    let user_bytes = sweep
        .dynamodb
        .iter()
        .find(|c| c.operation.ends_with("UpdateItem"))
        .and_then(|c| c.response.as_deref())
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .map_or(0, |v| item_size(&v["Attributes"]));
    let link_bytes: usize = sweep
        .dynamodb
        .iter()
        .filter(|c| c.operation.ends_with("Query"))
        .filter_map(|c| c.response.as_deref())
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .flat_map(|v| v["Items"].as_array().cloned().unwrap_or_default())
        .map(|item| item_size(&item))
        .sum();
    rows.push((
        "scheduled run, recorded every 6 h, listing the linked series".into(),
        sweep,
    ));

    // A scheduled run in a new container whose stored refresh token is half a day old: the
    // container reads the tenant's settings, the look reads the user, and the refresh stores
    // the rotated token (a read and a write of the user's item); then the quiet look is noted.
    edit_user(&bed.bed.app, &bed.bed.tenant, &bed.bed.user, |r| {
        r.refresh_token_stored_at = Some(now() - STORE_ROTATED_AFTER_SECS - 1);
    })
    .await
    .unwrap();
    let rotating = Container::of(&bed.bed).await;
    let (report, refresh) = run_job(sandbox, &rotating, &job(JobReason::Schedule)).await;
    assert!(report.looked_only, "{report:?}");
    assert_eq!(refresh.sign_in, 1, "{}", refresh.detail("refresh"));
    assert_eq!(
        refresh.dynamodb_operations(),
        ["GetItem", "GetItem", "GetItem", "PutItem", "PutItem"],
        "{}",
        refresh.detail("refresh")
    );
    rows.push((
        "scheduled run storing a rotated refresh token, new container".into(),
        refresh,
    ));

    // One Outlook change: Graph notifies the webhook, which queues one job; its run writes the
    // change to the CRM.
    let delivered = graph.deliveries().len();
    let meter = Meter::start(sandbox, &[&webhook, &sync]);
    graph
        .update_event(
            USER_OID,
            &outlook_ids[0],
            json!({"subject": "Internal review 1 (moved)"}),
        )
        .unwrap();
    quiesce(graph, delivered + 1).await;
    let notifications = graph.deliveries().len() - delivered;
    assert_eq!(notifications, 1, "one notification per Outlook change");
    let mut notified = meter.read(&webhook);
    // The webhook's own time: Graph's POST, answered.
    notified.wall = graph.deliveries().last().unwrap().elapsed;
    assert_eq!(notified.sqs.len(), 1, "{}", notified.detail("webhook"));
    assert_eq!(notified.sqs_messages(), 1);
    assert!(notified.dynamodb.len() <= 1 && notified.secrets.is_empty());
    rows.push(("webhook: one notification".into(), notified));
    let jobs = queued_jobs(&bed.bed).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].reason, JobReason::Notification);
    let (report, outlook_change) = run_job(sandbox, &sync, &jobs[0]).await;
    assert_eq!(report.counts.crm_updated, 1, "{report:?}");
    assert_eq!(report.counts.writes(), 1, "{report:?}");
    rows.push((
        "run after an Outlook change (writes the CRM)".into(),
        outlook_change,
    ));
    quiesce(graph, delivered + 1).await;
    assert_eq!(
        graph.deliveries().len() - delivered,
        1,
        "a CRM write makes no notification"
    );

    // One CRM change: the CRM module nudges, the webhook queues one job, its run writes the
    // change to Outlook, and Graph notifies calsync of its own write: an echo run that writes
    // nothing. Three nudges: the tenant's first of the hour (noted on its settings), the first
    // of a new webhook container (which reads the tenant's settings and secret), and one in a
    // warm container, which is what most nudges cost.
    let second_webhook = Container::of(&bed.bed).await;
    let nudges = [
        (1, &webhook, "the tenant's first this hour"),
        (2, &second_webhook, "new container"),
        (3, &second_webhook, "warm container"),
    ];
    for (n, taker, label) in nudges {
        assert!(sandbox.crm().ui_edit(
            &crm_ids[n],
            &[("subject", &format!("Customer visit {n} (moved)"))]
        ));
        let meter = Meter::start(sandbox, &[taker]);
        let answer = calsync_testkit::web::webhook(
            &taker.app,
            &nudge_request(&bed.bed, &format!("nudge-nonce-{n}-0123456789")),
        )
        .await;
        assert_eq!(answer.status, 202);
        let nudged = meter.read(taker);
        assert_eq!(nudged.sqs_messages(), 1, "{}", nudged.detail("nudge"));
        assert_eq!(nudged.secrets.len(), usize::from(n < 3));
        if n == 3 {
            // The nonce, the user's queued-nudge mark, the job.
            assert_eq!(
                nudged.dynamodb_operations(),
                ["PutItem", "UpdateItem"],
                "{}",
                nudged.detail("nudge")
            );
        }
        rows.push((format!("webhook: one nudge, {label}"), nudged));
        let jobs = queued_jobs(&bed.bed).await;
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].reason, JobReason::Nudge);

        let delivered = graph.deliveries().len();
        webhook.forget_calls();
        let (report, crm_change) = run_job(sandbox, &sync, &jobs[0]).await;
        assert_eq!(report.counts.outlook_updated, 1, "{report:?}");
        assert_eq!(report.counts.writes(), 1, "{report:?}");
        quiesce(graph, delivered + 1).await;
        assert_eq!(
            graph.deliveries().len() - delivered,
            1,
            "calsync's write to Outlook is notified back"
        );
        let mut echo_notified = Cost::of(&webhook);
        echo_notified.wall = graph.deliveries().last().unwrap().elapsed;
        let jobs = queued_jobs(&bed.bed).await;
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        let (report, echo) = run_job(sandbox, &sync, &jobs[0]).await;
        assert_eq!(
            report.counts.writes(),
            0,
            "an echo writes nothing: {report:?}"
        );
        if n == 3 {
            rows.push(("run after a nudge (writes Outlook)".into(), crm_change));
            rows.push(("webhook: the echo's notification".into(), echo_notified));
            rows.push(("echo run (writes nothing)".into(), echo));
        }
    }

    // Dispatch rounds of this one-user tenant: one whose sweep is not due (the tenant's clock
    // only), one that sweeps it with nobody due (the user ran moments ago), and one that
    // renews the user's subscription (expiring within the 12-hour margin).
    // `sweep`: the tenant's clock is emptied first, so the round sweeps it.
    let round = |sweep: bool| {
        let (sync, webhook, tenant) = (&sync, &webhook, &bed.bed.tenant);
        async move {
            if sweep {
                sync.app
                    .sweeps
                    .set(tenant, &SweepClock::default())
                    .await
                    .unwrap();
            }
            let meter = Meter::start(sandbox, &[webhook, sync]);
            let round = calsync::entry::dispatch::dispatch(&sync.app, None)
                .await
                .unwrap();
            (round, meter.read(sync))
        }
    };
    round(false).await;
    let (report, idle) = round(false).await;
    assert_eq!((report.tenants, report.tenants_swept), (1, 0), "{report:?}");
    assert!(idle.secrets.is_empty() && idle.graph.is_empty() && idle.sqs.is_empty());
    rows.push(("dispatch round, tenant not due".into(), idle));
    let (report, swept) = round(true).await;
    assert_eq!(
        (report.tenants_swept, report.users_due),
        (1, 0),
        "{report:?}"
    );
    assert!(swept.secrets.is_empty() && swept.graph.is_empty() && swept.sqs.is_empty());
    rows.push(("dispatch round, sweeping 1 user, none due".into(), swept));
    edit_user(&bed.bed.app, &bed.bed.tenant, &bed.bed.user, |r| {
        r.subscription_expires_at = Some(now() + 3600);
    })
    .await
    .unwrap();
    let (report, renewing) = round(true).await;
    assert_eq!(
        report.upkeep,
        [(bed.bed.user.to_string(), Upkeep::Renewed)],
        "{report:?}"
    );
    rows.push((
        "dispatch round, 1 user, renewing its subscription".into(),
        renewing,
    ));

    let user_item = bed.record().await.unwrap();
    let sealed = |s: &Option<String>| s.as_deref().map_or(0, str::len);
    println!("\nWhat each operation sent out (sync_costs.rs):\n\n{TABLE_HEADER}");
    for (name, cost) in &rows {
        println!("{}", cost.row(name));
    }
    println!();
    for (name, cost) in &rows {
        println!("{}", cost.detail(name));
    }
    println!(
        "\nuser item: {user_bytes} bytes; links: 12, {link_bytes} bytes ({} per link); sealed refresh token {} chars, delta link {} chars",
        link_bytes / 12,
        sealed(&user_item.refresh_token_sealed),
        user_item
            .progress
            .as_ref()
            .and_then(|p| p.outlook_delta.as_deref())
            .map_or(0, str::len),
    );
}

/// A dispatch round that sweeps a tenant of 25 connected users: one Query of the tenant
/// registry, one read of the tenant's settings and one of its sweep clock, the users' Query
/// (paged at 1 MB), the clock written back, and one SendMessageBatch per ten users due.
#[tokio::test]
async fn a_dispatch_round_reads_every_user_once_and_queues_ten_jobs_a_call() {
    const USERS: usize = 25;
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    bed.take_jobs().await.unwrap();
    let maria = bed.stored_user().await.unwrap().record;
    let with_last_run = |at: i64| {
        let maria = maria.clone();
        let tenant = bed.tenant.clone();
        let app = bed.app.clone();
        async move {
            for n in 0..USERS {
                let mut record = maria.clone();
                if n > 0 {
                    record.user =
                        calsync_core::ids::CrmUserName::parse(&format!("user{n:02}")).unwrap();
                    record.ms_user_id = format!("00000000-0000-4000-8000-{n:012}");
                }
                assert_eq!(record.tenant, tenant);
                record.status = UserStatus::Connected;
                record.last_sync = Some(SyncSummary {
                    last_run_at: Some(at),
                    ..record.last_sync.clone().unwrap_or_default()
                });
                put_user(&app, &record).await.unwrap();
            }
        }
    };
    let sync = Container::of(&bed).await;
    let mut rows = Vec::new();
    for (label, last_run, due) in [
        ("all due", now() - 3600, USERS),
        ("none due", now() - 60, 0),
    ] {
        with_last_run(last_run).await;
        // Each round here is one in which the tenant's sweep is due.
        sync.app
            .sweeps
            .set(&bed.tenant, &SweepClock::default())
            .await
            .unwrap();
        let meter = Meter::start(&bed.sandbox, &[&sync]);
        let round = calsync::entry::dispatch::dispatch(&sync.app, None)
            .await
            .unwrap();
        let cost = meter.read(&sync);
        assert_eq!(round.users_due, due, "{round:?}");
        assert_eq!(cost.sqs.len(), due.div_ceil(10), "{}", cost.detail(label));
        assert_eq!(cost.sqs_messages(), due);
        // The registry, the tenant's settings, its sweep clock, its users (one page at this
        // size), their quiet looks (who is overdue), the clock written back.
        assert_eq!(
            cost.dynamodb_operations(),
            ["Query", "GetItem", "GetItem", "Query", "Query", "PutItem"],
            "{}",
            cost.detail(label)
        );
        assert!(cost.secrets.is_empty() && cost.graph.is_empty());
        let user_bytes: usize = cost
            .dynamodb
            .iter()
            .filter(|c| c.operation.ends_with("Query"))
            .nth(1)
            .and_then(|c| c.response.as_deref())
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| v["Items"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(item_size)
            .sum();
        rows.push((
            format!("dispatch round, {USERS} users, {label}"),
            cost,
            user_bytes / USERS,
        ));
        bed.take_jobs().await.unwrap();
    }
    println!("\nA dispatch round (sync_costs.rs):\n\n{TABLE_HEADER}");
    for (name, cost, _) in &rows {
        println!("{}", cost.row(name));
    }
    for (name, cost, per_user) in &rows {
        println!("{}\n  user item: {per_user} bytes", cost.detail(name));
    }
}

/// What the function binaries write to their logs (CloudWatch Logs ingests every byte), with
/// Lambda's JSON log format as the template sets it: per dispatch round, per job (one metric
/// line each) and per webhook request.
#[tokio::test]
async fn what_each_invocation_writes_to_its_log() {
    let bed = SyncBed::start().await.unwrap();
    let mut env = bed.bed.env();
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    let sync = FunctionProcess::spawn(&binary_path("calsync-sync"), "calsync-sync", &env)
        .await
        .unwrap();
    let webhook = FunctionProcess::spawn(&binary_path("calsync-webhook"), "calsync-webhook", &env)
        .await
        .unwrap();
    seed_outlook(&bed, "Kick-off", "2026-12-09");
    let body =
        json!({"tenant": bed.bed.tenant, "user": "maria", "reason": "notification", "full": false})
            .to_string();
    let group = format!("{}#maria", bed.bed.tenant);

    let mut rows = Vec::new();
    let written = |process: &FunctionProcess| process.logs().len();
    // A job that writes (the first sync), then one that writes nothing.
    for label in [
        "job: first sync, writes one event",
        "job that writes nothing",
    ] {
        let before = written(&sync);
        let event = calsync_testkit::events::sqs_fifo_event(&[(&body, &group, "m-1")]);
        let answer = sync.invoke(event).await.unwrap().into_ok().unwrap();
        assert_eq!(answer, json!({"batchItemFailures": []}));
        let lines = logged_after(&sync, before).await;
        let metric_lines = lines.lines().filter(|l| l.contains("\"_aws\"")).count();
        assert_eq!(metric_lines, 1, "one metric line per job: {lines}");
        rows.push((label, lines.len(), lines.lines().count()));
    }
    let before = written(&sync);
    sync.invoke(json!({"action": "dispatch"}))
        .await
        .unwrap()
        .into_ok()
        .unwrap();
    let lines = logged_after(&sync, before).await;
    rows.push(("dispatch round", lines.len(), lines.lines().count()));

    // The webhook: a nudge, and a notification for a subscription it knows.
    let record = calsync::services::subscriptions::SubscriptionRecord {
        id: "0fd6d6a0-6b4f-4b2e-9d0c-1a2b3c4d5e6f".into(),
        tenant: bed.bed.tenant.clone(),
        user: bed.bed.user.clone(),
        client_state_hash: calsync::crypto::sha256_hex("client-state"),
        expires_at: now() + 86_400,
        created_at: now(),
    };
    calsync_testkit::testbed::put_subscription(&bed.bed.app, &record)
        .await
        .unwrap();
    let notification = json!({"value": [{
        "subscriptionId": record.id,
        "changeType": "updated",
        "clientState": "client-state",
        "resource": format!("Users/{USER_OID}/Events/AAMkAD1="),
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": "AAMkAD1="}
    }]})
    .to_string();
    let nudge =
        String::from_utf8(nudge_request(&bed.bed, "log-nudge-nonce-0123456789").body).unwrap();
    for (label, path, content_type, body) in [
        (
            "webhook: one notification",
            "/notifications",
            "application/json",
            notification,
        ),
        (
            "webhook: one nudge",
            "/nudge",
            "application/x-www-form-urlencoded",
            nudge,
        ),
    ] {
        let before = written(&webhook);
        let event = calsync_testkit::events::function_url_event(
            "POST",
            path,
            &[],
            &[("content-type", content_type)],
            Some(&body),
        );
        let answer = webhook.invoke(event).await.unwrap().into_ok().unwrap();
        assert_eq!(answer["statusCode"], 202, "{answer}");
        let lines = logged_after(&webhook, before).await;
        rows.push((label, lines.len(), lines.lines().count()));
    }

    println!("\nWhat each invocation logs, AWS_LAMBDA_LOG_FORMAT=JSON (sync_costs.rs):\n\n| invocation | bytes | lines |\n|---|---|---|");
    for (label, bytes, lines) in &rows {
        println!("| {label} | {bytes} | {lines} |");
        assert!(*bytes < 8 * 1024, "{label} logs {bytes} bytes");
    }
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

//! The operator's CLI against moto and the sandbox, as a process: key rotations (link key, token
//! key, CRM access key), `tenant check` and the checks `tenant add` runs, `--stack`, `--json`
//! on the commands that read, and shell completions.

use calsync::crypto::SealingKey;
use calsync::nudge::Nudge;
use calsync::services::tenants::TOKEN_KEY_RETIRE_AFTER_SECS;
use calsync::services::users::UserRecord;
use calsync::App;
use calsync_core::ids::CrmUserName;
use calsync_core::secret::Secret;
use calsync_sandbox::subscriber::{TestSubscriber, ValidationMode};
use calsync_testkit::syncbed::{point_at_sandbox_crm, seed_crm_users, SyncBed, CRM_ADMIN_KEY};
use calsync_testkit::testbed::{
    link_query, now, request, run_cli, LinkRoute, TestBed, AZURE_TENANT, CLIENT_ID, CLIENT_SECRET,
    USER_OID,
};
use calsync_testkit::web::WebRequest;
use serde_json::Value;

/// The CLI against `bed` with `env` added; its exit code, stdout and stderr.
fn cli_with(
    bed: &TestBed,
    extra_env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut env = bed.env();
    for (k, v) in extra_env {
        env.retain(|(name, _)| name != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    let out = run_cli(args, &env, stdin);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI against `bed`, which must exit with `code`; its stdout.
fn cli(bed: &TestBed, args: &[&str], stdin: Option<&str>, code: i32) -> String {
    let (status, stdout, stderr) = cli_with(bed, &[], args, stdin);
    assert_eq!(
        status,
        Some(code),
        "calsync {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Another container of the same deployment: nothing cached, so it reads the secret as the
/// CLI left it.
fn fresh_app(bed: &TestBed) -> App {
    App::with_parts(
        bed.app.config.clone(),
        bed.app.store.clone(),
        bed.app.secret_store.clone(),
        bed.app.queue.clone(),
    )
    .unwrap()
}

async fn post_nudge(app: &App, body: &str) -> u16 {
    calsync_testkit::web::webhook(
        app,
        &WebRequest {
            method: "POST".into(),
            path: "/nudge".into(),
            query: String::new(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: body.as_bytes().to_vec(),
        },
    )
    .await
    .status
}

fn nudge(bed: &TestBed, key: &Secret, nonce: &str) -> String {
    Nudge {
        tenant: bed.tenant.clone(),
        user: CrmUserName::parse("maria").unwrap(),
        sent_at: now(),
        nonce: nonce.to_owned(),
    }
    .form(key)
}

fn revealed_link_key(bed: &TestBed) -> Secret {
    let shown = json(&cli(
        bed,
        &[
            "tenant",
            "show",
            bed.tenant.as_str(),
            "--reveal-link-key",
            "--json",
        ],
        None,
        0,
    ));
    Secret::new(shown["link_key"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_key_rotation_refuses_old_links_and_takes_old_nudges_only_for_the_overlap() {
    let bed = TestBed::start().await.unwrap();
    let tenant = bed.tenant.as_str();
    let old_link = bed.link_query(LinkRoute::Status, Some("maria"), 3600, None);
    let before = request(&fresh_app(&bed), "GET", "/status.json", &old_link).await;
    assert_eq!(before.status, 200, "{}", before.body);

    let out = cli(&bed, &["tenant", "rotate-link-key", tenant], None, 0);
    // The steps the CRM's administrator follows, and how to print the new key.
    for step in [
        "Settings > Extensions > Office 365 (calsync)",
        "crm-module/tools/configure.php",
        &format!("calsync tenant show {tenant} --reveal-link-key"),
        "Nudges signed with the old key are still taken until",
    ] {
        assert!(out.contains(step), "{step:?} missing from:\n{out}");
    }
    assert!(
        !out.contains(bed.link_key.expose()),
        "the old key is not printed"
    );
    let new_key = revealed_link_key(&bed);
    assert_ne!(new_key, bed.link_key);
    assert!(!out.contains(new_key.expose()), "nor the new one");

    // A container that reads the secret now refuses links signed with the old key…
    let app = fresh_app(&bed);
    let refused = request(&app, "GET", "/status.json", &old_link).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let connect = bed.link_query(LinkRoute::Connect, Some("maria"), 600, None);
    assert_eq!(request(&app, "GET", "/connect", &connect).await.status, 403);
    // …opens links signed with the new one…
    let new_link = link_query(
        &bed.tenant,
        &new_key,
        LinkRoute::Status,
        Some("maria"),
        3600,
        None,
    );
    assert_eq!(
        request(&app, "GET", "/status.json", &new_link).await.status,
        200
    );
    // …and takes nudges signed with either while the overlap lasts.
    let old_nudge = nudge(&bed, &bed.link_key, "old-key-nonce-0123456789");
    assert_eq!(post_nudge(&app, &old_nudge).await, 202);
    let new_nudge = nudge(&bed, &new_key, "new-key-nonce-0123456789");
    assert_eq!(post_nudge(&app, &new_nudge).await, 202);

    // A rotation without overlap (a key that leaked): the keys before refuse nudges at once.
    let out = cli(
        &bed,
        &["tenant", "rotate-link-key", tenant, "--nudge-overlap", "0"],
        None,
        0,
    );
    assert!(out.contains("refused from now on"), "{out}");
    let app = fresh_app(&bed);
    for (key, nonce) in [
        (&new_key, "second-key-nonce-0123456"),
        (&bed.link_key, "first-key-nonce-01234567"),
    ] {
        assert_eq!(post_nudge(&app, &nudge(&bed, key, nonce)).await, 403);
    }
    let newest = revealed_link_key(&bed);
    assert_eq!(
        post_nudge(&app, &nudge(&bed, &newest, "newest-key-nonce-012345")).await,
        202
    );
    let (code, _, stderr) = cli_with(
        &bed,
        &[],
        &[
            "tenant",
            "rotate-link-key",
            tenant,
            "--nudge-overlap",
            "30d",
        ],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("up to 7d"), "{stderr}");
}

/// The user's sealed refresh token (access tokens are not stored).
async fn sealed_refresh_token(app: &App, bed: &TestBed) -> String {
    app.users
        .get(&bed.tenant, &bed.user)
        .await
        .unwrap()
        .unwrap()
        .record
        .refresh_token_sealed
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_key_rotation_reseals_every_token_and_syncs_go_on() {
    let sync = SyncBed::start().await.unwrap();
    let bed = &sync.bed;
    let tenant = bed.tenant.as_str();
    let context = UserRecord::seal_context(&bed.tenant, &bed.user);

    // The tenant as it was before key ids: one key without an id, tokens sealed `v1.`.
    let setup = fresh_app(bed);
    let mut secret = setup.tenants.secret(&bed.tenant).await.unwrap();
    let ring = secret.token_keys().unwrap();
    secret.token_key_id = None;
    let legacy = SealingKey::from_hex(&secret.token_key).unwrap();
    setup
        .users
        .reseal_tokens(&bed.tenant, &bed.user, |sealed| {
            let plain = ring.open(sealed, &context)?;
            legacy.seal(&plain, &context).map(Some)
        })
        .await
        .unwrap();
    setup
        .tenants
        .put_secret(&bed.tenant, &secret)
        .await
        .unwrap();
    let before = sealed_refresh_token(&setup, bed).await;
    assert!(before.starts_with("v1."), "{before:?}");
    // bed.app reads this secret (only the key without an id) and keeps it cached throughout:
    // it plays a container that has not seen the rotation.
    let stale = &bed.app;
    stale.tenants.fresh_token_keys(&bed.tenant).await.unwrap();
    sync.seed_crm("Before the rotation", "2026-12-10", "10:00:00", "11:00:00");
    sync.settle().await.unwrap();

    let out = cli(bed, &["tenant", "rotate-token-key", tenant], None, 0);
    assert!(out.contains("token key k1 now seals"), "{out}");
    assert!(
        out.contains("re-sealed the tokens of 1 of 1 user(s) with k1"),
        "{out}"
    );
    assert!(out.contains(&format!("calsync tenant retire-token-keys {tenant}")));
    let after = sealed_refresh_token(&fresh_app(bed), bed).await;
    assert!(after.starts_with("v2.k1."), "{after:?}");
    // The earlier key still opens what it sealed; the new one opens the re-sealed tokens.
    let keys = fresh_app(bed)
        .tenants
        .context(&bed.tenant)
        .await
        .unwrap()
        .sealing_key;
    assert_eq!(
        keys.open(&before, &context).unwrap(),
        keys.open(&after, &context).unwrap()
    );

    // The stale container meets tokens sealed with k1: it reads the secret again, refreshes
    // once and syncs. (Graph refusing the access token it holds makes it refresh.)
    bed.sandbox.identity().revoke_access_tokens(USER_OID);
    let refreshes = bed.sandbox.identity().token_request_counts().refresh_token;
    sync.seed_crm("After the rotation", "2026-12-11", "10:00:00", "11:00:00");
    sync.settle().await.unwrap();
    assert!(sync
        .outlook_subjects()
        .contains(&"After the rotation".to_owned()));
    assert_eq!(
        bed.sandbox.identity().token_request_counts().refresh_token,
        refreshes + 1
    );
    let tokens = sealed_refresh_token(&fresh_app(bed), bed).await;
    assert!(tokens.starts_with("v2.k1."), "{tokens:?}");
    // A container that knows the new key opens the stored refresh token as it is.
    let app = fresh_app(bed);
    let context_now = app.tenants.context(&bed.tenant).await.unwrap();
    app.tokens
        .user_access_token(&context_now, &bed.user)
        .await
        .unwrap();
    assert_eq!(
        bed.sandbox.identity().token_request_counts().refresh_token,
        refreshes + 2
    );

    // The earlier key is retired only once no container can still seal with it.
    let (code, _, stderr) = cli_with(bed, &[], &["tenant", "retire-token-keys", tenant], None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("run this again then"), "{stderr}");
    let mut secret = app.tenants.secret(&bed.tenant).await.unwrap();
    secret.token_key_since = Some(now() - TOKEN_KEY_RETIRE_AFTER_SECS - 1);
    app.tenants.put_secret(&bed.tenant, &secret).await.unwrap();
    let out = cli(bed, &["tenant", "retire-token-keys", tenant], None, 0);
    assert!(
        out.contains("retired token key(s) (the key without id)"),
        "{out}"
    );
    let secret = fresh_app(bed).tenants.secret(&bed.tenant).await.unwrap();
    assert!(secret.previous_token_keys.is_empty());
    let keys = secret.token_keys().unwrap();
    assert!(keys.open(&before, &context).is_err(), "the old key is gone");
    assert!(keys.open(&tokens, &context).is_ok());
    let out = cli(bed, &["tenant", "retire-token-keys", tenant], None, 0);
    assert!(out.contains("nothing to retire"), "{out}");

    // A second rotation numbers the key k2, and a run with a fresh container still syncs.
    let out = cli(bed, &["tenant", "rotate-token-key", tenant], None, 0);
    assert!(out.contains("token key k2 now seals"), "{out}");
    let shown = json(&cli(bed, &["tenant", "show", tenant, "--json"], None, 0));
    assert_eq!(shown["token_key_id"], "k2");
    assert_eq!(shown["previous_token_key_ids"], serde_json::json!(["k1"]));
    assert!(!shown.to_string().contains(secret.token_key.expose()));
    let job = sync.job(false);
    calsync::entry::jobs::run_job(&fresh_app(bed), &job)
        .await
        .unwrap();
    let tokens = sealed_refresh_token(&fresh_app(bed), bed).await;
    assert!(tokens.starts_with("v2.k2."), "{tokens:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_started_after_a_rotation_finishes_on_a_container_that_has_not_seen_it() {
    let bed = TestBed::start().await.unwrap();
    // bed.app has read the secret (k1) and keeps it cached.
    bed.app.tenants.context(&bed.tenant).await.unwrap();
    cli(
        &bed,
        &["tenant", "rotate-token-key", bed.tenant.as_str()],
        None,
        0,
    );
    // The sign-in starts on a container that knows k2 (its verifier sealed with k2)…
    let fresh = fresh_app(&bed);
    let start = request(
        &fresh,
        "GET",
        "/connect",
        &bed.link_query(LinkRoute::Connect, Some("maria"), 600, None),
    )
    .await;
    let query = bed
        .sign_in(start.header("location").unwrap())
        .await
        .unwrap();
    // …and comes back to one that does not: it reads the keys again.
    let done = bed.callback(&start, &query).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let context = UserRecord::seal_context(&bed.tenant, &bed.user);
    let keys = fresh_app(&bed)
        .tenants
        .context(&bed.tenant)
        .await
        .unwrap()
        .sealing_key;
    keys.open(&sealed_refresh_token(&fresh, &bed).await, &context)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_key_is_stored_only_when_it_logs_in() {
    let sync = SyncBed::start().await.unwrap();
    let bed = &sync.bed;
    let tenant = bed.tenant.as_str();
    // The CRM's administrator regenerates the integration user's key.
    assert!(bed
        .sandbox
        .crm()
        .set_access_key("admin", "regenerated-key-2"));

    let (code, stdout, stderr) = cli_with(
        bed,
        &[],
        &["tenant", "rotate-crm-key", tenant],
        Some("not-the-key\n"),
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("fail  crm-login"), "{stdout}");
    assert!(stderr.contains("nothing was stored"), "{stderr}");
    let stored = fresh_app(bed).tenants.secret(&bed.tenant).await.unwrap();
    assert_eq!(stored.crm_access_key.expose(), CRM_ADMIN_KEY);
    assert!(!stdout.contains("not-the-key") && !stderr.contains("not-the-key"));

    let out = cli(
        bed,
        &["tenant", "rotate-crm-key", tenant],
        Some("crm_access_key=regenerated-key-2\n"),
        0,
    );
    assert!(out.contains("pass  crm-login"), "{out}");
    assert!(out.contains("the CRM access key is replaced"), "{out}");
    assert!(!out.contains("regenerated-key-2"));
    let app = fresh_app(bed);
    let stored = app.tenants.secret(&bed.tenant).await.unwrap();
    assert_eq!(stored.crm_access_key.expose(), "regenerated-key-2");
    // A sync with the stored key works.
    sync.seed_crm("With the new key", "2026-12-12", "09:00:00", "09:30:00");
    calsync::entry::jobs::run_job(&app, &sync.job(false))
        .await
        .unwrap();
    assert!(sync
        .outlook_subjects()
        .contains(&"With the new key".to_owned()));

    let (code, _, stderr) = cli_with(bed, &[], &["tenant", "rotate-crm-key", tenant], Some(""));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no access key on stdin"), "{stderr}");
}

/// A bed whose CRM is the sandbox vtiger and whose webhook URL is a local subscriber.
async fn checked_bed() -> (TestBed, TestSubscriber) {
    let subscriber = TestSubscriber::start().await.unwrap();
    let bed = TestBed::start_with_webhook(Some(subscriber.base_url()))
        .await
        .unwrap();
    seed_crm_users(&bed.sandbox, "UTC").unwrap();
    point_at_sandbox_crm(&bed.app, &bed.tenant, &bed.sandbox.base_url(), "UTC")
        .await
        .unwrap();
    (bed, subscriber)
}

fn line_of<'a>(out: &'a str, check: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_check_passes_and_fails_with_a_reason_per_check() {
    let (bed, subscriber) = checked_bed().await;
    let tenant = bed.tenant.as_str();
    let out = cli(&bed, &["tenant", "check", tenant], None, 0);
    for check in ["entra-credentials", "crm-login", "crm-rights", "webhook"] {
        assert!(line_of(&out, check).starts_with("pass"), "{out}");
    }
    assert!(line_of(&out, "admin-consent").starts_with("skip"), "{out}");
    assert!(subscriber
        .received()
        .iter()
        .any(|r| r.validation_token.is_some()));
    let report = json(&cli(&bed, &["tenant", "check", tenant, "--json"], None, 0));
    assert_eq!(report["passed"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 5);

    // App-only without an administrator's consent: the token has no calendar permission.
    cli(
        &bed,
        &["tenant", "update", tenant, "--mode", "app-only"],
        None,
        0,
    );
    let (code, out, _) = cli_with(&bed, &[], &["tenant", "check", tenant], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(line_of(&out, "admin-consent").starts_with("fail"), "{out}");
    assert!(line_of(&out, "admin-consent").contains("--admin-consent"));
    bed.sandbox
        .identity()
        .grant_admin_consent(AZURE_TENANT, CLIENT_ID)
        .unwrap();
    let out = cli(&bed, &["tenant", "check", tenant], None, 0);
    assert!(line_of(&out, "admin-consent").starts_with("pass"), "{out}");

    // Everything wrong at once: each check says what.
    subscriber.set_validation_mode(ValidationMode::Fail);
    let app = fresh_app(&bed);
    let mut secret = app.tenants.secret(&bed.tenant).await.unwrap();
    secret.client_secret = Secret::new("a-wrong-client-secret");
    secret.crm_user = "pedro".into();
    secret.crm_access_key = Secret::new("pedro-key");
    app.tenants.put_secret(&bed.tenant, &secret).await.unwrap();
    let (code, out, stderr) = cli_with(&bed, &[], &["tenant", "check", tenant], None);
    assert_eq!(code, Some(1), "{out}");
    assert!(stderr.contains("a check failed"), "{stderr}");
    let entra = line_of(&out, "entra-credentials");
    assert!(
        entra.starts_with("fail") && entra.contains("client secret"),
        "{out}"
    );
    assert!(line_of(&out, "crm-login").starts_with("pass"), "{out}");
    let rights = line_of(&out, "crm-rights");
    assert!(
        rights.starts_with("fail") && rights.contains("pedro is not a CRM administrator"),
        "{out}"
    );
    let webhook = line_of(&out, "webhook");
    assert!(
        webhook.starts_with("fail") && webhook.contains("HTTP 500"),
        "{out}"
    );
    assert!(!out.contains("a-wrong-client-secret") && !out.contains("pedro-key"));
    let report = json(&cli_with(&bed, &[], &["tenant", "check", tenant, "--json"], None).1);
    assert_eq!(report["passed"], false);

    // A CRM key that does not log in, and a webhook nobody answers.
    secret.crm_user = "admin".into();
    secret.crm_access_key = Secret::new("wrong-admin-key");
    app.tenants.put_secret(&bed.tenant, &secret).await.unwrap();
    let (_, out, _) = cli_with(
        &bed,
        &[("CALSYNC_WEBHOOK_URL", "http://127.0.0.1:9/")],
        &["tenant", "check", tenant],
        None,
    );
    assert!(line_of(&out, "crm-login").starts_with("fail"), "{out}");
    assert!(line_of(&out, "crm-rights").starts_with("skip"), "{out}");
    assert!(
        line_of(&out, "webhook").contains("could not be reached"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_add_checks_before_saving_unless_told_not_to() {
    let (bed, _subscriber) = checked_bed().await;
    let crm_url = bed.sandbox.base_url();
    let add = |tenant: &str, crm_user: &str, key: &str, extra: &[&str]| {
        let secrets = format!("client_secret={CLIENT_SECRET}\ncrm_access_key={key}\n");
        let mut args = vec![
            "tenant",
            "add",
            tenant,
            "--azure-tenant-id",
            AZURE_TENANT,
            "--client-id",
            CLIENT_ID,
            "--crm-url",
            &crm_url,
            "--crm-user",
            crm_user,
            "--secrets-file",
            "-",
        ];
        args.extend_from_slice(extra);
        cli_with(&bed, &[], &args, Some(&secrets))
    };
    let good = calsync_testkit::testbed::unique("good");
    let (code, out, err) = add(&good, "admin", CRM_ADMIN_KEY, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("pass  crm-login") && out.contains(&format!("tenant {good} added")));

    let bad = calsync_testkit::testbed::unique("bad");
    let (code, out, err) = add(&bad, "admin", "wrong-key", &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(line_of(&out, "crm-login").starts_with("fail"), "{out}");
    assert!(err.contains("not added"), "{err}");
    let listed = json(&cli(&bed, &["tenant", "list", "--json"], None, 0));
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["tenant"].as_str())
        .collect();
    assert!(ids.contains(&good.as_str()) && !ids.contains(&bad.as_str()));

    let (code, out, err) = add(&bad, "admin", "wrong-key", &["--no-check"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("crm-login"), "no checks ran: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_option_reads_the_deployed_stacks_outputs() {
    let bed = TestBed::start().await.unwrap();
    let stack = calsync_testkit::testbed::unique("calsync-stack");
    let template = serde_json::json!({
        "Parameters": {"SecretPrefix": {"Type": "String", "Default": "calsync/"}},
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": stack}}},
        "Outputs": {
            "TableName": {"Value": bed.table},
            "JobQueueUrl": {"Value": bed.queue_url},
            "AuthUrl": {"Value": "https://auth.from-the-stack.test/"},
            "WebhookUrl": {"Value": "https://webhook.from-the-stack.test/"},
        },
    });
    calsync_testkit::moto::create_stack(
        &stack,
        &template.to_string(),
        &[("SecretPrefix", &bed.secret_prefix)],
    )
    .await
    .unwrap();
    // Nothing calsync's own exported: the stack says it all.
    let unset: Vec<(&str, &str)> = [
        "CALSYNC_TABLE",
        "CALSYNC_SECRET_PREFIX",
        "CALSYNC_PUBLIC_URL",
        "CALSYNC_QUEUE_URL",
    ]
    .into_iter()
    .map(|k| (k, ""))
    .collect();
    let (code, out, err) = cli_with(
        &bed,
        &unset,
        &["--stack", &stack, "tenant", "list", "--json"],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json(&out)[0]["tenant"], bed.tenant.as_str());
    let (code, out, err) = cli_with(
        &bed,
        &unset,
        &[
            "link",
            "--tenant",
            bed.tenant.as_str(),
            "--user",
            "maria",
            "--stack",
            &stack,
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("https://auth.from-the-stack.test/connect?"),
        "{out}"
    );
    let (code, _, err) = cli_with(
        &bed,
        &[],
        &["--stack", "no-such-stack", "tenant", "list"],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("no-such-stack"), "{err}");
    let (code, _, err) = cli_with(
        &bed,
        &[],
        &["--stack", &stack, "--data-dir", "/tmp/x", "tenant", "list"],
        None,
    );
    assert_eq!(code, Some(2), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_that_reads_answers_in_json() {
    let sync = SyncBed::start().await.unwrap();
    let bed = &sync.bed;
    let tenant = bed.tenant.as_str();
    sync.seed_crm("Planned", "2026-12-14", "10:00:00", "11:00:00");

    let list = json(&cli(bed, &["tenant", "list", "--json"], None, 0));
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["tenant"] == tenant));
    let show = json(&cli(bed, &["tenant", "show", tenant, "--json"], None, 0));
    assert_eq!(show["tenant"], tenant);
    assert!(show.get("link_key").is_none());
    let link = json(&cli(
        bed,
        &[
            "link", "--tenant", tenant, "--user", "maria", "--status", "--json",
        ],
        None,
        0,
    ));
    assert_eq!(link["route"], "status");
    assert!(link["url"].as_str().unwrap().contains("/status?"));
    assert!(link["expires_at"].as_i64().unwrap() > now());

    let dry = json(&cli(
        bed,
        &["resync", "--tenant", tenant, "--dry-run", "--json"],
        None,
        0,
    ));
    assert_eq!(dry["dry_run"], true);
    let plan = dry["users"][0]["plan"].as_array().unwrap();
    assert!(
        plan.iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("create in Outlook: \"Planned\"")),
        "{dry}"
    );
    sync.settle().await.unwrap();

    let status = json(&cli(
        bed,
        &["status", "--tenant", tenant, "--user", "maria", "--json"],
        None,
        2,
    ));
    let user = &status["users"][0];
    assert_eq!(user["user"], "maria");
    assert!(user["journal"].is_array() && user["skipped"].is_array());
    assert!(status["needs_attention"].as_u64().unwrap() >= 1);
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _calsync"),
        ("zsh", "#compdef calsync"),
        ("fish", "complete -c calsync"),
    ] {
        let out = run_cli(&["completions", shell], &[], None);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("rotate-token-key"), "{shell}");
    }
    let out = run_cli(&["completions", "tcsh"], &[], None);
    assert!(!out.status.success());
}

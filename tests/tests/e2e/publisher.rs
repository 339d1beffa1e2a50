//! Onboarding without an app registration: the publisher app, a customer administrator's
//! consent, revocation, and the publisher's certificate credential — against the sandbox's
//! identity platform and moto.

use calsync::adapters::client_assertion::{CertificateCredential, ASSERTION_TYPE};
use calsync::adapters::identity::{AppRegistration, ClientCredential, Identity, IdentityError};
use calsync::adapters::queue::{JobReason, SyncJob};
use calsync::services::tenants::{MicrosoftAccess, TenantSettings};
use calsync::services::users::UserStatus;
use calsync_core::secret::Secret;
use calsync_sandbox::identity::{self_signed_certificate, DemoKey, PUBLISHER_CLIENT_ID};
use calsync_testkit::publisher::*;
use calsync_testkit::testbed::{now, query_value, request, run_cli, LinkRoute};
use std::time::Duration;

const DAY: i64 = 86_400;

async fn settings(bed: &PublisherBed) -> TenantSettings {
    bed.bed
        .app
        .tenants
        .settings(&bed.tenant)
        .await
        .unwrap()
        .unwrap()
}

/// The table without the one-time states: a refused consent spends its state and changes
/// nothing else.
async fn lasting_rows(bed: &PublisherBed) -> Vec<String> {
    bed.bed
        .snapshot()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| !row.contains("OAUTH#"))
        .collect()
}

async fn onboarded(expected: Option<&str>) -> PublisherBed {
    let bed = PublisherBed::start(now() + 365 * DAY, expected)
        .await
        .unwrap();
    let query = bed.consent_as(CUSTOMER_ADMIN, true).await.unwrap();
    let page = bed.callback(&query).await;
    assert_eq!(page.status, 200, "{}", page.body);
    bed
}

#[tokio::test]
async fn a_customer_onboards_by_consent_with_no_microsoft_credential_stored() {
    let bed = PublisherBed::start(now() + 365 * DAY, None).await.unwrap();
    // Before the consent users cannot connect, and nothing is written.
    let before = bed.bed.snapshot().await.unwrap();
    let early = request(
        &bed.bed.app,
        "GET",
        "/connect",
        &calsync_testkit::testbed::link_query(
            &bed.tenant,
            &bed.link_key,
            LinkRoute::Connect,
            Some("maria"),
            600,
            None,
        ),
    )
    .await;
    assert_eq!(early.status, 409, "{}", early.body);
    assert!(early.body.contains("not consented"), "{}", early.body);
    assert_eq!(bed.bed.snapshot().await.unwrap(), before);

    // The link leads to Microsoft's v2.0 admin consent for any organisation, asking for the
    // delegated permissions users connect with.
    let start = request(&bed.bed.app, "GET", "/admin-consent", &bed.consent_link()).await;
    let location = start.header("location").unwrap().to_owned();
    let consent = url::Url::parse(&location).unwrap();
    assert!(
        consent.path().ends_with("/organizations/v2.0/adminconsent"),
        "{location}"
    );
    let scope = query_value(consent.query().unwrap(), "scope").unwrap();
    assert!(
        scope.contains("https://graph.microsoft.com/Calendars.ReadWrite")
            && scope.contains("offline_access")
    );
    assert!(
        !scope.contains(".default"),
        "no application permission for a delegated tenant"
    );
    assert_eq!(
        query_value(consent.query().unwrap(), "client_id").as_deref(),
        Some(PUBLISHER_CLIENT_ID)
    );

    let query = bed
        .answer_consent(&location, CUSTOMER_ADMIN, true)
        .await
        .unwrap();
    assert_eq!(
        query_value(&query, "admin_consent").as_deref(),
        Some("True")
    );
    let page = bed.callback(&query).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let active = settings(&bed).await;
    assert_eq!(active.directory.as_deref(), Some(CUSTOMER_DIRECTORY));
    assert_eq!(active.microsoft_access(), MicrosoftAccess::Active);
    let grant = bed
        .bed
        .sandbox
        .identity()
        .tenant_grant(CUSTOMER_DIRECTORY, PUBLISHER_CLIENT_ID)
        .unwrap();
    assert!(grant.admin_consented && grant.delegated.iter().any(|p| p == "Calendars.ReadWrite"));
    assert!(grant.roles.is_empty(), "{grant:?}");

    // The tenant's secret holds no Microsoft credential at all.
    let name = bed.bed.app.tenants.secret_name(&bed.tenant);
    let raw = bed.bed.app.secret_store.get(&name).await.unwrap().unwrap();
    let stored: serde_json::Value = serde_json::from_str(raw.expose()).unwrap();
    for key in ["client_secret", "client_id", "azure_tenant_id", "authority"] {
        assert!(
            stored.get(key).is_none(),
            "{key} stored: {}",
            stored
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        );
    }

    // A user of the directory connects through the multi-tenant authority…
    let connected = bed.connect("maria", CUSTOMER_USER).await.unwrap();
    assert_eq!(connected.status, 200, "{}", connected.body);
    let user = bed
        .bed
        .app
        .users
        .get(&bed.tenant, &PublisherBed::crm_user("maria"))
        .await
        .unwrap()
        .unwrap()
        .record;
    assert_eq!(user.ms_tenant_id, CUSTOMER_DIRECTORY);
    assert_eq!(user.status, UserStatus::Connected);
    let authorize = bed.bed.sandbox.identity().authorize_requests();
    assert_eq!(authorize.last().unwrap().tenant, "organizations");
    // …and one of another organisation is refused: the token's tid is not the directory.
    let before = bed.bed.snapshot().await.unwrap();
    let stranger = bed.connect("pedro", OTHER_USER).await.unwrap();
    assert_eq!(stranger.status, 403, "{}", stranger.body);
    let after: Vec<String> = bed
        .bed
        .snapshot()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| !row.contains("OAUTH#"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|row| !row.contains("OAUTH#"))
        .collect();
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_consent_for_another_directory_activates_nothing() {
    // The operator named the customer's directory: the link goes to it.
    let bed = PublisherBed::start(now() + 365 * DAY, Some(CUSTOMER_DIRECTORY))
        .await
        .unwrap();
    let start = request(&bed.bed.app, "GET", "/admin-consent", &bed.consent_link()).await;
    let location = start.header("location").unwrap().to_owned();
    assert!(
        location.contains(&format!("/{CUSTOMER_DIRECTORY}/v2.0/adminconsent")),
        "{location}"
    );
    // Someone takes the link to another organisation and consents there.
    let elsewhere = location.replace(&format!("/{CUSTOMER_DIRECTORY}/"), "/organizations/");
    let before = lasting_rows(&bed).await;
    let query = bed
        .answer_consent(&elsewhere, OTHER_ADMIN, true)
        .await
        .unwrap();
    assert_eq!(
        query_value(&query, "tenant").as_deref(),
        Some(OTHER_DIRECTORY)
    );
    let page = bed.callback(&query).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains(OTHER_DIRECTORY), "{}", page.body);
    assert_eq!(lasting_rows(&bed).await, before);
    assert_eq!(
        settings(&bed).await.microsoft_access(),
        MicrosoftAccess::AwaitingConsent
    );

    // A directory already bound to another tenant is not bound to a second one.
    let query = bed.consent_as(CUSTOMER_ADMIN, true).await.unwrap();
    assert_eq!(bed.callback(&query).await.status, 200);
    let second = PublisherBedTwin::add(&bed).await;
    let before = lasting_rows(&bed).await;
    let start = request(
        &bed.bed.app,
        "GET",
        "/admin-consent",
        &second.consent_link(),
    )
    .await;
    let query = bed
        .answer_consent(start.header("location").unwrap(), CUSTOMER_ADMIN, true)
        .await
        .unwrap();
    let page = bed.callback(&query).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("another tenant"), "{}", page.body);
    assert_eq!(lasting_rows(&bed).await, before);
}

/// A second publisher-app tenant in the same bed.
struct PublisherBedTwin {
    tenant: calsync_core::ids::TenantId,
    link_key: Secret,
}

impl PublisherBedTwin {
    async fn add(bed: &PublisherBed) -> Self {
        let tenant =
            calsync_core::ids::TenantId::parse(&calsync_testkit::testbed::unique("contoso"))
                .unwrap();
        let mut settings = settings(bed).await;
        settings.tenant = tenant.clone();
        settings.directory = None;
        settings.expected_directory = None;
        let mut secret = bed.bed.app.tenants.secret(&bed.tenant).await.unwrap();
        secret.link_key = Secret::new(calsync::crypto::random_token(32));
        bed.bed.app.tenants.add(&settings, &secret).await.unwrap();
        Self {
            tenant,
            link_key: secret.link_key,
        }
    }

    fn consent_link(&self) -> String {
        calsync_testkit::testbed::link_query(
            &self.tenant,
            &self.link_key,
            LinkRoute::AdminConsent,
            None,
            3600,
            None,
        )
    }
}

#[tokio::test]
async fn forged_and_replayed_consent_callbacks_are_refused() {
    let bed = PublisherBed::start(now() + 365 * DAY, None).await.unwrap();
    let before = bed.bed.snapshot().await.unwrap();
    // A state calsync never issued.
    let forged = format!(
        "admin_consent=True&tenant={CUSTOMER_DIRECTORY}&state={}&scope=openid",
        "A".repeat(43)
    );
    let page = bed.callback(&forged).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert_eq!(bed.bed.snapshot().await.unwrap(), before);

    // A real state, but a callback made up without anyone consenting: Microsoft gives no
    // token for a directory the app is not installed in.
    let start = request(&bed.bed.app, "GET", "/admin-consent", &bed.consent_link()).await;
    let location = url::Url::parse(start.header("location").unwrap()).unwrap();
    let state = query_value(location.query().unwrap(), "state").unwrap();
    let before = lasting_rows(&bed).await;
    let made_up = format!(
        "admin_consent=True&tenant={CUSTOMER_DIRECTORY}&state={state}&scope={}",
        urlencoding::encode(&calsync::services::consent::DELEGATED_CONSENT.join(" "))
    );
    let page = bed.callback(&made_up).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("not installed"), "{}", page.body);
    assert_eq!(lasting_rows(&bed).await, before);
    assert_eq!(settings(&bed).await.directory, None);

    // A good consent works once; the same callback again is a replay.
    let query = bed.consent_as(CUSTOMER_ADMIN, true).await.unwrap();
    assert_eq!(bed.callback(&query).await.status, 200);
    let after_first = bed.bed.snapshot().await.unwrap();
    let replay = bed.callback(&query).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert_eq!(bed.bed.snapshot().await.unwrap(), after_first);

    // An administrator who cancels: Microsoft's permission_denied, nothing activated.
    let other = PublisherBedTwin::add(&bed).await;
    let start = request(&bed.bed.app, "GET", "/admin-consent", &other.consent_link()).await;
    let query = bed
        .answer_consent(start.header("location").unwrap(), OTHER_ADMIN, false)
        .await
        .unwrap();
    assert_eq!(
        query_value(&query, "error").as_deref(),
        Some("permission_denied")
    );
    let page = bed.callback(&query).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let twin = bed
        .bed
        .app
        .tenants
        .settings(&other.tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(twin.directory, None);
}

#[tokio::test]
async fn a_consent_missing_a_permission_activates_nothing() {
    let bed = PublisherBed::start(now() + 365 * DAY, None).await.unwrap();
    // The consent asked without the calendar permission (an old or altered link).
    let start = request(&bed.bed.app, "GET", "/admin-consent", &bed.consent_link()).await;
    let mut url = url::Url::parse(start.header("location").unwrap()).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "scope" {
                v.replace(" https://graph.microsoft.com/Calendars.ReadWrite", "")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let before = lasting_rows(&bed).await;
    let query = bed
        .answer_consent(url.as_str(), CUSTOMER_ADMIN, true)
        .await
        .unwrap();
    let page = bed.callback(&query).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("Calendars.ReadWrite"), "{}", page.body);
    assert_eq!(lasting_rows(&bed).await, before);

    // An app-only tenant needs the application permission, which only `.default` grants: a
    // consent to the delegated permissions alone is not enough.
    bed.bed
        .app
        .tenants
        .update_settings(&bed.tenant, |s| {
            s.mode = calsync::services::tenants::AccessMode::AppOnly
        })
        .await
        .unwrap();
    let start = request(&bed.bed.app, "GET", "/admin-consent", &bed.consent_link()).await;
    let location = start.header("location").unwrap().to_owned();
    let everything = urlencoding::encode("https://graph.microsoft.com/.default");
    assert!(location.contains(everything.as_ref()), "{location}");
    let delegated_only = location.replace(
        everything.as_ref(),
        &urlencoding::encode("openid https://graph.microsoft.com/Calendars.ReadWrite"),
    );
    let before = lasting_rows(&bed).await;
    let query = bed
        .answer_consent(&delegated_only, OTHER_ADMIN, true)
        .await
        .unwrap();
    let page = bed.callback(&query).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("application permission"),
        "{}",
        page.body
    );
    assert_eq!(lasting_rows(&bed).await, before);
    // With `.default` it works, and the app-only token carries the role.
    let query = bed.consent_as(CUSTOMER_ADMIN, true).await.unwrap();
    assert_eq!(bed.callback(&query).await.status, 200);
    let grant = bed
        .bed
        .sandbox
        .identity()
        .tenant_grant(CUSTOMER_DIRECTORY, PUBLISHER_CLIENT_ID)
        .unwrap();
    assert_eq!(grant.roles, ["Calendars.ReadWrite"]);
}

#[tokio::test]
async fn a_removed_app_flags_the_tenant_without_a_retry_storm() {
    let bed = onboarded(None).await;
    // Tokens that expire at once, so every run must refresh.
    bed.bed
        .sandbox
        .identity()
        .set_access_token_lifetime(Duration::ZERO);
    assert_eq!(
        bed.connect("maria", CUSTOMER_USER).await.unwrap().status,
        200
    );
    bed.bed.take_jobs().await.unwrap();
    let identity = bed.bed.sandbox.identity();
    assert!(identity
        .remove_app_from_tenant(CUSTOMER_DIRECTORY, PUBLISHER_CLIENT_ID)
        .unwrap());

    let job = SyncJob {
        tenant: bed.tenant.clone(),
        user: PublisherBed::crm_user("maria"),
        reason: JobReason::Schedule,
        full: false,
        origin: None,
    };
    let before = identity.token_request_counts();
    // The run ends without an error, so the queue does not retry it.
    calsync::entry::jobs::run_job(&bed.bed.app, &job)
        .await
        .unwrap();
    let first = identity.token_request_counts();
    // One refresh, refused (AADSTS65001), and one client-credentials probe (AADSTS700016).
    assert_eq!(first.refresh_token - before.refresh_token, 1);
    assert_eq!(first.client_credentials - before.client_credentials, 1);
    let flagged = settings(&bed).await;
    assert_eq!(flagged.microsoft_access(), MicrosoftAccess::Revoked);
    let detail = &flagged.access_revoked.as_ref().unwrap().detail;
    assert!(detail.contains("65001"), "{detail}");
    // The tenant is flagged, not the user: one reconsent brings everyone back.
    let user = bed
        .bed
        .app
        .users
        .get(&bed.tenant, &PublisherBed::crm_user("maria"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.record.status, UserStatus::Connected);

    // Later jobs and dispatch rounds ask Microsoft nothing and queue nothing.
    calsync::entry::jobs::run_job(&bed.bed.app, &job)
        .await
        .unwrap();
    let report = calsync::entry::dispatch::dispatch(&bed.bed.app, Some(&bed.tenant))
        .await
        .unwrap();
    assert_eq!(report.jobs_queued, 0);
    assert!(report.tenants_warned >= 1);
    assert_eq!(identity.token_request_counts(), first);

    // The operator sees it, and so does the CRM panel.
    let env = bed.bed.env();
    let out = run_cli(
        &["status", "--tenant", bed.tenant.as_str(), "--json"],
        &env,
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["warnings"][0]
            .as_str()
            .unwrap()
            .contains("removed it or its consent"),
        "{status}"
    );
    let panel = request(
        &bed.bed.app,
        "GET",
        "/status.json",
        &calsync_testkit::testbed::link_query(
            &bed.tenant,
            &bed.link_key,
            LinkRoute::Status,
            Some("maria"),
            300,
            None,
        ),
    )
    .await;
    let panel: serde_json::Value = serde_json::from_str(&panel.body).unwrap();
    assert_eq!(panel["microsoft_access"], "revoked");
    assert_eq!(panel["problems"][0]["code"], "microsoft_access_revoked");

    // The administrator consents again: the tenant works again.
    let query = bed.consent_as(CUSTOMER_ADMIN, true).await.unwrap();
    assert_eq!(bed.callback(&query).await.status, 200);
    assert_eq!(
        settings(&bed).await.microsoft_access(),
        MicrosoftAccess::Active
    );
}

#[tokio::test]
async fn one_users_revoked_grant_does_not_flag_the_tenant() {
    let bed = onboarded(None).await;
    bed.bed
        .sandbox
        .identity()
        .set_access_token_lifetime(Duration::ZERO);
    assert_eq!(
        bed.connect("maria", CUSTOMER_USER).await.unwrap().status,
        200
    );
    // The user's sessions are revoked (AADSTS50173): theirs to reconnect, not the tenant's.
    bed.bed
        .sandbox
        .identity()
        .revoke_user(CUSTOMER_USER_OID)
        .unwrap();
    let job = SyncJob {
        tenant: bed.tenant.clone(),
        user: PublisherBed::crm_user("maria"),
        reason: JobReason::Schedule,
        full: false,
        origin: None,
    };
    calsync::entry::jobs::run_job(&bed.bed.app, &job)
        .await
        .unwrap();
    assert_eq!(
        settings(&bed).await.microsoft_access(),
        MicrosoftAccess::Active
    );
    let user = bed
        .bed
        .app
        .users
        .get(&bed.tenant, &PublisherBed::crm_user("maria"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.record.status, UserStatus::ReconnectRequired);
}

#[tokio::test]
async fn the_publisher_certificate_signs_for_tokens_and_its_expiry_is_warned_about() {
    // A certificate with ten days left: it works, and everyone who should is told.
    let bed = onboarded(None).await;
    let publisher = bed
        .bed
        .app
        .tenants
        .publisher()
        .get()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(publisher.kind(), "certificate");
    assert!(publisher.warnings(now()).is_empty());

    let soon = PublisherBed::start(now() + 10 * DAY, None).await.unwrap();
    let env = soon.bed.env();
    let out = run_cli(&["publisher", "show", "--json"], &env, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["credential"], "certificate");
    let warning = shown["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("certificate expires on") && warning.contains("days"),
        "{warning}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PRIVATE KEY"));
    let status = run_cli(
        &["status", "--tenant", soon.tenant.as_str(), "--json"],
        &env,
        None,
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("certificate expires on")),
        "{status}"
    );
    let query = soon.consent_as(CUSTOMER_ADMIN, true).await.unwrap();
    assert_eq!(soon.callback(&query).await.status, 200);

    // Expired: Microsoft refuses the assertion (AADSTS700027), the warning says so, and a
    // consent cannot be checked, so nothing is activated.
    let expired = PublisherBed::start(now() - DAY, None).await.unwrap();
    let warnings = expired
        .bed
        .app
        .tenants
        .publisher()
        .get()
        .await
        .unwrap()
        .unwrap()
        .warnings(now());
    assert!(warnings[0].contains("expired on"), "{warnings:?}");
    let query = expired.consent_as(CUSTOMER_ADMIN, true).await.unwrap();
    let page = expired.callback(&query).await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert_eq!(settings(&expired).await.directory, None);
}

#[tokio::test]
async fn client_assertions_are_checked_as_microsoft_checks_them() {
    let bed = onboarded(None).await;
    let identity = Identity::new(
        url::Url::parse(&bed.bed.sandbox.base_url()).unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let registration = |credential| AppRegistration {
        directory: CUSTOMER_DIRECTORY,
        authority: CUSTOMER_DIRECTORY,
        client_id: PUBLISHER_CLIENT_ID,
        credential,
    };
    let good = CertificateCredential::from_pem(
        &bed.credential.certificate_pem,
        &Secret::new(bed.credential.private_key_pem.clone()),
    )
    .unwrap();
    identity
        .fresh_app_token(registration(ClientCredential::Certificate(&good)))
        .await
        .unwrap();
    // A certificate the app does not have.
    let stranger =
        self_signed_certificate(DemoKey::Stranger, "stranger", now() - 60, now() + DAY).unwrap();
    let stranger = CertificateCredential::from_pem(
        &stranger.certificate_pem,
        &Secret::new(stranger.private_key_pem),
    )
    .unwrap();
    let refused = identity
        .fresh_app_token(registration(ClientCredential::Certificate(&stranger)))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, IdentityError::Refused { error, aadsts: Some(700027) } if error == "invalid_client"),
        "{refused:?}"
    );
    // Assertions made for another endpoint, or already expired, or for another client.
    let endpoint = format!(
        "{}/{CUSTOMER_DIRECTORY}/oauth2/v2.0/token",
        bed.bed.sandbox.base_url()
    );
    let post = |assertion: Secret, client_id: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            let answer = reqwest::Client::new()
                .post(&endpoint)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("scope", "https://graph.microsoft.com/.default"),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", assertion.expose()),
                ])
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let body: serde_json::Value = answer.json().await.unwrap();
            (status, body["error_codes"][0].as_u64())
        }
    };
    let elsewhere = good
        .assertion(
            PUBLISHER_CLIENT_ID,
            &format!(
                "{}/organizations/oauth2/v2.0/token",
                bed.bed.sandbox.base_url()
            ),
            now(),
        )
        .unwrap();
    assert_eq!(
        post(elsewhere, PUBLISHER_CLIENT_ID).await,
        (401, Some(700023))
    );
    let stale = good
        .assertion(PUBLISHER_CLIENT_ID, &endpoint, now() - 3600)
        .unwrap();
    assert_eq!(post(stale, PUBLISHER_CLIENT_ID).await, (401, Some(700024)));
    let right = good
        .assertion(PUBLISHER_CLIENT_ID, &endpoint, now())
        .unwrap();
    assert_eq!(
        post(right.clone(), "00000000-0000-4000-8000-000000000000").await,
        (401, Some(700021))
    );
    assert_eq!(post(right, PUBLISHER_CLIENT_ID).await.0, 200);
}

/// Answers the sandbox's sign-in page at `location` as `username`, accepting; returns where
/// Microsoft sends the browser back to.
async fn sign_in_page_as(http: &reqwest::Client, location: &str, username: &str) -> String {
    let page = http
        .get(location)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let field = |start: &str| {
        let from = page.find(start).unwrap() + start.len();
        page[from..from + page[from..].find('"').unwrap()].to_owned()
    };
    let action = url::Url::parse(location)
        .unwrap()
        .join(&field("<form method=\"post\" action=\""))
        .unwrap();
    let flow = field("name=\"flow\" value=\"");
    let answer = http
        .post(action)
        .form(&[
            ("flow", flow.as_str()),
            ("username", username),
            ("action", "accept"),
        ])
        .send()
        .await
        .unwrap();
    answer.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_serve_demo_walks_the_consent_path() {
    let serve = calsync_testkit::serve::ServeProcess::start("1h").unwrap();
    let consent = serve.url_on("consent fabrikam").unwrap();
    let connect = serve.url_on("then connect lee").unwrap();
    let status_page = serve.url_on("status page:").unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(&status_page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("waiting for the customer"), "{page}");

    // The administrator: calsync's link, Microsoft's consent page, accept, back to calsync.
    let to_microsoft = http.get(&consent).send().await.unwrap();
    let location = to_microsoft.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        location.contains("/organizations/v2.0/adminconsent"),
        "{location}"
    );
    let back = sign_in_page_as(&http, &location, "admin@fabrikam.example").await;
    let done = http.get(&back).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("consent"));

    // Then the user connects, through the multi-tenant authority.
    let start = http.get(&connect).send().await.unwrap();
    let cookie = start.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("/organizations/oauth2/v2.0/authorize"),
        "{location}"
    );
    let back = sign_in_page_as(&http, &location, "lee.chen@fabrikam.example").await;
    let connected = http
        .get(&back)
        .header("cookie", cookie)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(connected.status(), 200);
    assert!(connected
        .text()
        .await
        .unwrap()
        .contains("lee.chen@fabrikam.example"));
    let page = http
        .get(&status_page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("waiting for the customer"), "{page}");
    serve.stop().unwrap();
}

#[tokio::test]
async fn the_operator_sets_the_publisher_app_once_and_adds_a_tenant_with_crm_details_only() {
    let bed = calsync_testkit::testbed::TestBed::start().await.unwrap();
    let uris = publisher_redirect_uris();
    let credential = bed
        .sandbox
        .identity()
        .seed_publisher(&[&uris[0], &uris[1]], now() + 365 * DAY)
        .unwrap();
    let dir = std::env::temp_dir().join(calsync_testkit::testbed::unique("publisher"));
    std::fs::create_dir_all(&dir).unwrap();
    let certificate = dir.join("certificate.pem");
    std::fs::write(&certificate, &credential.certificate_pem).unwrap();
    let certificate = certificate.to_str().unwrap();
    let env = bed.env();

    // A key that is not the certificate's is refused, and nothing is stored.
    let stranger =
        self_signed_certificate(DemoKey::Stranger, "x", now() - 60, now() + DAY).unwrap();
    let set = [
        "publisher",
        "set",
        "--client-id",
        PUBLISHER_CLIENT_ID,
        "--certificate",
        certificate,
        "--private-key-file",
        "-",
    ];
    let out = run_cli(&set, &env, Some(&stranger.private_key_pem));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not the certificate's"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"));
    assert!(bed
        .app
        .tenants
        .publisher()
        .stored()
        .await
        .unwrap()
        .is_none());

    let out = run_cli(&set, &env, Some(&credential.private_key_pem));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(certificate)"));

    // A tenant with the CRM's details and a name only; the consent link comes with it.
    let tenant = calsync_testkit::testbed::unique("globex");
    let add = [
        "tenant",
        "add",
        &tenant,
        "--name",
        "Globex",
        "--crm-url",
        "https://crm.globex.test",
        "--crm-user",
        "admin",
        "--secrets-file",
        "-",
        "--no-check",
    ];
    let out = run_cli(&add, &env, Some("crm_access_key=globex-key\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = stdout
        .lines()
        .find(|line| line.contains("/admin-consent?"))
        .unwrap_or_else(|| panic!("no consent link: {stdout}"));
    let id = calsync_core::ids::TenantId::parse(&tenant).unwrap();
    let raw = bed
        .app
        .secret_store
        .get(&bed.app.tenants.secret_name(&id))
        .await
        .unwrap()
        .unwrap();
    assert!(!raw.expose().contains("client_secret") && !raw.expose().contains("client_id"));
    // The link leads to Microsoft's admin consent for the publisher app.
    let query = link.split_once('?').unwrap().1;
    let start = request(&bed.app, "GET", "/admin-consent", query).await;
    assert_eq!(start.status, 302, "{}", start.body);
    assert!(start.header("location").unwrap().contains(&format!(
        "/organizations/v2.0/adminconsent?client_id={PUBLISHER_CLIENT_ID}"
    )));

    // A client secret without an app of the customer's own is a mistake, said as such.
    let out = run_cli(
        &add.map(|a| if a == tenant { "other-globex" } else { a }),
        &env,
        Some("crm_access_key=k\nclient_secret=s\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app"));

    // A client secret is accepted instead of a certificate; its expiry is the one given.
    let expires = jiff::Timestamp::from_second(now() + 12 * DAY)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    let out = run_cli(
        &[
            "publisher",
            "set",
            "--client-id",
            PUBLISHER_CLIENT_ID,
            "--client-secret-file",
            "-",
            "--client-secret-expires",
            &expires,
        ],
        &env,
        Some("a-publisher-secret-value\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cli(&["publisher", "show", "--json"], &env, None);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["credential"], "client secret");
    let warning = shown["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains(&format!("client secret expires on {expires}")),
        "{warning}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("a-publisher-secret-value"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn two_tenants_binding_one_directory_at_once_get_it_once() {
    let bed = PublisherBed::start(now() + 365 * DAY, None).await.unwrap();
    let twin = PublisherBedTwin::add(&bed).await;
    let tenants = &bed.bed.app.tenants;
    let (first, second) = tokio::join!(
        tenants.activate(&bed.tenant, CUSTOMER_DIRECTORY),
        tenants.activate(&twin.tenant, CUSTOMER_DIRECTORY)
    );
    assert_eq!(
        [first.is_ok(), second.is_ok()]
            .iter()
            .filter(|ok| **ok)
            .count(),
        1,
        "{first:?} {second:?}"
    );
    let bound = [&bed.tenant, &twin.tenant].map(|t| async move {
        tenants
            .settings(t)
            .await
            .unwrap()
            .unwrap()
            .directory
            .is_some()
    });
    let [a, b] = bound;
    assert_eq!(u8::from(a.await) + u8::from(b.await), 1);
}

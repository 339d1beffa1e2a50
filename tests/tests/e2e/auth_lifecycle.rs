//! After connecting: the status page, disconnecting (and connecting again without losing what
//! the sync knows), and tenant-wide admin consent.

use calsync::services::tenants::AccessMode;
use calsync::services::users::UserStatus;
use calsync_testkit::testbed::{
    query_value, LinkRoute, TestBed, AZURE_TENANT, CLIENT_ID, CRM_URL, CRM_USER, USER_OID,
};
use calsync_testkit::web::WebRequest;

#[tokio::test]
async fn status_page_speaks_the_users_language() {
    let bed = TestBed::start().await.unwrap();
    let query = bed.link_query(LinkRoute::Status, Some(CRM_USER), 600, None);
    let never = bed.request("GET", "/status", &query).await;
    assert_eq!(never.status, 200);
    assert!(never.body.contains("Never connected"));
    assert_eq!(bed.connect().await.unwrap().status, 200);

    let english = bed.request("GET", "/status", &query).await;
    assert!(english.body.contains("<html lang=\"en\">"));
    assert!(english.body.contains("Connected"));
    assert!(english.body.contains("maria.garcia@acme.example"));
    assert!(english.body.contains("none yet"), "no sync has run");
    assert!(english.body.contains("notifications_unavailable"));
    assert!(english.body.contains("action=\"disconnect\""));
    assert_eq!(english.header("cache-control"), Some("no-store"));

    let spanish = calsync_testkit::web::auth(
        &bed.app,
        &WebRequest {
            method: "GET".into(),
            path: "/status".into(),
            query: query.clone(),
            headers: vec![("accept-language".into(), "es-ES,es;q=0.9,en;q=0.5".into())],
            body: Vec::new(),
        },
    )
    .await;
    assert!(spanish.body.contains("<html lang=\"es\">"));
    assert!(spanish.body.contains("Estado de la sincronización"));
    assert!(spanish.body.contains("Desconectar"));
}

#[tokio::test]
async fn disconnect_forgets_tokens_and_reconnect_keeps_the_link() {
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let before = bed.stored_user().await.unwrap().record;

    let form = bed.link_query(LinkRoute::Disconnect, Some(CRM_USER), 600, None);
    let response = calsync_testkit::web::auth(
        &bed.app,
        &WebRequest {
            method: "POST".into(),
            path: "/disconnect".into(),
            query: String::new(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: form.into_bytes(),
        },
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let after = bed.stored_user().await.unwrap().record;
    assert_eq!(after.status, UserStatus::Disconnected);
    assert!(after.refresh_token_sealed.is_none() && after.refresh_token_stored_at.is_none());
    assert_eq!(
        after.ms_user_id, before.ms_user_id,
        "the link is kept for a reconnect"
    );
    let rows = bed.snapshot().await.unwrap();
    assert!(
        !rows.iter().any(|r| r.contains("MSUSER#")),
        "the account index entry is freed"
    );

    // A forged disconnect is refused.
    let forged = bed
        .link_query(LinkRoute::Disconnect, Some(CRM_USER), 600, None)
        .replace("sig=", "sig=00");
    let refused = bed.request("POST", "/disconnect", &forged).await;
    assert_eq!(refused.status, 403);

    assert_eq!(bed.connect().await.unwrap().status, 200);
    let again = bed.stored_user().await.unwrap().record;
    assert_eq!(again.status, UserStatus::Connected);
    assert_eq!(again.ms_user_id, USER_OID);
}

#[tokio::test]
async fn one_microsoft_account_cannot_feed_two_crm_users() {
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    // Another CRM user signs in with the same Microsoft account.
    let start = bed
        .request(
            "GET",
            "/connect",
            &bed.link_query(LinkRoute::Connect, Some("pedro"), 600, None),
        )
        .await;
    let callback = bed
        .sign_in(start.header("location").unwrap())
        .await
        .unwrap();
    let before = bed.snapshot().await.unwrap();
    let refused = bed.callback(&start, &callback).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(bed.snapshot().await.unwrap(), before);
}

#[tokio::test]
async fn admin_consent_switches_the_tenant_to_app_only() {
    let bed = TestBed::start().await.unwrap();
    let start = bed
        .request(
            "GET",
            "/admin-consent",
            &bed.link_query(LinkRoute::AdminConsent, None, 600, None),
        )
        .await;
    assert_eq!(start.status, 302, "{}", start.body);
    let location = start.header("location").unwrap().to_owned();
    assert!(location.contains(&format!("/{AZURE_TENANT}/adminconsent?")));
    assert_eq!(
        query_value(location.split_once('?').unwrap().1, "client_id").as_deref(),
        Some(CLIENT_ID)
    );
    let callback = bed.sign_in(&location).await.unwrap();
    assert_eq!(
        query_value(&callback, "admin_consent").as_deref(),
        Some("True")
    );
    let done = bed
        .request("GET", "/admin-consent/callback", &callback)
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let settings = bed
        .app
        .tenants
        .settings(&bed.tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settings.mode, AccessMode::AppOnly);
    assert!(settings.admin_consent_at.is_some());
    assert!(bed
        .sandbox
        .identity()
        .has_admin_consent(AZURE_TENANT, CLIENT_ID));
    // The state was one-time.
    assert_eq!(
        bed.request("GET", "/admin-consent/callback", &callback)
            .await
            .status,
        400
    );
    // A user link does not open the admin route.
    let user_link = bed.link_query(LinkRoute::Connect, Some(CRM_USER), 600, None);
    assert_eq!(
        bed.request("GET", "/admin-consent", &user_link)
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn a_refused_admin_consent_changes_nothing() {
    let bed = TestBed::start().await.unwrap();
    bed.sandbox
        .identity()
        .deny_next_admin_consent(AZURE_TENANT)
        .unwrap();
    let start = bed
        .request(
            "GET",
            "/admin-consent",
            &bed.link_query(LinkRoute::AdminConsent, None, 600, None),
        )
        .await;
    let callback = bed
        .sign_in(start.header("location").unwrap())
        .await
        .unwrap();
    let before = bed.snapshot().await.unwrap();
    let done = bed
        .request("GET", "/admin-consent/callback", &callback)
        .await;
    assert_eq!(done.status, 403, "{}", done.body);
    assert_eq!(bed.snapshot().await.unwrap(), before);
}

#[tokio::test]
async fn without_a_configured_public_url_the_function_url_host_is_used() {
    let bed = TestBed::start().await.unwrap();
    let mut config = bed.app.config.clone();
    config.public_url = None;
    let app = calsync::App::with_parts(
        config,
        bed.app.store.clone(),
        bed.app.secret_store.clone(),
        bed.app.queue.clone(),
    )
    .unwrap();
    let host = "abcdefghij.lambda-url.eu-west-1.on.aws";
    let request = |host: Option<&str>| WebRequest {
        method: "GET".into(),
        path: "/connect".into(),
        query: bed.link_query(LinkRoute::Connect, Some(CRM_USER), 600, None),
        headers: host
            .map(|h| vec![("host".to_owned(), h.to_owned())])
            .unwrap_or_default(),
        body: Vec::new(),
    };
    let response = calsync_testkit::web::auth(&app, &request(Some(host))).await;
    assert_eq!(response.status, 302, "{}", response.body);
    let location = response.header("location").unwrap();
    let query = location.split_once('?').unwrap().1;
    assert_eq!(
        query_value(query, "redirect_uri"),
        Some(format!("https://{host}/callback"))
    );
    // A Host that is not a plain host name is not trusted.
    assert_eq!(
        calsync_testkit::web::auth(&app, &request(Some("evil.example/x?")))
            .await
            .status,
        500
    );
    assert_eq!(
        calsync_testkit::web::auth(&app, &request(None))
            .await
            .status,
        500
    );
}

#[tokio::test]
async fn two_simultaneous_sign_ins_of_one_mailbox_link_it_once() {
    let bed = TestBed::start().await.unwrap();
    let mut started = Vec::new();
    for user in [CRM_USER, "pedro"] {
        let start = bed
            .request(
                "GET",
                "/connect",
                &bed.link_query(LinkRoute::Connect, Some(user), 600, None),
            )
            .await;
        let callback = bed
            .sign_in(start.header("location").unwrap())
            .await
            .unwrap();
        started.push((start, callback));
    }
    let (first, second) = tokio::join!(
        bed.callback(&started[0].0, &started[0].1),
        bed.callback(&started[1].0, &started[1].1),
    );
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", first.body, second.body);
    let holder = bed
        .app
        .users
        .account_holder(&bed.tenant, USER_OID)
        .await
        .unwrap()
        .unwrap();
    let connected: Vec<_> = bed
        .app
        .users
        .list(&bed.tenant)
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.status == UserStatus::Connected)
        .map(|u| u.user)
        .collect();
    assert_eq!(connected, [holder], "one CRM user has the mailbox");
}

#[tokio::test]
async fn the_crm_module_reads_the_status_as_json() {
    let bed = TestBed::start().await.unwrap();
    let query = bed.link_query(LinkRoute::Status, Some(CRM_USER), 120, None);
    let never = bed.request("GET", "/status.json", &query).await;
    assert_eq!(never.status, 200, "{}", never.body);
    let never: serde_json::Value = serde_json::from_str(&never.body).unwrap();
    assert_eq!(never["status"], "never_connected");
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let connected = bed.request("GET", "/status.json", &query).await;
    assert_eq!(connected.header("cache-control"), Some("no-store"));
    let connected: serde_json::Value = serde_json::from_str(&connected.body).unwrap();
    assert_eq!(connected["status"], "connected");
    assert_eq!(connected["microsoft_account"], "maria.garcia@acme.example");
    assert_eq!(
        connected["problems"][0]["code"],
        "notifications_unavailable"
    );
    // Only a status link opens it.
    let connect = bed.link_query(LinkRoute::Connect, Some(CRM_USER), 120, None);
    let refused = bed.request("GET", "/status.json", &connect).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body, r#"{"error":"link_refused"}"#);
}

#[tokio::test]
async fn disconnecting_from_the_crm_panel_goes_back_to_it_and_elsewhere_is_refused() {
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    // A return address off the CRM's origin: refused, and the user stays connected.
    let off = bed.link_query(
        LinkRoute::Disconnect,
        Some(CRM_USER),
        600,
        Some("https://evil.example/phish"),
    );
    let refused = bed.request("POST", "/disconnect", &off).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let still = bed.app.users.get(&bed.tenant, &bed.user).await.unwrap();
    assert_eq!(still.unwrap().record.status, UserStatus::Connected);

    let back = format!("{CRM_URL}/index.php?module=Calsync&view=Panel");
    let form = bed.link_query(LinkRoute::Disconnect, Some(CRM_USER), 600, Some(&back));
    let done = bed.request("POST", "/disconnect", &form).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(
        done.header("location").unwrap(),
        format!("{back}&calsync=disconnected")
    );
    let after = bed.app.users.get(&bed.tenant, &bed.user).await.unwrap();
    assert_eq!(after.unwrap().record.status, UserStatus::Disconnected);
}

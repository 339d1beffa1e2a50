//! End to end, as an operator and a user meet calsync: the operator adds a tenant and makes a
//! link with the real `calsync` CLI; the user follows it through the real `calsync-auth` binary
//! (run by the Lambda Runtime API stand-in) and the sandbox's Microsoft sign-in; the operator
//! sees the user connected. The plain refresh token appears nowhere: not in DynamoDB, not in
//! any log, not in any output.

use calsync_testkit::testbed::{
    query_value, TestBed, AZURE_TENANT, CLIENT_ID, CLIENT_SECRET, USER_OID,
};
use calsync_testkit::{binary_path, function_url_event, FunctionProcess, FunctionUrlResponse};

/// Runs the `calsync` CLI against the bed; returns stdout and stderr, panicking on failure.
fn cli(bed: &TestBed, args: &[&str], stdin: Option<&str>) -> (String, String) {
    cli_exiting(bed, args, stdin, 0)
}

/// [`cli`] expecting exit code `code` (`status` exits 2 when something needs attention).
fn cli_exiting(bed: &TestBed, args: &[&str], stdin: Option<&str>, code: i32) -> (String, String) {
    let out = calsync_testkit::testbed::run_cli(args, &bed.env(), stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "calsync {args:?}: {stderr}");
    (stdout, stderr)
}

/// A browser GET of `path?query` (a raw query string) through the function, in Spanish.
async fn get(function: &FunctionProcess, path: &str, query: &str) -> FunctionUrlResponse {
    get_with_cookies(function, path, query, &[]).await
}

/// [`get`] from a browser that sends `cookies` (`name=value` pairs).
async fn get_with_cookies(
    function: &FunctionProcess,
    path: &str,
    query: &str,
    cookies: &[String],
) -> FunctionUrlResponse {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    function
        .invoke(function_url_event(
            "GET",
            path,
            &pairs,
            &[("accept-language", "es"), ("cookie", &cookies.join("; "))],
            None,
        ))
        .await
        .unwrap()
        .into_function_url_response()
        .unwrap()
}

#[tokio::test]
async fn operator_link_user_sign_in_and_status_through_the_real_binaries() {
    let bed = TestBed::start().await.unwrap();
    let tenant = calsync_testkit::testbed::unique("e2e");
    let secrets = format!("client_secret={CLIENT_SECRET}\ncrm_access_key=crm-key-e2e\n");
    let (added, _) = cli(
        &bed,
        &[
            "tenant",
            "add",
            &tenant,
            "--name",
            "Acme E2E",
            "--azure-tenant-id",
            AZURE_TENANT,
            "--client-id",
            CLIENT_ID,
            "--crm-url",
            "https://crm.acme.test",
            "--crm-user",
            "admin",
            "--crm-time-zone",
            "Europe/Madrid",
            "--secrets-file",
            "-",
            // crm.acme.test answers nowhere; the CRM is not part of this flow.
            "--no-check",
        ],
        Some(&secrets),
    );
    assert!(added.contains(&format!("tenant {tenant} added")));
    let (shown, _) = cli(&bed, &["tenant", "show", &tenant, "--json"], None);
    assert!(
        !shown.contains(CLIENT_SECRET)
            && !shown.contains("crm-key-e2e")
            && !shown.contains("link_key")
    );
    let (listed, _) = cli(&bed, &["tenant", "list"], None);
    assert!(listed.contains(&tenant));

    let (link, _) = cli(
        &bed,
        &[
            "link", "--tenant", &tenant, "--user", "maria", "--ttl", "10m",
        ],
        None,
    );
    let link = url::Url::parse(link.trim()).unwrap();
    assert_eq!(link.path(), "/connect");

    let mut env = bed.env();
    env.push(("RUST_LOG".into(), "debug".into()));
    let function = FunctionProcess::spawn(&binary_path("calsync-auth"), "calsync-auth", &env)
        .await
        .unwrap();

    let connect = get(&function, "/connect", link.query().unwrap()).await;
    assert_eq!(connect.status, 302, "{}", connect.body_text().unwrap());
    let authorize = connect.header("location").unwrap().to_owned();
    let authorize_query = authorize.split_once('?').unwrap().1;
    assert_eq!(
        query_value(authorize_query, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_value(authorize_query, "scope").as_deref(),
        Some("openid profile offline_access User.Read Calendars.ReadWrite")
    );

    let callback_query = bed.sign_in(&authorize).await.unwrap();
    // The browser that started the sign-in brings its cookie back.
    let cookies: Vec<String> = connect
        .cookies
        .iter()
        .filter_map(|c| c.split(';').next().map(str::to_owned))
        .collect();
    assert!(!cookies.is_empty(), "connect set the sign-in cookie");
    let done = get_with_cookies(&function, "/callback", &callback_query, &cookies).await;
    assert_eq!(done.status, 200, "{}", done.body_text().unwrap());
    assert!(done.body_text().unwrap().contains("Calendario conectado"));

    // Push is not set up on this bed (notifications_unavailable): status says to look.
    let (status, _) = cli_exiting(&bed, &["status", "--tenant", &tenant, "--json"], None, 2);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["users"][0]["user"], "maria");
    assert_eq!(status["users"][0]["status"], "connected");
    assert_eq!(status["users"][0]["ms_user_id"], USER_OID);

    // The refresh token Microsoft issued is stored sealed, and nowhere in the clear.
    let refresh_token = bed
        .sandbox
        .identity()
        .latest_refresh_token(USER_OID)
        .unwrap();
    let rows = bed.snapshot().await.unwrap();
    assert!(rows.iter().any(|r| r.contains("refresh_token_sealed")));
    for row in &rows {
        assert!(
            !row.contains(&refresh_token),
            "plain refresh token in DynamoDB"
        );
        assert!(!row.contains(CLIENT_SECRET), "client secret in DynamoDB");
    }
    let (human_status, stderr) = cli_exiting(&bed, &["status", "--tenant", &tenant], None, 2);
    let logs = function.logs();
    assert!(
        logs.contains("user connected"),
        "the function logged its work"
    );
    for text in [&logs, &human_status, &stderr, &status.to_string()] {
        assert!(
            !text.contains(&refresh_token),
            "plain refresh token in logs or output"
        );
        assert!(
            !text.contains(CLIENT_SECRET),
            "client secret in logs or output"
        );
    }

    let jobs = bed.take_jobs().await.unwrap();
    assert_eq!(
        jobs,
        vec![(
            format!("{tenant}#maria"),
            serde_json::json!({"tenant": tenant, "user": "maria", "reason": "connected", "full": true})
        )]
    );

    let (disconnected, _) = cli(
        &bed,
        &["user", "disconnect", "--tenant", &tenant, "--user", "maria"],
        None,
    );
    assert!(disconnected.contains("disconnected"));
    let (status, _) = cli(
        &bed,
        &["status", "--tenant", &tenant, "--user", "maria", "--json"],
        None,
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["users"][0]["status"], "disconnected");

    function.stop().await.unwrap();
    let (removed, _) = cli(&bed, &["tenant", "remove", &tenant, "--yes"], None);
    assert!(removed.contains("removed"));
    assert!(!bed
        .snapshot()
        .await
        .unwrap()
        .iter()
        .any(|r| r.contains(&format!("TENANT#{tenant}"))));
}

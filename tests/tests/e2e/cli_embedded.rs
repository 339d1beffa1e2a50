//! The operator CLI against the embedded store (one SQLite file), as on a single machine.

use std::process::Output;

fn calsync(data_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut all = vec!["--data-dir", data_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let env = [(
        "CALSYNC_PUBLIC_URL".to_owned(),
        "https://auth.calsync.test".to_owned(),
    )];
    calsync_testkit::testbed::run_cli(&all, &env, stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn tenants_links_and_status_on_the_embedded_store() {
    let dir = std::env::temp_dir().join(calsync_testkit::testbed::unique("calsync-cli"));
    let add = |tenant: &str, secrets: &str| {
        calsync(
            &dir,
            &[
                "tenant",
                "add",
                tenant,
                "--azure-tenant-id",
                "6e3c2f1a-8d4b-4c3e-9f2a-1b5d7c9e0a11",
                "--client-id",
                "2b8f4e6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
                "--crm-url",
                "https://crm.acme.test/",
                "--crm-user",
                "admin",
                "--client-secret-expires",
                "2000-01-31",
                "--secrets-file",
                "-",
                // Nothing answers at crm.acme.test: the checks are tenant_check's tests.
                "--no-check",
            ],
            Some(secrets),
        )
    };
    let ok = add(
        "acme",
        "{\"client_secret\": \"s3cr3t-value\", \"crm_access_key\": \"k3y-value\"}",
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));

    // Bad input: a clear error, nothing half-written.
    let missing = add("beta", "client_secret=only-this\n");
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("crm_access_key is missing"));
    let again = add("acme", "client_secret=a\ncrm_access_key=b\n");
    assert!(text(&again.stderr).contains("already exists"));
    let bad_id = add("Not Valid", "client_secret=a\ncrm_access_key=b\n");
    assert!(text(&bad_id.stderr).contains("invalid tenant id"));

    let list = calsync(&dir, &["tenant", "list"], None);
    assert!(text(&list.stdout).contains("acme"));
    assert!(!text(&list.stdout).contains("beta"));

    let link = calsync(
        &dir,
        &[
            "link", "--tenant", "acme", "--user", "maria", "--ttl", "10m",
        ],
        None,
    );
    assert!(link.status.success(), "{}", text(&link.stderr));
    let url = url::Url::parse(text(&link.stdout).trim()).unwrap();
    assert_eq!(url.path(), "/connect");
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let keys: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["tenant", "user", "exp", "sig"]);
    // A connect link lives minutes; a lasting link for a user is a status link.
    let long = calsync(
        &dir,
        &["link", "--tenant", "acme", "--user", "maria", "--ttl", "1h"],
        None,
    );
    assert!(!long.status.success());
    assert!(
        text(&long.stderr).contains("--status"),
        "{}",
        text(&long.stderr)
    );
    let bad_return = calsync(
        &dir,
        &[
            "link",
            "--tenant",
            "acme",
            "--user",
            "maria",
            "--return-to",
            "https://evil.example/",
        ],
        None,
    );
    assert!(!bad_return.status.success());

    // The expired client secret shows as a warning.
    let status = calsync(&dir, &["status", "--tenant", "acme", "--json"], None);
    assert_eq!(
        status.status.code(),
        Some(2),
        "an expired secret needs attention: {}",
        text(&status.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["users"], serde_json::json!([]));
    assert!(json["warnings"][0]
        .as_str()
        .unwrap()
        .contains("expired on 2000-01-31"));

    // Rotating the secret clears the warning.
    let rotated = calsync(
        &dir,
        &[
            "tenant",
            "rotate-secret",
            "acme",
            "--client-secret-expires",
            "2099-12-31",
            "--secrets-file",
            "-",
        ],
        Some("client_secret=n3w-s3cr3t\n"),
    );
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let status_after = calsync(&dir, &["status", "--tenant", "acme", "--json"], None);
    assert_eq!(status_after.status.code(), Some(0), "all good now");
    let json: serde_json::Value = serde_json::from_slice(&status_after.stdout).unwrap();
    assert_eq!(json["warnings"], serde_json::json!([]));

    // Settings change from the CLI, validated.
    let updated = calsync(
        &dir,
        &[
            "tenant",
            "update",
            "acme",
            "--sync-interval",
            "30m",
            "--window-past-days",
            "60",
            "--crm-time-zone",
            "Europe/Madrid",
            "--conflict-policy",
            "crm-wins",
            "--crm-sessions",
            "2",
            "--json",
        ],
        None,
    );
    assert!(updated.status.success(), "{}", text(&updated.stderr));
    let settings: serde_json::Value = serde_json::from_slice(&updated.stdout).unwrap();
    assert_eq!(settings["sync_interval_minutes"], 30);
    assert_eq!(settings["window_past_days"], 60);
    assert_eq!(settings["crm_time_zone"], "Europe/Madrid");
    assert_eq!(settings["conflict_policy"], "crm-wins");
    assert_eq!(settings["crm_sessions"], 2);
    for bad in [
        &["--crm-sessions", "0"][..],
        &["--crm-sessions", "33"][..],
        &["--sync-interval", "1m"][..],
        &["--crm-time-zone", "Mars/Olympus"][..],
        &["--window-future-days", "0"][..],
    ] {
        let mut args = vec!["tenant", "update", "acme"];
        args.extend_from_slice(bad);
        let refused = calsync(&dir, &args, None);
        assert!(!refused.status.success(), "{bad:?} was accepted");
    }
    // A CRM on plain http is refused unless it is on this machine.
    let plain = calsync(
        &dir,
        &[
            "tenant",
            "add",
            "plain",
            "--azure-tenant-id",
            "6e3c2f1a-8d4b-4c3e-9f2a-1b5d7c9e0a11",
            "--client-id",
            "2b8f4e6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
            "--crm-url",
            "http://crm.acme.test/",
            "--crm-user",
            "admin",
            "--secrets-file",
            "-",
        ],
        Some("client_secret=a\ncrm_access_key=b\n"),
    );
    assert!(!plain.status.success());
    assert!(
        text(&plain.stderr).contains("https"),
        "{}",
        text(&plain.stderr)
    );
    let no_secret = calsync(
        &dir,
        &["tenant", "rotate-secret", "acme", "--secrets-file", "-"],
        Some("crm_access_key=x\n"),
    );
    assert!(text(&no_secret.stderr).contains("client_secret is missing"));

    for output in [&ok, &list, &link, &status, &rotated, &status_after] {
        for secret in ["s3cr3t-value", "k3y-value", "n3w-s3cr3t"] {
            assert!(
                !text(&output.stdout).contains(secret) && !text(&output.stderr).contains(secret)
            );
        }
    }
    let removed = calsync(&dir, &["tenant", "remove", "acme", "--yes"], None);
    assert!(removed.status.success());
    let gone = calsync(&dir, &["tenant", "show", "acme"], None);
    assert!(text(&gone.stderr).contains("does not exist"));
    std::fs::remove_dir_all(&dir).unwrap();
}

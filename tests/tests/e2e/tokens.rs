//! Token handling against the sandbox identity and moto: refreshes racing in two containers,
//! when a rotated refresh token is stored, access tokens held per container, revocation, and
//! app-only tokens.

use calsync::adapters::identity::IdentityError;
use calsync::adapters::store::now_epoch;
use calsync::services::tokens::{app_registration, TokenError, STORE_ROTATED_AFTER_SECS};
use calsync::services::users::{UserRecord, UserStatus};
use calsync::App;
use calsync_testkit::testbed::{LinkRoute, TestBed, AZURE_TENANT, CLIENT_ID, USER_OID};
use std::time::Duration;

/// A second container of the same deployment: its own token service and caches, same storage.
fn second_container(bed: &TestBed) -> App {
    App::with_parts(
        bed.app.config.clone(),
        bed.app.store.clone(),
        bed.app.secret_store.clone(),
        bed.app.queue.clone(),
    )
    .unwrap()
}

async fn user_version(bed: &TestBed) -> u64 {
    bed.stored_user().await.unwrap().version
}

async fn stored_refresh_token(bed: &TestBed) -> String {
    let user = bed.stored_user().await.unwrap().record;
    let context = bed.app.tenants.context(&bed.tenant).await.unwrap();
    context
        .sealing_key
        .open(
            user.refresh_token_sealed.as_deref().unwrap(),
            &UserRecord::seal_context(&bed.tenant, &bed.user),
        )
        .unwrap()
        .expose()
        .to_owned()
}

#[tokio::test]
async fn racing_refreshes_both_work_and_write_nothing_while_the_stored_token_is_fresh() {
    let bed = TestBed::start().await.unwrap();
    let identity = bed.sandbox.identity();
    // Tokens that are already inside the expiry margin: every call must refresh.
    identity.set_access_token_lifetime(Duration::from_secs(60));
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let other = second_container(&bed);
    let tenant_a = bed.app.tenants.context(&bed.tenant).await.unwrap();
    let tenant_b = other.tenants.context(&bed.tenant).await.unwrap();
    let before = identity.token_request_counts().refresh_token;
    let stored = stored_refresh_token(&bed).await;
    let version = user_version(&bed).await;

    let (a, b) = tokio::join!(
        bed.app.tokens.user_access_token(&tenant_a, &bed.user),
        other.tokens.user_access_token(&tenant_b, &bed.user),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    for token in [&a, &b] {
        let info = identity
            .validate_access_token(token.expose())
            .expect("a valid access token");
        assert_eq!(info.oid.as_deref(), Some(USER_OID));
    }
    assert_eq!(identity.token_request_counts().refresh_token - before, 2);
    // The sign-in stored its refresh token moments ago: Microsoft's rotation leaves it valid,
    // so neither refresh wrote the user's item.
    assert_eq!(stored_refresh_token(&bed).await, stored);
    assert_eq!(user_version(&bed).await, version);
    let third = second_container(&bed);
    let tenant_c = third.tenants.context(&bed.tenant).await.unwrap();
    third
        .tokens
        .user_access_token(&tenant_c, &bed.user)
        .await
        .expect("the stored refresh token still redeems");
}

#[tokio::test]
async fn a_refresh_stores_the_rotated_token_once_the_stored_one_is_half_a_day_old() {
    let bed = TestBed::start().await.unwrap();
    let identity = bed.sandbox.identity();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    calsync_testkit::testbed::edit_user(&bed.app, &bed.tenant, &bed.user, |r| {
        r.refresh_token_stored_at = Some(now_epoch() - STORE_ROTATED_AFTER_SECS - 1);
    })
    .await
    .unwrap();
    let other = second_container(&bed);
    let tenant = other.tenants.context(&bed.tenant).await.unwrap();
    other
        .tokens
        .user_access_token(&tenant, &bed.user)
        .await
        .unwrap();
    assert_eq!(
        stored_refresh_token(&bed).await,
        identity.latest_refresh_token(USER_OID).unwrap(),
        "the newest refresh token is stored"
    );
    let record = bed.stored_user().await.unwrap().record;
    assert!(record
        .refresh_token_stored_at
        .is_some_and(|at| now_epoch() - at < 60));
}

#[tokio::test]
async fn an_access_token_is_reused_within_its_container_without_a_refresh() {
    let bed = TestBed::start().await.unwrap();
    let identity = bed.sandbox.identity();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let tenant = bed.app.tenants.context(&bed.tenant).await.unwrap();
    let other = second_container(&bed);
    let before = identity.token_request_counts().refresh_token;
    let first = other
        .tokens
        .user_access_token(&tenant, &bed.user)
        .await
        .unwrap();
    let again = other
        .tokens
        .user_access_token(&tenant, &bed.user)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert!(identity.validate_access_token(again.expose()).is_some());
    assert_eq!(
        identity.token_request_counts().refresh_token - before,
        1,
        "one refresh for the container, then its own token"
    );
}

#[tokio::test]
async fn a_revoked_user_becomes_reconnect_required_without_a_retry_storm() {
    let bed = TestBed::start().await.unwrap();
    let identity = bed.sandbox.identity();
    identity.set_access_token_lifetime(Duration::from_secs(60));
    assert_eq!(bed.connect().await.unwrap().status, 200);
    identity.revoke_user(USER_OID).unwrap();
    let tenant = bed.app.tenants.context(&bed.tenant).await.unwrap();
    let before = identity.token_request_counts().refresh_token;

    let first = bed.app.tokens.user_access_token(&tenant, &bed.user).await;
    match first {
        Err(TokenError::Identity(IdentityError::ReconnectRequired { error, aadsts })) => {
            assert_eq!(error, "invalid_grant");
            assert_eq!(aadsts, Some(50173));
        }
        other => panic!("expected reconnect_required, got {other:?}"),
    }
    let user = bed.stored_user().await.unwrap().record;
    assert_eq!(user.status, UserStatus::ReconnectRequired);
    assert!(user
        .problems
        .iter()
        .any(|p| p.code.as_str() == "reconnect_required" && p.detail.contains("50173")));

    // Later callers learn it from storage: Microsoft is not asked again.
    for _ in 0..5 {
        let again = bed.app.tokens.user_access_token(&tenant, &bed.user).await;
        assert!(matches!(again, Err(TokenError::ReconnectRequired)));
    }
    assert_eq!(identity.token_request_counts().refresh_token - before, 1);

    // Status shows it and offers to reconnect.
    let page = bed
        .request(
            "GET",
            "/status",
            &bed.link_query(LinkRoute::Status, Some("maria"), 600, None),
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Reconnection needed"), "{}", page.body);
    assert!(page.body.contains("/connect?"));
}

#[tokio::test]
async fn app_only_tokens_are_cached_until_shortly_before_expiry() {
    let bed = TestBed::start().await.unwrap();
    let identity = bed.sandbox.identity();
    identity
        .grant_admin_consent(AZURE_TENANT, CLIENT_ID)
        .unwrap();
    let context = bed.app.tenants.context(&bed.tenant).await.unwrap();
    let app = app_registration(&context);
    let first = bed.app.tokens.identity().app_token(app).await.unwrap();
    let second = bed.app.tokens.identity().app_token(app).await.unwrap();
    assert_eq!(first.expose(), second.expose());
    assert_eq!(identity.token_request_counts().client_credentials, 1);
    let info = identity.validate_access_token(first.expose()).unwrap();
    assert!(info.app_only);
    assert!(info.roles.iter().any(|r| r == "Calendars.ReadWrite"));

    // A token inside the expiry margin is not handed out: a new one is fetched.
    identity.set_access_token_lifetime(Duration::from_secs(60));
    let fresh_service = second_container(&bed);
    let a = fresh_service
        .tokens
        .identity()
        .app_token(app)
        .await
        .unwrap();
    let b = fresh_service
        .tokens
        .identity()
        .app_token(app)
        .await
        .unwrap();
    assert_ne!(a.expose(), b.expose());
    assert_eq!(identity.token_request_counts().client_credentials, 3);
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_not_retried() {
    let bed = TestBed::start().await.unwrap();
    let mut context = bed.app.tenants.context(&bed.tenant).await.unwrap();
    context.secret.client_secret = calsync_core::secret::Secret::new("wrong");
    match bed
        .app
        .tokens
        .identity()
        .app_token(app_registration(&context))
        .await
    {
        Err(IdentityError::Refused { error, aadsts }) => {
            assert_eq!(error, "invalid_client");
            assert_eq!(aadsts, Some(7_000_215));
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
}

//! Black-box tests of the identity stand-in over real HTTP, with redirects disabled.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use calsync_sandbox::identity::{DEMO_CLIENT_SECRET, DEMO_TENANT_ID};
use calsync_sandbox::{
    AppRegistration, DemoTenant, Sandbox, SandboxSeed, TokenErrorBody, TokenFault,
};
use rand::RngCore;
use reqwest::header::{AUTHORIZATION, LOCATION};
use reqwest::{redirect, Client, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

const CALSYNC_SCOPES: &str = "openid profile offline_access User.Read Calendars.ReadWrite";
const APP_ONLY_SCOPE: &str = "https://graph.microsoft.com/.default";

struct Harness {
    sandbox: Sandbox,
    http: Client,
    demo: DemoTenant,
}

async fn harness() -> Harness {
    let sandbox = Sandbox::start().await.unwrap();
    let demo = sandbox.identity().seed_demo();
    let http = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    Harness {
        sandbox,
        http,
        demo,
    }
}

/// A fresh RFC 7636 verifier and its S256 challenge.
fn pkce_pair() -> (String, String) {
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query_of(location: &str) -> HashMap<String, String> {
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned()
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn basic(client_id: &str, secret: &str) -> String {
    let encode =
        |part: &str| url::form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    /// Authorize request for the demo app; `overrides` replace or add parameters.
    async fn authorize(&self, overrides: &[(&str, &str)]) -> Response {
        let mut params: Vec<(&str, &str)> = vec![
            ("client_id", &self.demo.client_id),
            ("response_type", "code"),
            ("redirect_uri", &self.demo.redirect_uri),
            ("scope", CALSYNC_SCOPES),
            ("state", "state-123"),
        ];
        for (name, value) in overrides {
            params.retain(|(existing, _)| existing != name);
            params.push((name, value));
        }
        let url = Url::parse_with_params(
            &self.url(&format!("/{}/oauth2/v2.0/authorize", self.demo.tenant_id)),
            &params,
        )
        .unwrap();
        self.http.get(url).send().await.unwrap()
    }

    /// An authorization code from the auto-approved demo user, with the given S256 challenge.
    async fn code(&self, challenge: &str) -> String {
        let response = self
            .authorize(&[
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ])
            .await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let reply = query_of(&location(&response));
        reply.get("code").expect("a code in the redirect").clone()
    }

    async fn token_at(&self, tenant: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.token_at(&self.demo.tenant_id, form).await
    }

    async fn redeem(&self, code: &str, verifier: &str) -> Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &self.demo.client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("code", code),
            ("redirect_uri", &self.demo.redirect_uri),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// Signs the demo user in and returns the token response.
    async fn sign_in(&self) -> Value {
        let (verifier, challenge) = pkce_pair();
        let code = self.code(&challenge).await;
        let response = self.redeem(&code, &verifier).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn refresh(&self, refresh_token: &str) -> Response {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &self.demo.client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    async fn app_token(&self, tenant: &str, client_id: &str, secret: &str) -> Response {
        self.token_at(
            tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", APP_ONLY_SCOPE),
            ],
        )
        .await
    }

    async fn me(&self, access_token: &str) -> Response {
        self.http
            .get(self.url("/v1.0/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }
}

async fn token_error(response: Response, status: StatusCode) -> TokenErrorBody {
    assert_eq!(response.status(), status);
    response.json().await.unwrap()
}

#[tokio::test]
async fn code_flow_with_pkce_issues_tokens_that_graph_accepts() {
    let h = harness().await;
    let (verifier, challenge) = pkce_pair();
    let authorize = h
        .authorize(&[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("nonce", "nonce-42"),
        ])
        .await;
    assert_eq!(authorize.status(), StatusCode::FOUND);
    let reply = query_of(&location(&authorize));
    assert_eq!(reply["state"], "state-123");
    let response = h.redeem(&reply["code"], &verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["cache-control"].to_str().unwrap(),
        "no-store, no-cache"
    );
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3599);
    assert_eq!(tokens["ext_expires_in"], 3599);
    assert_eq!(
        tokens["scope"],
        "User.Read Calendars.ReadWrite openid profile"
    );
    assert!(tokens["refresh_token"].is_string());

    let id_token = tokens["id_token"].as_str().unwrap();
    let header = jwt_part(id_token, 0);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "sandbox");
    let claims = jwt_part(id_token, 1);
    assert_eq!(claims["aud"], h.demo.client_id.as_str());
    assert_eq!(claims["tid"], DEMO_TENANT_ID);
    assert_eq!(claims["oid"], h.demo.user_oid.as_str());
    assert_eq!(claims["preferred_username"], h.demo.username.as_str());
    assert_eq!(claims["name"], h.demo.display_name.as_str());
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["nonce"], "nonce-42");
    assert_eq!(
        claims["iss"],
        format!("{}/{}/v2.0", h.sandbox.base_url(), DEMO_TENANT_ID)
    );
    assert_ne!(claims["sub"], claims["oid"]);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );

    let access_token = tokens["access_token"].as_str().unwrap();
    let info = h
        .sandbox
        .identity()
        .validate_access_token(access_token)
        .unwrap();
    assert_eq!(info.oid.as_deref(), Some(h.demo.user_oid.as_str()));
    assert_eq!(info.tenant_id, DEMO_TENANT_ID);
    assert_eq!(info.client_id, h.demo.client_id);
    assert_eq!(info.scopes, ["User.Read", "Calendars.ReadWrite"]);
    assert!(!info.app_only);

    let me = h.me(access_token).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["id"], h.demo.user_oid.as_str());
    assert_eq!(me["userPrincipalName"], h.demo.username.as_str());
    assert_eq!(me["mail"], h.demo.username.as_str());
    assert_eq!(me["displayName"], h.demo.display_name.as_str());

    let recorded = h.sandbox.identity().authorize_requests();
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].uses_pkce());
    assert_eq!(recorded[0].param("nonce"), Some("nonce-42"));
    assert_eq!(recorded[0].tenant, DEMO_TENANT_ID);
}

#[tokio::test]
async fn state_is_echoed_verbatim_and_redirect_query_kept() {
    let h = harness().await;
    let redirect_uri = "http://localhost/callback?source=crm&lang=es";
    h.sandbox
        .identity()
        .add_redirect_uri(&h.demo.client_id, redirect_uri)
        .unwrap();
    let state = "a b&c=d/é+%20?#";
    let response = h
        .authorize(&[("redirect_uri", redirect_uri), ("state", state)])
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = location(&response);
    assert!(location.starts_with("http://localhost/callback?source=crm&lang=es&code="));
    let reply = query_of(&location);
    assert_eq!(reply["state"], state);
    assert_eq!(reply["source"], "crm");
    assert!(!h.sandbox.identity().authorize_requests()[0].uses_pkce());
}

#[tokio::test]
async fn code_without_pkce_is_redeemable_by_a_confidential_client() {
    let h = harness().await;
    let response = h.authorize(&[]).await;
    let code = query_of(&location(&response))["code"].clone();
    let response = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &h.demo.client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("code", &code),
            ("redirect_uri", &h.demo.redirect_uri),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_or_missing_code_verifier_is_invalid_grant() {
    let h = harness().await;
    let (_, challenge) = pkce_pair();
    let code = h.code(&challenge).await;
    let (other_verifier, _) = pkce_pair();
    let error = token_error(
        h.redeem(&code, &other_verifier).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [50148]);
    assert!(error.error_description.starts_with("AADSTS50148: "));

    let error = token_error(h.redeem(&code, "").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error_codes, [50148]);
    let error = token_error(h.redeem(&code, "short").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [501481]);
}

#[tokio::test]
async fn a_code_is_single_use() {
    let h = harness().await;
    let (verifier, challenge) = pkce_pair();
    let code = h.code(&challenge).await;
    assert_eq!(h.redeem(&code, &verifier).await.status(), StatusCode::OK);
    let error = token_error(h.redeem(&code, &verifier).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [54005]);
}

#[tokio::test]
async fn expired_and_unknown_codes_are_refused() {
    let h = harness().await;
    h.sandbox
        .identity()
        .set_authorization_code_lifetime(Duration::ZERO);
    let (verifier, challenge) = pkce_pair();
    let code = h.code(&challenge).await;
    let error = token_error(h.redeem(&code, &verifier).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [70008]);

    let error = token_error(
        h.redeem("not-a-code", &verifier).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error.error, "invalid_grant");
}

#[tokio::test]
async fn code_is_bound_to_its_redirect_uri() {
    let h = harness().await;
    let other = "http://localhost/other";
    h.sandbox
        .identity()
        .add_redirect_uri(&h.demo.client_id, other)
        .unwrap();
    let (verifier, challenge) = pkce_pair();
    let code = h.code(&challenge).await;
    let response = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &h.demo.client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("code", &code),
            ("redirect_uri", other),
            ("code_verifier", &verifier),
        ])
        .await;
    let error = token_error(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [500112]);
}

#[tokio::test]
async fn wrong_or_missing_secret_is_invalid_client_401() {
    let h = harness().await;
    let (verifier, challenge) = pkce_pair();
    let code = h.code(&challenge).await;
    let form = |secret: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", h.demo.client_id.clone()),
            ("code", code.clone()),
            ("redirect_uri", h.demo.redirect_uri.clone()),
            ("code_verifier", verifier.clone()),
        ];
        if let Some(secret) = secret {
            form.push(("client_secret", secret.to_owned()));
        }
        form
    };
    let send = |form: Vec<(&'static str, String)>| {
        h.http
            .post(h.url(&format!("/{}/oauth2/v2.0/token", h.demo.tenant_id)))
            .form(&form)
            .send()
    };
    let error = token_error(
        send(form(Some("wrong"))).await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(error.error, "invalid_client");
    assert_eq!(error.error_codes, [7000215]);
    let error = token_error(send(form(None)).await.unwrap(), StatusCode::UNAUTHORIZED).await;
    assert_eq!(error.error, "invalid_client");
    assert_eq!(error.error_codes, [7000218]);
    // A failed client authentication does not spend the code.
    assert_eq!(
        send(form(Some(DEMO_CLIENT_SECRET))).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn basic_and_body_client_authentication_both_work_but_not_together() {
    let h = harness().await;
    let identity = h.sandbox.identity();
    let secret = "s3cr+t/=&:é x";
    identity
        .add_app(
            &h.demo.tenant_id,
            "c0ffee00-0000-4000-8000-000000000001",
            secret,
            &["http://localhost/callback"],
        )
        .unwrap();
    let client_id = "c0ffee00-0000-4000-8000-000000000001";
    let token_url = h.url(&format!("/{}/oauth2/v2.0/token", h.demo.tenant_id));

    let body_auth = h.app_token(&h.demo.tenant_id, client_id, secret).await;
    assert_eq!(body_auth.status(), StatusCode::OK);

    let basic_auth = h
        .http
        .post(&token_url)
        .header(AUTHORIZATION, basic(client_id, secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", APP_ONLY_SCOPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(basic_auth.status(), StatusCode::OK);

    let wrong_basic = h
        .http
        .post(&token_url)
        .header(AUTHORIZATION, basic(client_id, "nope"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", APP_ONLY_SCOPE),
        ])
        .send()
        .await
        .unwrap();
    let error = token_error(wrong_basic, StatusCode::UNAUTHORIZED).await;
    assert_eq!(error.error_codes, [7000215]);

    let both = h
        .http
        .post(&token_url)
        .header(AUTHORIZATION, basic(client_id, secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", APP_ONLY_SCOPE),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    let error = token_error(both, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_request");
}

#[tokio::test]
async fn refresh_rotates_and_old_tokens_stay_valid() {
    let h = harness().await;
    let identity = h.sandbox.identity();
    let first: Value = h.sign_in().await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();

    let second: Value = h.refresh(&rt1).await.json().await.unwrap();
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert!(second["access_token"].is_string());
    assert!(second["id_token"].is_string());
    assert_ne!(second["access_token"], first["access_token"]);

    // Microsoft does not revoke the previous refresh token.
    let third = h.refresh(&rt1).await;
    assert_eq!(third.status(), StatusCode::OK);
    let third: Value = third.json().await.unwrap();
    let rt3 = third["refresh_token"].as_str().unwrap().to_owned();
    assert!(identity.refresh_token_valid(&rt1));
    assert!(identity.refresh_token_valid(&rt2));
    assert_eq!(
        identity.latest_refresh_token(&h.demo.user_oid).as_deref(),
        Some(rt3.as_str())
    );

    // A narrower scope is fine; one that was never granted needs consent.
    let narrower = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &h.demo.client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", &rt3),
            ("scope", "https://graph.microsoft.com/User.Read"),
        ])
        .await;
    assert_eq!(narrower.status(), StatusCode::OK);
    let narrower: Value = narrower.json().await.unwrap();
    assert_eq!(narrower["scope"], "User.Read");
    assert!(narrower.get("id_token").is_none());
    let broader = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &h.demo.client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", &rt3),
            ("scope", "Mail.Send"),
        ])
        .await;
    let error = token_error(broader, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [65001]);

    let counts = identity.token_request_counts();
    assert_eq!(counts.authorization_code, 1);
    assert_eq!(counts.refresh_token, 4);
    assert_eq!(counts.total(), 5);
}

#[tokio::test]
async fn unknown_and_inactive_refresh_tokens_are_invalid_grant() {
    let h = harness().await;
    let error = token_error(h.refresh("0.garbage").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [9002313]);

    let tokens = h.sign_in().await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert!(h.sandbox.identity().expire_refresh_token(rt));
    let error = token_error(h.refresh(rt).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [700082]);
}

#[tokio::test]
async fn revoking_a_user_kills_its_refresh_tokens_until_next_sign_in() {
    let h = harness().await;
    let identity = h.sandbox.identity();
    let before = h.sign_in().await;
    let rt = before["refresh_token"].as_str().unwrap().to_owned();
    identity.revoke_user(&h.demo.user_oid).unwrap();
    assert!(!identity.refresh_token_valid(&rt));

    let error = token_error(h.refresh(&rt).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_grant");
    assert_eq!(error.error_codes, [50173]);
    assert!(error.error_description.starts_with("AADSTS50173: "));

    let after = h.sign_in().await;
    let new_rt = after["refresh_token"].as_str().unwrap();
    assert_eq!(h.refresh(new_rt).await.status(), StatusCode::OK);
    assert!(!identity.refresh_token_valid(&rt));
}

#[tokio::test]
async fn client_credentials_need_admin_consent_for_roles() {
    let h = harness().await;
    let identity = h.sandbox.identity();

    // Home tenant, no admin consent yet: Microsoft issues a token without roles.
    let response = h
        .app_token(&h.demo.tenant_id, &h.demo.client_id, DEMO_CLIENT_SECRET)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    assert!(tokens.get("refresh_token").is_none());
    assert!(tokens.get("id_token").is_none());
    assert!(tokens.get("scope").is_none());
    let info = identity
        .validate_access_token(tokens["access_token"].as_str().unwrap())
        .unwrap();
    assert!(info.app_only);
    assert_eq!(info.oid, None);
    assert!(info.roles.is_empty());
    let me = h.me(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), StatusCode::BAD_REQUEST);

    // The administrator consents through /adminconsent.
    let consent_url = Url::parse_with_params(
        &h.url(&format!("/{}/adminconsent", h.demo.tenant_id)),
        &[
            ("client_id", h.demo.client_id.as_str()),
            ("redirect_uri", h.demo.redirect_uri.as_str()),
            ("state", "consent-1"),
        ],
    )
    .unwrap();
    let consent = h.http.get(consent_url).send().await.unwrap();
    assert_eq!(consent.status(), StatusCode::FOUND);
    let reply = query_of(&location(&consent));
    assert_eq!(reply["tenant"], DEMO_TENANT_ID);
    assert_eq!(reply["state"], "consent-1");
    assert_eq!(reply["admin_consent"], "True");
    assert!(identity.has_admin_consent(&h.demo.tenant_id, &h.demo.client_id));

    let tokens: Value = h
        .app_token(&h.demo.tenant_id, &h.demo.client_id, DEMO_CLIENT_SECRET)
        .await
        .json()
        .await
        .unwrap();
    let info = identity
        .validate_access_token(tokens["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(info.roles, ["Calendars.ReadWrite", "User.Read.All"]);
    assert_eq!(identity.token_request_counts().client_credentials, 2);

    let wrong_scope = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &h.demo.client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", "Calendars.ReadWrite"),
        ])
        .await;
    let error = token_error(wrong_scope, StatusCode::BAD_REQUEST).await;
    assert_eq!(error.error, "invalid_scope");
    assert_eq!(error.error_codes, [1002012]);
}

#[tokio::test]
async fn a_multi_tenant_app_needs_consent_in_a_foreign_tenant() {
    let h = harness().await;
    let identity = h.sandbox.identity();
    let customer = "7c1e0d2b-3a4f-4b5c-8d6e-9f0a1b2c3d4e";
    let client_id = "51a7e0c3-0000-4000-8000-0000000000aa";
    identity.add_tenant(customer);
    identity
        .register_app(
            &h.demo.tenant_id,
            AppRegistration {
                multi_tenant: true,
                ..AppRegistration::new(client_id, "publisher-secret", &["http://localhost/cb"])
            },
        )
        .unwrap();
    let error = token_error(
        h.app_token(customer, client_id, "publisher-secret").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error.error, "unauthorized_client");
    assert_eq!(error.error_codes, [700016]);

    identity.deny_next_admin_consent(customer).unwrap();
    let consent_url = Url::parse_with_params(
        &h.url("/common/v2.0/adminconsent"),
        &[
            ("client_id", client_id),
            ("redirect_uri", "http://localhost/cb"),
            ("scope", APP_ONLY_SCOPE),
            ("state", "s"),
        ],
    )
    .unwrap();
    identity
        .add_user(
            customer,
            "0a0a0a0a-0000-4000-8000-000000000001",
            "admin@customer.example",
            "Admin",
        )
        .unwrap();
    identity
        .set_auto_approve(customer, Some("admin@customer.example"))
        .unwrap();
    let hinted = format!("{consent_url}&login_hint=admin%40customer.example");
    let denied = h.http.get(&hinted).send().await.unwrap();
    let reply = query_of(&location(&denied));
    assert_eq!(reply["error"], "permission_denied");
    assert_eq!(reply["state"], "s");

    let granted = h.http.get(&hinted).send().await.unwrap();
    let reply = query_of(&location(&granted));
    assert_eq!(reply["tenant"], customer);
    assert_eq!(
        h.app_token(customer, client_id, "publisher-secret")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(identity.admin_consent_requests().len(), 2);
}

/// A multi-tenant app registered in the demo tenant, a customer tenant whose administrator
/// is approved without a page.
async fn multi_tenant_app(h: &Harness, customer: &str, client_id: &str, secret: &str) {
    let identity = h.sandbox.identity();
    identity.add_tenant(customer);
    let mut registration = AppRegistration::new(client_id, secret, &["http://localhost/cb"]);
    registration.multi_tenant = true;
    registration.application_permissions = vec!["Calendars.ReadWrite".to_owned()];
    identity
        .register_app(&h.demo.tenant_id, registration)
        .unwrap();
    identity
        .add_user(
            customer,
            "0b0b0b0b-0000-4000-8000-000000000001",
            "admin@c2.example",
            "Admin",
        )
        .unwrap();
    identity
        .set_auto_approve(customer, Some("admin@c2.example"))
        .unwrap();
}

#[tokio::test]
async fn named_scopes_grant_delegated_permissions_only_and_removing_the_app_revokes_it() {
    let h = harness().await;
    let (customer, client_id) = (
        "8d2f1e3c-4b5a-4c6d-9e7f-0a1b2c3d4e5f",
        "62b8f1d4-0000-4000-8000-0000000000bb",
    );
    multi_tenant_app(&h, customer, client_id, "s3cret").await;
    let consent = |scope: Option<&str>| {
        let mut params = vec![
            ("client_id", client_id),
            ("redirect_uri", "http://localhost/cb"),
            ("state", "s"),
            ("login_hint", "admin@c2.example"),
        ];
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
        Url::parse_with_params(&h.url("/organizations/v2.0/adminconsent"), &params).unwrap()
    };
    // The v2.0 endpoint needs a scope.
    let missing = h.http.get(consent(None)).send().await.unwrap();
    assert_eq!(query_of(&location(&missing))["error"], "invalid_request");

    let named = "openid https://graph.microsoft.com/Calendars.ReadWrite";
    let granted = h.http.get(consent(Some(named))).send().await.unwrap();
    let reply = query_of(&location(&granted));
    assert_eq!(reply["admin_consent"], "True");
    assert_eq!(reply["tenant"], customer);
    assert_eq!(reply["scope"], named);
    let grant = h
        .sandbox
        .identity()
        .tenant_grant(customer, client_id)
        .unwrap();
    assert_eq!(grant.delegated, ["Calendars.ReadWrite"]);
    assert!(
        grant.roles.is_empty(),
        "named scopes grant no application permission"
    );
    let token: Value = h
        .app_token(customer, client_id, "s3cret")
        .await
        .json()
        .await
        .unwrap();
    let claims = jwt_part(token["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["tid"], customer);
    assert!(claims.get("roles").is_none(), "{claims}");

    // `.default` adds what the app configures, its application permission among it.
    h.http
        .get(consent(Some(APP_ONLY_SCOPE)))
        .send()
        .await
        .unwrap();
    let token: Value = h
        .app_token(customer, client_id, "s3cret")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwt_part(token["access_token"].as_str().unwrap(), 1)["roles"][0],
        "Calendars.ReadWrite"
    );

    // The administrator deletes the app: app-only tokens are refused there again.
    assert!(h
        .sandbox
        .identity()
        .remove_app_from_tenant(customer, client_id)
        .unwrap());
    let error = token_error(
        h.app_token(customer, client_id, "s3cret").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        (error.error.as_str(), error.error_codes.as_slice()),
        ("unauthorized_client", &[700016][..])
    );
    assert!(h
        .sandbox
        .identity()
        .tenant_grant(customer, client_id)
        .is_none());
}

/// A client assertion made by hand with ring (RFC 7523): `alg`, the certificate's thumbprint
/// under `thumbprint_name`, and the claims.
fn assertion(
    key_pem: &str,
    alg: &str,
    thumbprint_name: &str,
    thumbprint: &str,
    claims: &Value,
) -> String {
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
    use rustls_pki_types::pem::PemObject;
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let pair = RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()).unwrap();
    let header = serde_json::json!({"alg": alg, "typ": "JWT", thumbprint_name: thumbprint});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; pair.public().modulus_len()];
    let padding: &dyn ring::signature::RsaEncoding = if alg == "PS256" {
        &RSA_PSS_SHA256
    } else {
        &RSA_PKCS1_SHA256
    };
    pair.sign(
        padding,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[tokio::test]
async fn client_assertions_signed_with_a_registered_certificate_replace_the_secret() {
    use calsync_sandbox::identity::{self_signed_certificate, DemoKey, ASSERTION_TYPE};
    use rustls_pki_types::pem::PemObject;
    let h = harness().await;
    let (customer, client_id) = (
        "9e3a2f4d-5c6b-4d7e-8f90-1a2b3c4d5e6f",
        "73c9a2e5-0000-4000-8000-0000000000cc",
    );
    multi_tenant_app(&h, customer, client_id, "").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let certificate =
        self_signed_certificate(DemoKey::Publisher, "app", now - 60, now + 86_400).unwrap();
    h.sandbox
        .identity()
        .add_certificate(
            client_id,
            &certificate.certificate_pem,
            (now + 86_400) as u64,
        )
        .unwrap();
    h.sandbox
        .identity()
        .grant_admin_consent(customer, client_id)
        .unwrap();
    let der =
        rustls_pki_types::CertificateDer::from_pem_slice(certificate.certificate_pem.as_bytes())
            .unwrap();
    let sha256 = URL_SAFE_NO_PAD.encode(Sha256::digest(der.as_ref()));
    let sha1 = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der.as_ref(),
    ));
    let endpoint = h.url(&format!("/{customer}/oauth2/v2.0/token"));
    let claims = |aud: &str, nbf: i64| {
        serde_json::json!({
            "aud": aud, "iss": client_id, "sub": client_id, "jti": format!("j{nbf}{aud}"),
            "nbf": nbf, "iat": nbf, "exp": nbf + 300,
        })
    };
    let post = |assertion: String| {
        let http = h.http.clone();
        let endpoint = endpoint.clone();
        async move {
            http.post(&endpoint)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("scope", APP_ONLY_SCOPE),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", &assertion),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let key = &certificate.private_key_pem;
    // RS256 naming the certificate by its SHA-1 thumbprint, PS256 by its SHA-256 one.
    let ok = post(assertion(
        key,
        "RS256",
        "x5t",
        &sha1,
        &claims(&endpoint, now),
    ))
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let ok = post(assertion(
        key,
        "PS256",
        "x5t#S256",
        &sha256,
        &claims(&endpoint, now),
    ))
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    // The app has no secret: a secret is refused.
    let error = token_error(
        h.app_token(customer, client_id, "").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(error.error_codes, [7000218]);
    // Signed by a key whose certificate the app does not have.
    let stranger = self_signed_certificate(DemoKey::Stranger, "x", now - 60, now + 86_400).unwrap();
    let refused = post(assertion(
        &stranger.private_key_pem,
        "RS256",
        "x5t#S256",
        &sha256,
        &claims(&endpoint, now),
    ))
    .await;
    assert_eq!(
        token_error(refused, StatusCode::UNAUTHORIZED)
            .await
            .error_codes,
        [700027]
    );
    // For another endpoint, or out of its time range.
    let elsewhere = post(assertion(
        key,
        "RS256",
        "x5t#S256",
        &sha256,
        &claims(&h.url("/common/oauth2/v2.0/token"), now),
    ))
    .await;
    assert_eq!(
        token_error(elsewhere, StatusCode::UNAUTHORIZED)
            .await
            .error_codes,
        [700023]
    );
    let stale = post(assertion(
        key,
        "RS256",
        "x5t#S256",
        &sha256,
        &claims(&endpoint, now - 7200),
    ))
    .await;
    assert_eq!(
        token_error(stale, StatusCode::UNAUTHORIZED)
            .await
            .error_codes,
        [700024]
    );
}

#[tokio::test]
async fn graph_me_rejects_missing_unknown_and_expired_tokens() {
    let h = harness().await;
    let missing = h.http.get(h.url("/v1.0/me")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);

    let unknown = h.me("eyJ0eXAiOiJKV1QifQ.e30.c2ln").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert!(unknown.headers().contains_key("www-authenticate"));
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["message"].is_string());
    for field in ["date", "request-id", "client-request-id"] {
        assert!(body["error"]["innerError"][field].is_string(), "{field}");
    }

    h.sandbox
        .identity()
        .set_access_token_lifetime(Duration::ZERO);
    let tokens = h.sign_in().await;
    assert_eq!(tokens["expires_in"], 0);
    let access_token = tokens["access_token"].as_str().unwrap();
    assert!(h
        .sandbox
        .identity()
        .validate_access_token(access_token)
        .is_none());
    let expired = h.me(access_token).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let body: Value = expired.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn token_faults_answer_5xx_for_the_configured_number_of_calls() {
    let h = harness().await;
    let identity = h.sandbox.identity();
    identity
        .set_token_fault(TokenFault::Unavailable { status: 503 }, Some(1))
        .unwrap();
    let tokens = h.sign_in_allowing_fault().await;
    assert!(tokens.is_none());
    let rt = h.sign_in().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    identity
        .set_token_fault(TokenFault::Unavailable { status: 500 }, Some(2))
        .unwrap();
    for _ in 0..2 {
        let error = token_error(h.refresh(&rt).await, StatusCode::INTERNAL_SERVER_ERROR).await;
        assert_eq!(error.error, "temporarily_unavailable");
    }
    assert_eq!(h.refresh(&rt).await.status(), StatusCode::OK);

    identity
        .set_token_fault(TokenFault::Unavailable { status: 503 }, None)
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            h.refresh(&rt).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    identity.clear_token_fault();
    assert_eq!(h.refresh(&rt).await.status(), StatusCode::OK);
    assert!(identity
        .set_token_fault(TokenFault::Unavailable { status: 404 }, None)
        .is_err());
}

impl Harness {
    /// Runs the code flow; None when the token endpoint answered 503.
    async fn sign_in_allowing_fault(&self) -> Option<Value> {
        let (verifier, challenge) = pkce_pair();
        let code = self.code(&challenge).await;
        let response = self.redeem(&code, &verifier).await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            let error: TokenErrorBody = response.json().await.unwrap();
            assert_eq!(error.error, "temporarily_unavailable");
            return None;
        }
        assert_eq!(response.status(), StatusCode::OK);
        Some(response.json().await.unwrap())
    }
}

#[tokio::test]
async fn token_delay_fault_lets_clients_time_out() {
    let h = harness().await;
    let identity = h.sandbox.identity();
    let rt = h.sign_in().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    identity
        .set_token_fault(TokenFault::Delay(Duration::from_secs(3)), Some(1))
        .unwrap();
    let timed_out = h
        .http
        .post(h.url(&format!("/{}/oauth2/v2.0/token", h.demo.tenant_id)))
        .timeout(Duration::from_millis(200))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", h.demo.client_id.as_str()),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());
    // The fault was for one call only.
    assert_eq!(h.refresh(&rt).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn error_body_has_exactly_the_fields_of_microsofts_sample() {
    let fixture_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/graph/token-error-invalid-scope.json"
    );
    let fixture_text = std::fs::read_to_string(fixture_path).unwrap();
    let fixture: Value = serde_json::from_str(&fixture_text).unwrap();
    let fixture_body: TokenErrorBody = serde_json::from_str(&fixture_text).unwrap();

    let h = harness().await;
    let rt = h.sign_in().await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &h.demo.client_id),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", &rt),
            ("scope", "https://foo.microsoft.com/mail.read"),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let sandbox: Value = response.json().await.unwrap();
    let sandbox_body: TokenErrorBody = serde_json::from_value(sandbox.clone()).unwrap();

    let keys = |value: &Value| -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    };
    let mut expected = keys(&fixture);
    // Microsoft's error reference shows error_uri on current responses; the 2016 sample predates
    // it.
    expected.insert("error_uri".to_owned());
    assert_eq!(keys(&sandbox), expected);

    assert_eq!(sandbox_body.error, fixture_body.error);
    assert_eq!(sandbox_body.error_codes, fixture_body.error_codes);
    for body in [&fixture_body, &sandbox_body] {
        let code = body.error_codes[0];
        let expected_tail = format!(
            "\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            body.trace_id, body.correlation_id, body.timestamp
        );
        assert!(body
            .error_description
            .starts_with(&format!("AADSTS{code}: ")));
        assert!(body.error_description.ends_with(&expected_tail));
        assert_eq!(body.timestamp.len(), "2016-01-09 02:02:12Z".len());
        assert!(body.timestamp.ends_with('Z') && body.timestamp.as_bytes()[10] == b' ');
        assert_eq!(body.trace_id.len(), 36);
        assert_eq!(body.correlation_id.len(), 36);
    }
    assert!(sandbox_body
        .error_description
        .contains("The scope https://foo.microsoft.com/mail.read is not valid."));
}

#[tokio::test]
async fn authorize_never_redirects_to_an_untrusted_place() {
    let h = harness().await;
    let unknown_app = h
        .authorize(&[("client_id", "00000000-0000-4000-8000-00000000dead")])
        .await;
    assert_eq!(unknown_app.status(), StatusCode::BAD_REQUEST);
    assert!(unknown_app.headers().get(LOCATION).is_none());
    assert!(unknown_app.text().await.unwrap().contains("AADSTS700016"));

    let mismatch = h
        .authorize(&[("redirect_uri", "http://localhost/callback/")])
        .await;
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    assert!(mismatch.headers().get(LOCATION).is_none());
    assert!(mismatch.text().await.unwrap().contains("AADSTS50011"));

    let unknown_tenant = h
        .http
        .get(h.url("/11111111-2222-4333-8444-555555555555/oauth2/v2.0/authorize"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_tenant.status(), StatusCode::BAD_REQUEST);
    assert!(unknown_tenant.text().await.unwrap().contains("AADSTS90002"));
}

#[tokio::test]
async fn authorize_reports_protocol_errors_to_the_redirect_uri() {
    let h = harness().await;
    let token_flow = h.authorize(&[("response_type", "token")]).await;
    assert_eq!(token_flow.status(), StatusCode::FOUND);
    let reply = query_of(&location(&token_flow));
    assert_eq!(reply["error"], "unsupported_response_type");
    assert_eq!(reply["state"], "state-123");

    let (_, challenge) = pkce_pair();
    let bad_method = h
        .authorize(&[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S512"),
        ])
        .await;
    let reply = query_of(&location(&bad_method));
    assert_eq!(reply["error"], "invalid_request");

    let bad_scope = h
        .authorize(&[("scope", "openid https://example.com/things.read")])
        .await;
    let reply = query_of(&location(&bad_scope));
    assert_eq!(reply["error"], "invalid_scope");
    assert!(reply["error_description"].starts_with("AADSTS70011: "));
}

/// The `flow` hidden field of the sign-in page.
fn flow_id(page: &str) -> String {
    let marker = "name=\"flow\" value=\"";
    let start = page.find(marker).expect("a sign-in form") + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_owned()
}

#[tokio::test]
async fn the_sign_in_page_accepts_or_declines() {
    let h = harness().await;
    let identity = h.sandbox.identity();
    identity.set_auto_approve(&h.demo.tenant_id, None).unwrap();
    let login_url = h.url(&format!("/{}/login", h.demo.tenant_id));

    let page = h.authorize(&[]).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("Accept") && page.contains("Cancel"));
    let flow = flow_id(&page);

    let typo = h
        .http
        .post(&login_url)
        .form(&[
            ("flow", flow.as_str()),
            ("username", "nobody@example.com"),
            ("action", "accept"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status(), StatusCode::OK);
    assert!(typo.text().await.unwrap().contains("AADSTS50034"));

    let accepted = h
        .http
        .post(&login_url)
        .form(&[
            ("flow", flow.as_str()),
            ("username", h.demo.username.as_str()),
            ("action", "accept"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::FOUND);
    let reply = query_of(&location(&accepted));
    assert!(reply.contains_key("code"));
    assert_eq!(reply["state"], "state-123");

    let page = h.authorize(&[("login_hint", &h.demo.username)]).await;
    let page = page.text().await.unwrap();
    assert!(page.contains(&h.demo.username));
    let declined = h
        .http
        .post(&login_url)
        .form(&[("flow", flow_id(&page).as_str()), ("action", "cancel")])
        .send()
        .await
        .unwrap();
    let reply = query_of(&location(&declined));
    assert_eq!(reply["error"], "access_denied");
    assert!(reply["error_description"]
        .starts_with("AADSTS65004: User declined to consent to access the app."));
    assert_eq!(reply["state"], "state-123");

    let replayed = h
        .http
        .post(&login_url)
        .form(&[
            ("flow", flow.as_str()),
            ("username", h.demo.username.as_str()),
            ("action", "accept"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);

    let silent = h.authorize(&[("prompt", "none")]).await;
    let reply = query_of(&location(&silent));
    assert_eq!(reply["error"], "login_required");
}

#[tokio::test]
async fn deny_next_authorize_declines_once() {
    let h = harness().await;
    h.sandbox
        .identity()
        .deny_next_authorize(&h.demo.tenant_id)
        .unwrap();
    let denied = h.authorize(&[]).await;
    let reply = query_of(&location(&denied));
    assert_eq!(reply["error"], "access_denied");
    assert!(reply["error_description"].contains("AADSTS65004"));
    let next = h.authorize(&[]).await;
    assert!(query_of(&location(&next)).contains_key("code"));
}

#[tokio::test]
async fn form_post_and_fragment_response_modes() {
    let h = harness().await;
    let form_post = h.authorize(&[("response_mode", "form_post")]).await;
    assert_eq!(form_post.status(), StatusCode::OK);
    let page = form_post.text().await.unwrap();
    assert!(page.contains("action=\"http://localhost/callback\""));
    assert!(page.contains("name=\"code\""));

    let fragment = h.authorize(&[("response_mode", "fragment")]).await;
    let location = location(&fragment);
    let fragment = Url::parse(&location)
        .unwrap()
        .fragment()
        .unwrap()
        .to_owned();
    assert!(fragment.starts_with("code="));
}

#[tokio::test]
async fn the_control_api_drives_the_sandbox_over_http() {
    let sandbox = Sandbox::start().await.unwrap();
    let http = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let base = sandbox.base_url();
    let seed: SandboxSeed = serde_json::from_value(serde_json::json!({
        "identity": {"tenants": [{
            "tenant_id": "AAAAAAAA-0000-4000-8000-000000000001",
            "apps": [{"client_id": "bbbbbbbb-0000-4000-8000-000000000002",
                      "client_secret": "seeded", "redirect_uris": ["http://localhost/cb"]}],
            "users": [{"oid": "cccccccc-0000-4000-8000-000000000003",
                       "preferred_username": "megan@seed.example", "display_name": "Megan"}],
            "auto_approve": "megan@seed.example",
            "admin_consents": ["bbbbbbbb-0000-4000-8000-000000000002"]
        }]},
        "graph": {"ignored": "by older sandboxes"}
    }))
    .unwrap();
    let seeded = http
        .post(format!("{base}/_sandbox/identity/seed"))
        .json(&seed.identity)
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::NO_CONTENT);

    let fault = http
        .put(format!("{base}/_sandbox/identity/token-fault"))
        .json(&serde_json::json!({"kind": "unavailable", "status": 503, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), StatusCode::NO_CONTENT);

    let tenant = "aaaaaaaa-0000-4000-8000-000000000001";
    let token_url = format!("{base}/{tenant}/oauth2/v2.0/token");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "bbbbbbbb-0000-4000-8000-000000000002"),
        ("client_secret", "seeded"),
        ("scope", APP_ONLY_SCOPE),
    ];
    let first = http.post(&token_url).form(&form).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    let second = http.post(&token_url).form(&form).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let access_token = second.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let check: Value = http
        .post(format!("{base}/_sandbox/identity/access-tokens/check"))
        .json(&serde_json::json!({"access_token": access_token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(check["valid"], true);
    assert_eq!(check["info"]["app_only"], true);
    assert_eq!(check["info"]["roles"][0], "Calendars.ReadWrite");

    let counts: Value = http
        .get(format!("{base}/_sandbox/identity/token-requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["client_credentials"], 2);

    let unknown = http
        .post(format!("{base}/_sandbox/identity/users/nobody/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_sandbox_refuses_non_loopback_addresses_and_shuts_down() {
    let public = "0.0.0.0:0".parse().unwrap();
    assert!(Sandbox::start_on(public).await.is_err());
    let sandbox = Sandbox::start().await.unwrap();
    let addr = sandbox.local_addr();
    sandbox.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

//! A test bed for the publisher app: the sandbox's identity platform with the publisher's own
//! directory and its multi-tenant app (a certificate credential, no secret), two customer
//! directories with an administrator and a user each, and a calsync tenant that uses the
//! publisher app and holds no Microsoft credential — onboarded by consent.

use anyhow::{anyhow, Context, Result};
use calsync::services::publisher::{StoredCredential, StoredPublisher};
use calsync::services::tenants::{AppSource, TenantSettings};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;
use calsync_sandbox::identity::{CertificateAndKey, PUBLISHER_CLIENT_ID};

use crate::testbed::{
    link_query, now, request, sandbox_tenant_secret, unique, LinkRoute, TestBed, CRM_URL,
    PUBLIC_URL,
};
use crate::web::WebResponse;

/// The customer who consents: Fabrikam's directory, its Microsoft 365 administrator and a user.
pub const CUSTOMER_DIRECTORY: &str = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
pub const CUSTOMER_ADMIN: &str = "admin@fabrikam.example";
pub const CUSTOMER_USER_OID: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
pub const CUSTOMER_USER: &str = "lee.chen@fabrikam.example";
/// Another organisation, whose administrator also uses Microsoft 365.
pub const OTHER_DIRECTORY: &str = "9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a";
pub const OTHER_ADMIN: &str = "admin@northwind.example";
pub const OTHER_USER_OID: &str = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
pub const OTHER_USER: &str = "sam.ruiz@northwind.example";

pub struct PublisherBed {
    pub bed: TestBed,
    /// The calsync tenant that uses the publisher app.
    pub tenant: TenantId,
    pub link_key: Secret,
    /// The certificate and key the operator stored.
    pub credential: CertificateAndKey,
}

/// The consent and sign-in redirect URIs registered on the publisher app.
pub fn publisher_redirect_uris() -> [String; 2] {
    [
        format!("{PUBLIC_URL}/callback"),
        format!("{PUBLIC_URL}/admin-consent/callback"),
    ]
}

impl PublisherBed {
    /// Everything up, the publisher's certificate valid until `certificate_not_after` (Unix
    /// seconds); the tenant waits for consent, from `expected_directory` when given.
    pub async fn start(
        certificate_not_after: i64,
        expected_directory: Option<&str>,
    ) -> Result<Self> {
        let bed = TestBed::start().await?;
        let identity = bed.sandbox.identity();
        let uris = publisher_redirect_uris();
        let credential = identity
            .seed_publisher(&[&uris[0], &uris[1]], certificate_not_after)
            .map_err(|e| anyhow!("{e}"))?;
        for (directory, admin, oid, user, name) in [
            (
                CUSTOMER_DIRECTORY,
                CUSTOMER_ADMIN,
                CUSTOMER_USER_OID,
                CUSTOMER_USER,
                "Lee Chen",
            ),
            (
                OTHER_DIRECTORY,
                OTHER_ADMIN,
                OTHER_USER_OID,
                OTHER_USER,
                "Sam Ruiz",
            ),
        ] {
            identity.add_tenant(directory);
            identity.add_user(directory, &format!("{oid}-admin"), admin, "Administrator")?;
            identity.add_user(directory, oid, user, name)?;
        }
        bed.app
            .tenants
            .publisher()
            .set(&StoredPublisher {
                client_id: PUBLISHER_CLIENT_ID.to_owned(),
                credential: StoredCredential::Certificate {
                    certificate: credential.certificate_pem.clone(),
                    private_key: Secret::new(credential.private_key_pem.clone()),
                },
                set_at: now(),
            })
            .await?;
        let tenant = TenantId::parse(&unique("fabrikam"))?;
        let link_key = Secret::new(calsync::crypto::random_token(32));
        let mut settings = TenantSettings::new(tenant.clone(), "Fabrikam".into(), CRM_URL, now())?;
        settings.app = AppSource::Publisher;
        settings.expected_directory = expected_directory.map(str::to_owned);
        let mut secret = sandbox_tenant_secret(CRM_URL, "admin", "crm-access-key", &link_key);
        // The tenant holds no Microsoft credential of its own.
        secret.azure_tenant_id = String::new();
        secret.client_id = String::new();
        secret.client_secret = Secret::new("");
        bed.app.tenants.add(&settings, &secret).await?;
        Ok(Self {
            bed,
            tenant,
            link_key,
            credential,
        })
    }

    /// The admin-consent link's query for the publisher tenant.
    pub fn consent_link(&self) -> String {
        link_query(
            &self.tenant,
            &self.link_key,
            LinkRoute::AdminConsent,
            None,
            3600,
            None,
        )
    }

    /// Opens the consent link, signs in at the sandbox as `admin` and presses Accept (or
    /// Cancel); returns the query Microsoft sends back to calsync's consent callback.
    pub async fn consent_as(&self, admin: &str, accept: bool) -> Result<String> {
        let start = request(&self.bed.app, "GET", "/admin-consent", &self.consent_link()).await;
        let location = start
            .header("location")
            .with_context(|| format!("no redirect: {} {}", start.status, start.body))?
            .to_owned();
        self.answer_consent(&location, admin, accept).await
    }

    /// At Microsoft's consent URL `location`: sign in as `admin` and accept or cancel.
    pub async fn answer_consent(
        &self,
        location: &str,
        admin: &str,
        accept: bool,
    ) -> Result<String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let page = client.get(location).send().await?.text().await?;
        let form_action = between(&page, "<form method=\"post\" action=\"", "\"")
            .context("the consent page has no sign-in form")?;
        let flow = between(&page, "name=\"flow\" value=\"", "\"").context("no flow id")?;
        let base = url::Url::parse(location)?;
        let post = base.join(&form_action)?;
        let answer = client
            .post(post)
            .form(&[
                ("flow", flow.as_str()),
                ("username", admin),
                ("action", if accept { "accept" } else { "cancel" }),
            ])
            .send()
            .await?;
        let back = answer
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("the sign-in did not redirect ({})", answer.status()))?;
        if !back.starts_with(&format!("{PUBLIC_URL}/admin-consent/callback")) {
            return Err(anyhow!("redirected somewhere unexpected: {back}"));
        }
        Ok(url::Url::parse(back)?
            .query()
            .unwrap_or_default()
            .to_owned())
    }

    /// calsync's consent callback with `query`.
    pub async fn callback(&self, query: &str) -> WebResponse {
        request(&self.bed.app, "GET", "/admin-consent/callback", query).await
    }

    /// Connects CRM user `crm_user` as Microsoft account `username` (shown the sandbox's
    /// sign-in page, which it answers); returns calsync's callback answer.
    pub async fn connect(&self, crm_user: &str, username: &str) -> Result<WebResponse> {
        let query = link_query(
            &self.tenant,
            &self.link_key,
            LinkRoute::Connect,
            Some(crm_user),
            600,
            None,
        );
        let start = request(&self.bed.app, "GET", "/connect", &query).await;
        let location = start
            .header("location")
            .with_context(|| format!("connect did not redirect: {} {}", start.status, start.body))?
            .to_owned();
        let cookie = crate::testbed::cookie_set_by(&start).context("no sign-in cookie")?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let page = client.get(&location).send().await?.text().await?;
        let form_action = between(&page, "<form method=\"post\" action=\"", "\"")
            .context("the sign-in page has no form")?;
        let flow = between(&page, "name=\"flow\" value=\"", "\"").context("no flow id")?;
        let post = url::Url::parse(&location)?.join(&form_action)?;
        let answer = client
            .post(post)
            .form(&[
                ("flow", flow.as_str()),
                ("username", username),
                ("action", "accept"),
            ])
            .send()
            .await?;
        let back = answer
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("the sign-in did not redirect")?;
        let query = url::Url::parse(back)?
            .query()
            .unwrap_or_default()
            .to_owned();
        Ok(crate::testbed::request_with_cookie(
            &self.bed.app,
            "GET",
            "/callback",
            &query,
            Some(&cookie),
        )
        .await)
    }

    pub fn crm_user(name: &str) -> CrmUserName {
        CrmUserName::parse(name).expect("a valid CRM user name")
    }
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].replace("&amp;", "&"))
}

//! Certificate credentials: the client assertion a confidential client may send instead of a
//! secret (RFC 7523 §2.2, as Microsoft's "certificate credentials" page describes it). The
//! assertion is a JWT whose header names the certificate by thumbprint (`x5t`: SHA-1 of its
//! DER, `x5t#S256`: SHA-256, both base64url), signed RS256 or PS256 with the certificate's
//! key, with `iss` = `sub` = the client id, `aud` = the token endpoint it is sent to, `jti`,
//! `nbf` and `exp`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use super::errors::AadError;
use super::state::App;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew Entra tolerates on `nbf` and `exp`.
const SKEW_SECS: u64 = 300;

/// The DER of a PEM certificate, if it is one.
pub(crate) fn certificate_der(pem: &str) -> Option<Vec<u8>> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    webpki::EndEntityCert::try_from(&der).ok()?;
    Some(der.as_ref().to_vec())
}

fn thumbprint_sha1(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der,
    ))
}

fn thumbprint_sha256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, der))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5t: Option<String>,
    #[serde(default, rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    exp: Option<u64>,
}

fn malformed(why: &str) -> AadError {
    AadError::invalid_request(50027, format!("Invalid JWT token. {why}"))
}

/// The client id an assertion claims to be from (`iss`), read before anything is checked so
/// that the app can be looked up.
pub(crate) fn claimed_client(assertion: &str) -> Result<String, AadError> {
    let claims = decode_claims(assertion)?;
    claims
        .iss
        .ok_or_else(|| malformed("The assertion has no 'iss' claim."))
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str, what: &str) -> Result<T, AadError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(&format!("The {what} is not base64url.")))?;
    serde_json::from_slice(&bytes).map_err(|_| malformed(&format!("The {what} is not JSON.")))
}

fn split(assertion: &str) -> Result<(&str, &str, &str), AadError> {
    let mut parts = assertion.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(claims), Some(signature), None) => Ok((header, claims, signature)),
        _ => Err(malformed("The assertion is not a signed JWT.")),
    }
}

fn decode_claims(assertion: &str) -> Result<Claims, AadError> {
    let (_, claims, _) = split(assertion)?;
    decode_part(claims, "payload")
}

/// Checks a client assertion for `app`, sent to `token_endpoint` at `now` (Unix seconds).
pub(crate) fn verify_assertion(
    app: &App,
    assertion: &str,
    token_endpoint: &str,
    now: u64,
) -> Result<(), AadError> {
    let (header_part, claims_part, signature_part) = split(assertion)?;
    let header: Header = decode_part(header_part, "header")?;
    let claims: Claims = decode_part(claims_part, "payload")?;
    let client_id = app.client_id();
    let names_app = |claim: &Option<String>| {
        claim
            .as_deref()
            .is_some_and(|value| value.eq_ignore_ascii_case(client_id))
    };
    if !names_app(&claims.iss) || !names_app(&claims.sub) {
        return Err(AadError::invalid_client(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    let algorithm = match header.alg.as_str() {
        "RS256" => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        "PS256" => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        other => {
            return Err(malformed(&format!(
                "The signing algorithm '{other}' is not supported; use RS256 or PS256."
            )))
        }
    };
    if header.x5t.is_none() && header.x5t_s256.is_none() {
        return Err(malformed(
            "The header names no certificate (x5t or x5t#S256).",
        ));
    }
    let registered = app
        .registration
        .key_credentials
        .iter()
        .filter_map(|credential| {
            certificate_der(&credential.certificate_pem).map(|der| (credential, der))
        })
        .find(|(_, der)| {
            header.x5t_s256.as_deref() == Some(thumbprint_sha256(der).as_str())
                || header.x5t.as_deref() == Some(thumbprint_sha1(der).as_str())
        });
    let Some((credential, der)) = registered else {
        return Err(AadError::invalid_client(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not \
                 registered on application. [Reason - The key was not found., Please visit the \
                 Azure Portal, Graph Explorer or directly use MS Graph to see configured keys \
                 for app Id '{client_id}'.]"
            ),
        ));
    };
    check_signature(&der, algorithm, header_part, claims_part, signature_part)?;
    if now > credential.end_date_time {
        return Err(AadError::invalid_client(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is expired \
                 on application '{client_id}'."
            ),
        ));
    }
    let audience_fits = claims
        .aud
        .as_deref()
        .is_some_and(|aud| aud.eq_ignore_ascii_case(token_endpoint));
    if !audience_fits {
        return Err(AadError::invalid_client(
            700023,
            "Client assertion audience claim does not match Realm issuer.",
        ));
    }
    if claims.jti.as_deref().is_none_or(str::is_empty) {
        return Err(malformed("The assertion has no 'jti' claim."));
    }
    let in_range = match (claims.nbf, claims.exp) {
        (Some(nbf), Some(exp)) => nbf <= now + SKEW_SECS && now < exp + SKEW_SECS,
        _ => false,
    };
    if !in_range {
        return Err(AadError::invalid_client(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

fn check_signature(
    der: &[u8],
    algorithm: &dyn rustls_pki_types::SignatureVerificationAlgorithm,
    header_part: &str,
    claims_part: &str,
    signature_part: &str,
) -> Result<(), AadError> {
    let failed =
        || AadError::invalid_client(700027, "Client assertion failed signature validation.");
    let signature = URL_SAFE_NO_PAD
        .decode(signature_part)
        .map_err(|_| failed())?;
    let der = CertificateDer::from(der);
    let certificate = webpki::EndEntityCert::try_from(&der).map_err(|_| failed())?;
    let signed = format!("{header_part}.{claims_part}");
    certificate
        .verify_signature(algorithm, signed.as_bytes(), &signature)
        .map_err(|_| failed())
}

/// A certificate and the private key it certifies, both PEM: what an operator has after
/// creating a certificate credential for an app (the key is the sandbox's demo key, public in
/// its source: never a credential of anything real).
pub struct CertificateAndKey {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

/// Which of the sandbox's two fixed RSA keys a certificate is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoKey {
    /// The publisher app's key in the demo and the tests.
    Publisher,
    /// A key no app registers: what a wrong or stolen-elsewhere certificate looks like.
    Stranger,
}

impl DemoKey {
    fn pem(self) -> &'static str {
        match self {
            DemoKey::Publisher => include_str!("publisher-demo-key.pem"),
            DemoKey::Stranger => include_str!("stranger-demo-key.pem"),
        }
    }
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the certificate could not be made")]
pub struct CertificateError(#[source] rcgen::Error);

/// A self-signed certificate for `key`, valid from `not_before` to `not_after` (Unix seconds),
/// signed RS256 with ring, as `New-SelfSignedCertificate` or `openssl req -x509` would make
/// one for an app's certificate credential.
pub fn self_signed_certificate(
    key: DemoKey,
    common_name: &str,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateAndKey, CertificateError> {
    let pair = rcgen::KeyPair::from_pem_and_sign_algo(key.pem(), &rcgen::PKCS_RSA_SHA256)
        .map_err(CertificateError)?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let time = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    params.not_before = time(not_before);
    params.not_after = time(not_after);
    let certificate = params.self_signed(&pair).map_err(CertificateError)?;
    Ok(CertificateAndKey {
        certificate_pem: certificate.pem(),
        private_key_pem: key.pem().to_owned(),
    })
}

//! Certificate credentials for the Microsoft identity platform: a client assertion (RFC 7523
//! §2.2) in place of a client secret. The assertion is a JWT signed RS256 with the private key
//! of a certificate registered on the app, naming the certificate by its thumbprints (`x5t`,
//! SHA-1, and `x5t#S256`, SHA-256, of its DER), with `iss` = `sub` = the client id, `aud` = the
//! token endpoint it is sent to, a fresh `jti`, and `nbf`/`exp` a few minutes apart.
//!
//! Signed with ring, the one crypto provider of the binaries; PEM is read with
//! `rustls-pki-types`. Of the certificate only what calsync needs is read: its expiry (warned
//! about ahead of time) and its public key (which must be the private key's).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use std::fmt;

use calsync_core::secret::Secret;

/// `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is good for: it is used at once, once.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// Why a certificate and key cannot sign assertions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate is not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)")]
    NotACertificate,
    #[error("the certificate's validity could not be read")]
    NoValidity,
    #[error(
        "the private key is not an unencrypted PKCS#8 PEM RSA key (-----BEGIN PRIVATE KEY-----; \
         convert with `openssl pkcs8 -topk8 -nocrypt`)"
    )]
    NotAnRsaKey,
    #[error("the private key is not the certificate's: they do not belong together")]
    KeyMismatch,
    #[error("the assertion could not be signed")]
    Sign,
}

/// A certificate credential ready to sign. `Debug` shows the thumbprint and expiry only.
pub struct CertificateCredential {
    key: RsaKeyPair,
    x5t: String,
    x5t_s256: String,
    /// When the certificate stops being valid (Unix seconds).
    not_after: i64,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("x5t#S256", &self.x5t_s256)
            .field("not_after", &self.not_after)
            .field("key", &"***")
            .finish()
    }
}

impl CertificateCredential {
    /// Reads a PEM certificate and its PEM (PKCS#8) private key, and checks they belong
    /// together.
    pub fn from_pem(
        certificate_pem: &str,
        private_key_pem: &Secret,
    ) -> Result<Self, CertificateError> {
        let der = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
            .map_err(|_| CertificateError::NotACertificate)?;
        let parts =
            der::certificate_parts(der.as_ref()).ok_or(CertificateError::NotACertificate)?;
        let not_after = parts.not_after.ok_or(CertificateError::NoValidity)?;
        let key_der = PrivatePkcs8KeyDer::from_pem_slice(private_key_pem.expose().as_bytes())
            .map_err(|_| CertificateError::NotAnRsaKey)?;
        let key = RsaKeyPair::from_pkcs8(key_der.secret_pkcs8_der())
            .map_err(|_| CertificateError::NotAnRsaKey)?;
        if key.public_key().as_ref() != parts.rsa_public_key {
            return Err(CertificateError::KeyMismatch);
        }
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        Ok(Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256),
            not_after,
        })
    }

    /// When the certificate expires (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The SHA-256 thumbprint (base64url), as the app registration's certificate list shows
    /// its SHA-1 one in hex.
    pub fn thumbprint(&self) -> &str {
        &self.x5t_s256
    }

    /// A signed assertion for `client_id`, to be sent to `token_endpoint` now.
    pub fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: i64,
    ) -> Result<Secret, CertificateError> {
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.x5t,
            "x5t#S256": self.x5t_s256,
        });
        let claims = serde_json::json!({
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": crate::crypto::random_token(16),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| CertificateError::Sign)?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

/// Just enough DER to read an X.509 certificate's expiry and public key (RFC 5280 §4.1).
mod der {
    pub(super) struct CertificateParts<'a> {
        pub(super) not_after: Option<i64>,
        /// The `subjectPublicKey` bits: for RSA, the PKCS#1 `RSAPublicKey`.
        pub(super) rsa_public_key: &'a [u8],
    }

    /// One TLV: its tag, its contents, and what follows it.
    fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let length = rest[..count]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (length, &rest[count..])
        };
        if rest.len() < length {
            return None;
        }
        Some((tag, &rest[..length], &rest[length..]))
    }

    const SEQUENCE: u8 = 0x30;

    pub(super) fn certificate_parts(der: &[u8]) -> Option<CertificateParts<'_>> {
        let (SEQUENCE, certificate, _) = next(der)? else {
            return None;
        };
        let (SEQUENCE, tbs, _) = next(certificate)? else {
            return None;
        };
        let mut rest = tbs;
        // version [0] EXPLICIT, optional
        if rest.first() == Some(&0xa0) {
            rest = next(rest)?.2;
        }
        rest = next(rest)?.2; // serialNumber
        rest = next(rest)?.2; // signature AlgorithmIdentifier
        rest = next(rest)?.2; // issuer
        let (SEQUENCE, validity, after) = next(rest)? else {
            return None;
        };
        let (_, _, validity_rest) = next(validity)?; // notBefore
        let (tag, not_after, _) = next(validity_rest)?;
        rest = next(after)?.2; // subject
        let (SEQUENCE, spki, _) = next(rest)? else {
            return None;
        };
        let (SEQUENCE, _algorithm, spki_rest) = next(spki)? else {
            return None;
        };
        let (0x03, bits, _) = next(spki_rest)? else {
            return None;
        };
        // A BIT STRING starts with the count of unused bits, 0 for a key.
        let (&0, rsa_public_key) = bits.split_first()? else {
            return None;
        };
        Some(CertificateParts {
            not_after: time(tag, not_after),
            rsa_public_key,
        })
    }

    /// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
    fn time(tag: u8, value: &[u8]) -> Option<i64> {
        let text = std::str::from_utf8(value).ok()?;
        let digits = text.strip_suffix('Z')?;
        let full = match (tag, digits.len()) {
            (0x17, 12) => {
                let yy: i32 = digits[..2].parse().ok()?;
                let century = if yy >= 50 { "19" } else { "20" };
                format!("{century}{digits}")
            }
            (0x18, 14) => digits.to_owned(),
            _ => return None,
        };
        if !full.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number = |range: std::ops::Range<usize>| full[range].parse::<i16>().ok();
        let datetime = jiff::civil::datetime(
            number(0..4)?,
            i8::try_from(number(4..6)?).ok()?,
            i8::try_from(number(6..8)?).ok()?,
            i8::try_from(number(8..10)?).ok()?,
            i8::try_from(number(10..12)?).ok()?,
            i8::try_from(number(12..14)?).ok()?,
            0,
        );
        jiff::tz::TimeZone::UTC
            .to_timestamp(datetime)
            .ok()
            .map(|timestamp| timestamp.as_second())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn times_of_both_kinds() {
            assert_eq!(super::time(0x17, b"270630120000Z"), Some(1_814_356_800));
            assert_eq!(super::time(0x18, b"20270630120000Z"), Some(1_814_356_800));
            assert_eq!(super::time(0x17, b"500101000000Z"), Some(-631_152_000));
            assert_eq!(super::time(0x17, b"2706301200Z"), None);
            assert_eq!(super::time(0x18, b"2027063012000aZ"), None);
        }

        #[test]
        fn truncated_input_is_refused() {
            assert!(super::next(&[0x30, 0x82, 0x01]).is_none());
            assert!(super::next(&[0x30, 0x05, 0x01]).is_none());
            assert!(super::certificate_parts(b"not der").is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_made_elsewhere_reads_and_signs() {
        // Made outside calsync: fixtures/identity/README.md.
        let certificate = include_str!("../../../fixtures/identity/certificate.pem");
        let key = Secret::new(include_str!("../../../fixtures/identity/key.pem"));
        let credential = CertificateCredential::from_pem(certificate, &key).unwrap();
        assert_eq!(
            credential.not_after(),
            include_str!("../../../fixtures/identity/not-after.txt")
                .trim()
                .parse::<i64>()
                .unwrap()
        );
        let assertion = credential
            .assertion("client", "https://login/t/oauth2/v2.0/token", 1_000)
            .unwrap();
        let parts: Vec<&str> = assertion.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t#S256"], credential.thumbprint());
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://login/t/oauth2/v2.0/token");
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("client"), Some("client"))
        );
        assert_eq!(
            (claims["nbf"].as_i64(), claims["exp"].as_i64()),
            (Some(1_000), Some(1_300))
        );
        assert!(!format!("{credential:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_key_of_another_certificate_or_no_key_is_refused() {
        let certificate = include_str!("../../../fixtures/identity/certificate.pem");
        let other = Secret::new(include_str!("../../../fixtures/identity/other-key.pem"));
        assert_eq!(
            CertificateCredential::from_pem(certificate, &other).unwrap_err(),
            CertificateError::KeyMismatch
        );
        assert_eq!(
            CertificateCredential::from_pem(certificate, &Secret::new("nope")).unwrap_err(),
            CertificateError::NotAnRsaKey
        );
        assert_eq!(
            CertificateCredential::from_pem("nope", &other).unwrap_err(),
            CertificateError::NotACertificate
        );
    }
}

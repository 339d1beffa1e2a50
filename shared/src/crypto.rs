//! The small cryptographic pieces calsync needs: sealing refresh tokens at rest, signing the
//! links the CRM hands its users, hashing webhook client states, random tokens.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use calsync_core::secret::Secret;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the key is not 32 bytes of hex")]
    BadKey,
    #[error("the sealed value is malformed or was sealed for someone else")]
    Unseal,
    #[error("encryption failed")]
    Seal,
}

/// A 256-bit key given as 64 hex characters (the form kept in the tenant secret).
pub struct SealingKey(Aes256Gcm);

const SEAL_VERSION: &str = "v1.";

impl SealingKey {
    pub fn from_hex(hex_key: &Secret) -> Result<Self, CryptoError> {
        let bytes = hex::decode(hex_key.expose()).map_err(|_| CryptoError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self(cipher))
    }

    /// AES-256-GCM with a random nonce; `context` (tenant and user) is bound as associated data,
    /// so a sealed token copied onto another user's item does not open.
    pub fn seal(&self, plaintext: &Secret, context: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.expose().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{SEAL_VERSION}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Secret, CryptoError> {
        let body = sealed
            .strip_prefix(SEAL_VERSION)
            .ok_or(CryptoError::Unseal)?;
        let bytes = STANDARD.decode(body).map_err(|_| CryptoError::Unseal)?;
        if bytes.len() < 12 + 16 {
            return Err(CryptoError::Unseal);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self
            .0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Unseal)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CryptoError::Unseal)
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `message` under `key` (the tenant's link key, used as its UTF-8 bytes).
pub fn hmac_hex(key: &Secret, message: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <HmacSha256 as Mac>::new_from_slice(key.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a hex HMAC in constant time.
pub fn hmac_verify(key: &Secret, message: &str, signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(key.expose().as_bytes()) else {
        return false;
    };
    mac.update(message.as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// Hex SHA-256, for values we must recognise later without storing them (webhook client states).
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Whether two texts are equal, in time that does not depend on where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// `bytes` random bytes as unpadded base64url: opaque tokens for URLs and keys.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A fresh 256-bit key as hex, the form stored in tenant secrets.
pub fn random_key_hex() -> Secret {
    let mut buf = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut buf);
    Secret::new(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_context_binding() {
        let key = SealingKey::from_hex(&random_key_hex()).unwrap();
        let sealed = key.seal(&Secret::new("refresh-token"), "t\0u").unwrap();
        assert!(!sealed.contains("refresh-token"));
        assert_eq!(key.open(&sealed, "t\0u").unwrap().expose(), "refresh-token");
        assert_eq!(key.open(&sealed, "t\0other"), Err(CryptoError::Unseal));
        let other = SealingKey::from_hex(&random_key_hex()).unwrap();
        assert_eq!(other.open(&sealed, "t\0u"), Err(CryptoError::Unseal));
        assert_eq!(key.open("v1.AAAA", "t\0u"), Err(CryptoError::Unseal));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(SealingKey::from_hex(&Secret::new("abcd")).is_err());
        assert!(SealingKey::from_hex(&Secret::new("zz".repeat(32))).is_err());
    }

    #[test]
    fn hmac_signs_and_verifies() {
        let key = Secret::new("link-key");
        let sig = hmac_hex(&key, "acme\nmaria\n1700000000");
        assert!(hmac_verify(&key, "acme\nmaria\n1700000000", &sig));
        assert!(!hmac_verify(&key, "acme\nmaria\n1700000001", &sig));
        assert!(!hmac_verify(&key, "acme\nmaria\n1700000000", "not-hex"));
        assert!(!hmac_verify(
            &Secret::new("other"),
            "acme\nmaria\n1700000000",
            &sig
        ));
    }
}

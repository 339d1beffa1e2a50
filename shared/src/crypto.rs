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
    #[error("a token key id must be 1 to 16 lowercase letters and digits, each id once")]
    BadKeyId,
    #[error("the sealed value is malformed or was sealed for someone else")]
    Unseal,
    /// The value names a key id this key ring does not hold: sealed with a newer key than this
    /// copy of the tenant's secret knows, or with a key since retired.
    #[error("the sealed value was sealed with a token key that is not held here")]
    UnknownKey,
    #[error("encryption failed")]
    Seal,
}

/// A 256-bit key given as 64 hex characters (the form kept in the tenant secret).
pub struct SealingKey(Aes256Gcm);

/// Values sealed by a key without an id (every value from before key ids): `v1.` + base64.
const SEAL_V1: &str = "v1.";
/// Values sealed by a key with an id: `v2.` + id + `.` + base64.
const SEAL_V2: &str = "v2.";

impl SealingKey {
    pub fn from_hex(hex_key: &Secret) -> Result<Self, CryptoError> {
        let bytes = hex::decode(hex_key.expose()).map_err(|_| CryptoError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self(cipher))
    }

    /// AES-256-GCM with a random nonce; `context` (tenant and user) is bound as associated data,
    /// so a sealed token copied onto another user's item does not open. The `v1.` form, without
    /// a key id (a [`TokenKeys`] ring seals with its key's id).
    pub fn seal(&self, plaintext: &Secret, context: &str) -> Result<String, CryptoError> {
        Ok(format!("{SEAL_V1}{}", self.seal_body(plaintext, context)?))
    }

    /// Opens a `v1.` value.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Secret, CryptoError> {
        let body = sealed.strip_prefix(SEAL_V1).ok_or(CryptoError::Unseal)?;
        self.open_body(body, context)
    }

    fn seal_body(&self, plaintext: &Secret, context: &str) -> Result<String, CryptoError> {
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
        Ok(STANDARD.encode(out))
    }

    fn open_body(&self, body: &str, context: &str) -> Result<Secret, CryptoError> {
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

/// Which key sealed a value: `Some(None)` for a `v1.` value (the key from before key ids),
/// `Some(Some(id))` for a `v2.` value, `None` when it is neither.
pub fn sealed_key_id(sealed: &str) -> Option<Option<&str>> {
    if sealed.starts_with(SEAL_V1) {
        return Some(None);
    }
    let rest = sealed.strip_prefix(SEAL_V2)?;
    let (id, _) = rest.split_once('.')?;
    valid_key_id(id).then_some(Some(id))
}

/// Token key ids: 1 to 16 lowercase ASCII letters and digits (`k1`, `k2`…).
pub fn valid_key_id(id: &str) -> bool {
    (1..=16).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A tenant's token keys: the newest seals, every key held opens what it sealed. Each sealed
/// value names its key (`v2.{id}.…`); values from before key ids (`v1.…`) open with the one
/// key without an id, as long as it is held.
pub struct TokenKeys {
    current_id: Option<String>,
    keys: Vec<(Option<String>, SealingKey)>,
}

impl TokenKeys {
    /// `current` seals; `older` only open. Ids must be valid and distinct, and at most one key
    /// may lack an id.
    pub fn new<'a>(
        current_id: Option<&str>,
        current: &Secret,
        older: impl IntoIterator<Item = (Option<&'a str>, &'a Secret)>,
    ) -> Result<Self, CryptoError> {
        let mut keys = vec![(
            current_id.map(str::to_owned),
            SealingKey::from_hex(current)?,
        )];
        for (id, key) in older {
            keys.push((id.map(str::to_owned), SealingKey::from_hex(key)?));
        }
        for (i, (id, _)) in keys.iter().enumerate() {
            if id.as_deref().is_some_and(|id| !valid_key_id(id)) {
                return Err(CryptoError::BadKeyId);
            }
            if keys[..i].iter().any(|(other, _)| other == id) {
                return Err(CryptoError::BadKeyId);
            }
        }
        Ok(Self {
            current_id: current_id.map(str::to_owned),
            keys,
        })
    }

    /// A ring of one key without an id (as every tenant had before key ids).
    pub fn single(key: &Secret) -> Result<Self, CryptoError> {
        Self::new(None, key, [])
    }

    /// The id of the key that seals (`None`: the key from before key ids, which seals `v1.`).
    pub fn current_id(&self) -> Option<&str> {
        self.current_id.as_deref()
    }

    /// Seals with the newest key, naming it in the value.
    pub fn seal(&self, plaintext: &Secret, context: &str) -> Result<String, CryptoError> {
        let (id, key) = self.keys.first().ok_or(CryptoError::Seal)?;
        match id {
            Some(id) => Ok(format!(
                "{SEAL_V2}{id}.{}",
                key.seal_body(plaintext, context)?
            )),
            None => key.seal(plaintext, context),
        }
    }

    /// Opens a value with the key it names.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Secret, CryptoError> {
        let id = sealed_key_id(sealed).ok_or(CryptoError::Unseal)?;
        let body = match id {
            None => &sealed[SEAL_V1.len()..],
            Some(id) => &sealed[SEAL_V2.len() + id.len() + 1..],
        };
        let (_, key) = self
            .keys
            .iter()
            .find(|(held, _)| held.as_deref() == id)
            .ok_or(CryptoError::UnknownKey)?;
        key.open_body(body, context)
    }

    /// Whether `sealed` was sealed by the key that seals now.
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed_key_id(sealed) == Some(self.current_id.as_deref())
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
    fn a_key_ring_seals_with_its_newest_key_and_opens_with_any() {
        let legacy = random_key_hex();
        let k1 = random_key_hex();
        let before = SealingKey::from_hex(&legacy)
            .unwrap()
            .seal(&Secret::new("old-token"), "t\0u")
            .unwrap();
        assert_eq!(sealed_key_id(&before), Some(None));
        let ring = TokenKeys::single(&legacy).unwrap();
        assert_eq!(ring.open(&before, "t\0u").unwrap().expose(), "old-token");
        assert!(ring.is_current(&before));

        let rotated = TokenKeys::new(Some("k1"), &k1, [(None, &legacy)]).unwrap();
        let after = rotated.seal(&Secret::new("new-token"), "t\0u").unwrap();
        assert!(after.starts_with("v2.k1."), "{after}");
        assert!(!after.contains("new-token"));
        assert_eq!(rotated.open(&after, "t\0u").unwrap().expose(), "new-token");
        assert_eq!(rotated.open(&before, "t\0u").unwrap().expose(), "old-token");
        assert!(rotated.is_current(&after) && !rotated.is_current(&before));
        assert_eq!(rotated.open(&after, "t\0other"), Err(CryptoError::Unseal));

        // The old ring does not know k1; the retired ring does not know the legacy key.
        assert_eq!(ring.open(&after, "t\0u"), Err(CryptoError::UnknownKey));
        let retired = TokenKeys::new(Some("k1"), &k1, []).unwrap();
        assert_eq!(retired.open(&before, "t\0u"), Err(CryptoError::UnknownKey));
        assert_eq!(retired.open(&after, "t\0u").unwrap().expose(), "new-token");
        // A value that claims a key it was not sealed with does not open.
        let forged = after.replacen("v2.k1.", "v2.k2.", 1);
        let both = TokenKeys::new(Some("k2"), &legacy, [(Some("k1"), &k1)]).unwrap();
        assert_eq!(both.open(&forged, "t\0u"), Err(CryptoError::Unseal));
    }

    #[test]
    fn key_ids_are_short_distinct_and_plain() {
        let a = random_key_hex();
        let b = random_key_hex();
        assert!(TokenKeys::new(Some("K1"), &a, []).is_err());
        assert!(TokenKeys::new(Some("k.1"), &a, []).is_err());
        assert!(TokenKeys::new(Some("k1"), &a, [(Some("k1"), &b)]).is_err());
        assert!(TokenKeys::new(None, &a, [(None, &b)]).is_err());
        assert!(TokenKeys::new(Some("k2"), &a, [(Some("k1"), &b)]).is_ok());
        assert_eq!(sealed_key_id("v2.k1.AAAA"), Some(Some("k1")));
        assert_eq!(sealed_key_id("v2.K1.AAAA"), None);
        assert_eq!(sealed_key_id("plain"), None);
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

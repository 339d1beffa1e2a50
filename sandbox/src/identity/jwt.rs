//! JWT-shaped tokens.
//!
//! The signature part is random bytes, not a real RS256 signature. ID tokens reach the client
//! straight from the token endpoint (the back channel), where the OpenID Connect spec lets a
//! confidential client skip signature checks, and access tokens are opaque to clients. The
//! sandbox itself recognises its tokens by lookup, never by verifying them.

use serde_json::{json, Value};

use crate::support::{base64url, random_token};

/// Length of an RS256 signature made with a 2048-bit key.
const SIGNATURE_BYTES: usize = 256;

pub(crate) fn encode(claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "sandbox"});
    format!(
        "{}.{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes()),
        random_token(SIGNATURE_BYTES)
    )
}

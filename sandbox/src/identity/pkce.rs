//! Proof Key for Code Exchange (RFC 7636).

use sha2::{Digest, Sha256};

use crate::support::base64url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChallengeMethod {
    Plain,
    S256,
}

impl ChallengeMethod {
    /// A challenge sent without a method is plain text, per RFC 7636 and Microsoft's docs.
    pub(crate) fn parse(method: Option<&str>) -> Option<Self> {
        match method {
            None | Some("plain") => Some(Self::Plain),
            Some("S256") => Some(Self::S256),
            Some(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PkceChallenge {
    pub(crate) challenge: String,
    pub(crate) method: ChallengeMethod,
}

impl PkceChallenge {
    pub(crate) fn is_satisfied_by(&self, verifier: &str) -> bool {
        match self.method {
            ChallengeMethod::Plain => verifier == self.challenge,
            ChallengeMethod::S256 => {
                base64url(Sha256::digest(verifier.as_bytes()).as_slice()) == self.challenge
            }
        }
    }
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set. An S256 challenge (43
/// characters of base64url) fits the same rule.
pub(crate) fn is_well_formed(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_rfc_7636_example() {
        // Appendix B of RFC 7636.
        let challenge = PkceChallenge {
            challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
            method: ChallengeMethod::S256,
        };
        assert!(challenge.is_satisfied_by("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!challenge.is_satisfied_by("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx"));
        assert!(is_well_formed(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!is_well_formed("too-short"));
        assert!(!is_well_formed(&"a+".repeat(30)));
    }
}

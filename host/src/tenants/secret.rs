//! API keys and the admin token as secrets: how a key is made and shown, how a request presents
//! one, and how it is compared — by its SHA-256, so only hashes are stored and no comparison
//! depends on how much of a guess was right.

use ember_contract::headers;
use hyper::header::{HeaderMap, AUTHORIZATION};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// What every API key starts with, so leaked keys are recognizable (secret scanners, logs).
pub const KEY_PREFIX: &str = "ek_";

/// Random bytes in a key: 192 bits, written as 48 hex digits after [`KEY_PREFIX`].
const KEY_BYTES: usize = 24;

/// Characters of a key shown by `ember keys list` to tell keys apart: the prefix and 8 digits.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 8;

/// The SHA-256 of a secret: what the ledger stores and requests are matched by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretDigest(pub [u8; 32]);

impl SecretDigest {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether two digests are equal, in time that does not depend on where they differ.
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// A newly made API key: shown once, then only its digest is kept.
pub struct NewKey {
    /// The key, `ek_` and 48 hex digits.
    pub secret: String,
}

impl NewKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> anyhow::Result<Self> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|error| anyhow::anyhow!("no random source for a key: {error}"))?;
        let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            secret: format!("{KEY_PREFIX}{digits}"),
        })
    }

    /// What is stored: the digest.
    pub fn digest(&self) -> SecretDigest {
        SecretDigest::of(&self.secret)
    }

    /// The start of the key that listings show (`ek_1a2b3c4d`), never enough to use it.
    pub fn shown(&self) -> &str {
        &self.secret[..SHOWN_CHARS]
    }
}

/// The credential a request presents: `Authorization: Bearer <secret>` (gRPC metadata
/// `authorization` alike), else `x-api-key: <secret>`. `None` when it presents neither.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, secret) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| secret.trim())
            .filter(|s| !s.is_empty());
    }
    headers
        .get(headers::API_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Removes the credentials from a request before it reaches the function: a guest never sees a
/// key.
pub fn strip(headers: &mut HeaderMap) {
    headers.remove(AUTHORIZATION);
    headers.remove(headers::API_KEY);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn keys_are_prefixed_random_and_shown_only_in_part() {
        let (a, b) = (NewKey::generate().unwrap(), NewKey::generate().unwrap());
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + 2 * KEY_BYTES);
        assert_eq!(a.shown().len(), 11);
        assert!(a.digest().matches(&SecretDigest::of(&a.secret)));
        assert!(!a.digest().matches(&b.digest()));
    }

    #[test]
    fn a_key_is_presented_as_a_bearer_token_or_in_x_api_key() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers), None);
        headers.insert(headers::API_KEY, HeaderValue::from_static("ek_x"));
        assert_eq!(presented(&headers), Some("ek_x"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  ek_y "));
        assert_eq!(presented(&headers), Some("ek_y"), "Authorization wins");
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic dTpw"));
        assert_eq!(presented(&headers), None, "another scheme is no key");
        strip(&mut headers);
        assert!(headers.is_empty());
    }
}

//! API keys: `rq_<prefix>_<secret>`, 32 random bytes of secret, stored only as a SHA-256 hash.
//! A fast hash is right here: the keys are random, so there is nothing to brute-force.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A freshly generated key, shown to its owner once.
#[derive(Debug)]
pub struct NewApiKey {
    /// The public part, kept in the clear to tell keys apart.
    pub prefix: String,
    /// The whole key.
    pub key: SecretString,
    /// What is stored.
    pub hash: [u8; 32],
}

/// Generates a new random key.
pub fn generate_key() -> NewApiKey {
    let mut rng = rand::rng();
    let mut prefix = [0u8; 4];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut prefix);
    rng.fill_bytes(&mut secret);
    let prefix = hex::encode(prefix);
    let key = format!("rq_{prefix}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash_key(&key);
    NewApiKey { prefix, key: SecretString::from(key), hash }
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The public prefix of a key in the `rq_<prefix>_<secret>` form, if it has that form.
pub fn key_prefix(key: &SecretString) -> Option<String> {
    let k = key.expose_secret();
    let rest = k.strip_prefix("rq_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (!prefix.is_empty() && !secret.is_empty()).then(|| prefix.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_and_hash_to_their_stored_form() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.key.expose_secret(), b.key.expose_secret());
        assert_eq!(hash_key(a.key.expose_secret()), a.hash);
        assert_eq!(key_prefix(&a.key).as_deref(), Some(a.prefix.as_str()));
        assert!(a.key.expose_secret().len() > 40);
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        assert_eq!(key_prefix(&SecretString::from("nope")), None);
        assert_eq!(key_prefix(&SecretString::from("rq__x")), None);
    }
}

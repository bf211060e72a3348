//! The keys that protect second-factor secrets at rest.
//!
//! A TOTP secret must be read back to compute codes, so it cannot be
//! hashed: it is sealed with XChaCha20-Poly1305 (random 192-bit nonce, the
//! user ID as associated data, so a sealed secret moved to another user's
//! row does not open). Recovery and mailed codes are only compared, so
//! they are kept as HMAC-SHA-256 digests under a key derived from the same
//! configured key.
//!
//! Keys come from `user_registry.second_factor_keys`: the first seals and
//! hashes, every one opens and checks, so a key is rotated by putting a
//! new one first and removing the old one once nothing sealed under it is
//! left. A sealed value names its key by an ID derived from the key.

use std::fmt;

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use data_encoding::{BASE64_NOPAD, HEXLOWER};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The fewest characters a configured key may have.
pub const MIN_KEY_CHARS: usize = 32;

struct FactorKey {
    id: String,
    cipher: XChaCha20Poly1305,
    mac_key: [u8; 32],
}

/// The configured keys, first one current. `Debug` shows only key IDs.
pub struct FactorKeys {
    keys: Vec<FactorKey>,
}

impl fmt::Debug for FactorKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.id))
            .finish()
    }
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a sealed secret is malformed")]
    Malformed,
    #[error("a sealed secret names a key that is not configured")]
    UnknownKey,
    #[error("a sealed secret does not open under its key")]
    Tampered,
}

fn derive(material: &str, purpose: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"roster second factor key v1\0");
    hash.update(purpose);
    hash.update(b"\0");
    hash.update(material.as_bytes());
    hash.finalize().into()
}

impl FactorKeys {
    /// Keys from their configured text (any string of at least
    /// [`MIN_KEY_CHARS`] characters; 32 random bytes in base64 or hex are
    /// typical). At least one is needed.
    pub fn new<S: AsRef<str>>(materials: &[S]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !materials.is_empty(),
            "user_registry.second_factor_keys needs at least one key"
        );
        let mut keys = Vec::with_capacity(materials.len());
        for (i, material) in materials.iter().enumerate() {
            let material = material.as_ref();
            anyhow::ensure!(
                material.chars().count() >= MIN_KEY_CHARS,
                "user_registry.second_factor_keys[{i}] must have at least {MIN_KEY_CHARS} characters"
            );
            let id = HEXLOWER.encode(&derive(material, b"id")[..6]);
            keys.push(FactorKey {
                id,
                cipher: XChaCha20Poly1305::new(&derive(material, b"seal").into()),
                mac_key: derive(material, b"mac"),
            });
        }
        Ok(Self { keys })
    }

    /// A new random key as configuration text (for the embedded default's
    /// key file).
    pub fn generate_material() -> String {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        BASE64_NOPAD.encode(&bytes)
    }

    fn current(&self) -> &FactorKey {
        &self.keys[0]
    }

    /// `secret` sealed for `user_id` under the current key, as
    /// `<key id>.<nonce>.<ciphertext>` (base64).
    pub fn seal(&self, user_id: &str, secret: &[u8]) -> String {
        let key = self.current();
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: user_id.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message this size");
        format!(
            "{}.{}.{}",
            key.id,
            BASE64_NOPAD.encode(&nonce),
            BASE64_NOPAD.encode(&sealed)
        )
    }

    /// The secret sealed for `user_id` by [`seal`](Self::seal), under any
    /// configured key.
    pub fn open(&self, user_id: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let mut parts = sealed.split('.');
        let (Some(id), Some(nonce), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(SealError::UnknownKey)?;
        let nonce = BASE64_NOPAD
            .decode(nonce.as_bytes())
            .ok()
            .filter(|n| n.len() == 24)
            .ok_or(SealError::Malformed)?;
        let body = BASE64_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| SealError::Malformed)?;
        key.cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &body,
                    aad: user_id.as_bytes(),
                },
            )
            .map_err(|_| SealError::Tampered)
    }

    fn mac(key: &FactorKey, user_id: &str, purpose: &str, code: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&key.mac_key)
            .expect("HMAC accepts keys of any length");
        for part in [purpose, user_id, code] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// The digest to store for a code of `user_id` (`purpose`: what kind of
    /// code), as `<key id>.<hex>` under the current key.
    pub fn hash_code(&self, user_id: &str, purpose: &str, code: &str) -> String {
        let key = self.current();
        format!(
            "{}.{}",
            key.id,
            HEXLOWER.encode(&Self::mac(key, user_id, purpose, code))
        )
    }

    /// Whether `code` matches a digest made by
    /// [`hash_code`](Self::hash_code), in constant time. A digest under a
    /// key no longer configured matches nothing.
    pub fn verify_code(&self, user_id: &str, purpose: &str, code: &str, stored: &str) -> bool {
        let Some((id, hex)) = stored.split_once('.') else {
            return false;
        };
        let Some(key) = self.keys.iter().find(|k| k.id == id) else {
            return false;
        };
        let Ok(stored) = HEXLOWER.decode(hex.as_bytes()) else {
            return false;
        };
        bool::from(
            Self::mac(key, user_id, purpose, code)
                .as_slice()
                .ct_eq(&stored),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "an example key of at least thirty-two characters";
    const B: &str = "another example key, also long enough for the rule";

    #[test]
    fn a_sealed_secret_opens_only_for_its_user_and_under_a_configured_key() {
        let keys = FactorKeys::new(&[A]).unwrap();
        let sealed = keys.seal("alice", b"totp secret");
        assert!(!sealed.contains("totp"));
        assert_eq!(keys.open("alice", &sealed).unwrap(), b"totp secret");
        assert_eq!(keys.open("bob", &sealed), Err(SealError::Tampered));
        let rotated = FactorKeys::new(&[B, A]).unwrap();
        assert_eq!(rotated.open("alice", &sealed).unwrap(), b"totp secret");
        assert!(rotated.seal("alice", b"x").starts_with(&rotated.keys[0].id));
        let other = FactorKeys::new(&[B]).unwrap();
        assert_eq!(other.open("alice", &sealed), Err(SealError::UnknownKey));
        assert_eq!(keys.open("alice", "x.y"), Err(SealError::Malformed));
    }

    #[test]
    fn code_digests_are_bound_to_user_purpose_and_key() {
        let keys = FactorKeys::new(&[A]).unwrap();
        let stored = keys.hash_code("alice", "recovery", "abcd");
        assert!(keys.verify_code("alice", "recovery", "abcd", &stored));
        assert!(!keys.verify_code("alice", "recovery", "abce", &stored));
        assert!(!keys.verify_code("bob", "recovery", "abcd", &stored));
        assert!(!keys.verify_code("alice", "email", "abcd", &stored));
        assert!(
            FactorKeys::new(&[B, A])
                .unwrap()
                .verify_code("alice", "recovery", "abcd", &stored)
        );
        assert!(
            !FactorKeys::new(&[B])
                .unwrap()
                .verify_code("alice", "recovery", "abcd", &stored)
        );
    }

    #[test]
    fn short_or_missing_keys_are_refused_naming_the_setting() {
        let error = FactorKeys::new(&["short"]).unwrap_err().to_string();
        assert!(error.contains("second_factor_keys[0]"), "{error}");
        let none: [&str; 0] = [];
        assert!(FactorKeys::new(&none).is_err());
        assert!(format!("{:?}", FactorKeys::new(&[A]).unwrap()).len() < 40);
    }
}

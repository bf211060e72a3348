//! Random secrets and bearer tokens.
//!
//! A bearer token reads `<type>.<id>.<secret>`: the type says which store to
//! look in, the ID finds the row, and only a SHA-256 digest of the secret is
//! stored. The secret has 256 bits of entropy, so a fast digest is enough:
//! no dictionary attack applies, and checking a token costs no Argon2 time.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, HEXLOWER};
use rand::rngs::OsRng;
use rand::{Rng as _, RngCore as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Random bytes in a token ID.
pub const ID_BYTES: usize = 15;
/// Characters of a token ID.
pub const ID_CHARS: usize = 24;
/// Random bytes in a token secret.
pub const SECRET_BYTES: usize = 32;
/// Characters of a token secret.
pub const SECRET_CHARS: usize = 52;

/// Lowercase RFC 4648 base32 without padding: nothing in it needs escaping
/// in URLs, headers or shells, a double click selects a whole part, and it
/// has no look-alike pairs such as `0`/`O` or `1`/`l`.
static BASE32_LOWER: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.encoding().expect("valid base32 specification")
});

/// What a bearer token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// An API key (`rak`).
    ApiKey,
    /// A login session (`rst`).
    Session,
    /// A one-time login token (`rlt`).
    LoginToken,
    /// An invitation to register (`rin`); not a credential.
    Invitation,
    /// A login waiting for its second factor (`rlc`); not a credential:
    /// only `Authentication.CompleteLogin` takes it.
    LoginChallenge,
}

impl TokenType {
    /// Every token type.
    pub const ALL: [TokenType; 5] = [
        Self::ApiKey,
        Self::Session,
        Self::LoginToken,
        Self::Invitation,
        Self::LoginChallenge,
    ];

    /// The prefix in the token string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "rak",
            Self::Session => "rst",
            Self::LoginToken => "rlt",
            Self::Invitation => "rin",
            Self::LoginChallenge => "rlc",
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenType {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(TokenError::UnknownType)
    }
}

/// Why a string is not a bearer token. No variant quotes the input, which
/// may hold a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a token has three `.`-separated parts")]
    Malformed,
    #[error("unknown token type")]
    UnknownType,
    #[error("the token ID is not {ID_CHARS} lowercase base32 characters")]
    InvalidId,
    #[error("the token secret is not {SECRET_CHARS} lowercase base32 characters")]
    InvalidSecret,
}

/// A bearer token: type, ID and secret. `Display` writes the whole token,
/// secret included; `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    kind: TokenType,
    id: String,
    secret: String,
}

impl Token {
    /// A new token of the given type with a random ID and secret.
    pub fn generate(kind: TokenType) -> Self {
        Self {
            kind,
            id: random_secret(ID_BYTES),
            secret: random_secret(SECRET_BYTES),
        }
    }

    /// Parses `<type>.<id>.<secret>`, accepting only exactly what
    /// [`Token::generate`] produces.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let mut parts = s.split('.');
        let (Some(kind), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let kind = kind.parse()?;
        if !is_canonical_base32(id, ID_CHARS, ID_BYTES) {
            return Err(TokenError::InvalidId);
        }
        if !is_canonical_base32(secret, SECRET_CHARS, SECRET_BYTES) {
            return Err(TokenError::InvalidSecret);
        }
        Ok(Self {
            kind,
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub fn kind(&self) -> TokenType {
        self.kind
    }

    /// The public part, stored in plain text to find the token.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret part; store only [`hash_secret`] of it.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.kind, self.id, self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// Decoding, not only checking the alphabet, also refuses non-zero trailing
// bits, so each token has exactly one spelling.
fn is_canonical_base32(s: &str, chars: usize, bytes: usize) -> bool {
    s.len() == chars
        && BASE32_LOWER
            .decode(s.as_bytes())
            .is_ok_and(|decoded| decoded.len() == bytes)
}

/// The digest stored for a token secret: lowercase hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    HEXLOWER.encode(&Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` matches a digest made by [`hash_secret`], compared in
/// constant time. A malformed digest matches nothing.
pub fn verify_secret(secret: &str, stored_hex: &str) -> bool {
    let Ok(stored) = HEXLOWER.decode(stored_hex.as_bytes()) else {
        return false;
    };
    let computed = Sha256::digest(secret.as_bytes());
    // `ct_eq` on slices of different lengths is false, without a timing
    // difference that depends on the content.
    bool::from(computed.as_slice().ct_eq(&stored))
}

/// Hashes bearer-token secrets for storage: HMAC-SHA-256 under a server key
/// (`auth.token_hash_key`) over the whole token, so a stored digest is
/// bound to its type and ID, and a copy of the database alone cannot even
/// confirm a guessed token. The secret's 256 bits make a slow hash
/// pointless; this one costs about a microsecond.
#[derive(Clone)]
pub struct TokenHasher {
    key: Vec<u8>,
}

/// The key used when none is configured. Tokens stay unguessable without
/// a key of one's own; a configured key only adds that a database dump
/// cannot check tokens offline.
const DEFAULT_TOKEN_HASH_KEY: &[u8] = b"roster token hash v1";

impl TokenHasher {
    /// A hasher under `key`; an empty key means the built-in one. Changing
    /// the key invalidates every stored token.
    pub fn new(key: &str) -> Self {
        let key = if key.is_empty() {
            DEFAULT_TOKEN_HASH_KEY.to_vec()
        } else {
            key.as_bytes().to_vec()
        };
        Self { key }
    }

    fn mac(&self, token: &Token) -> hmac::Hmac<Sha256> {
        use hmac::Mac as _;
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(token.kind.as_str().as_bytes());
        mac.update(b".");
        mac.update(token.id.as_bytes());
        mac.update(b".");
        mac.update(token.secret.as_bytes());
        mac
    }

    /// The digest to store for `token`, as lowercase hex.
    pub fn hash(&self, token: &Token) -> String {
        use hmac::Mac as _;
        HEXLOWER.encode(&self.mac(token).finalize().into_bytes())
    }

    /// Whether `token` matches the stored digest, in constant time. A
    /// malformed digest matches nothing.
    pub fn verify(&self, token: &Token, stored_hex: &str) -> bool {
        let Ok(stored) = HEXLOWER.decode(stored_hex.as_bytes()) else {
            return false;
        };
        use hmac::Mac as _;
        let computed = self.mac(token).finalize().into_bytes();
        bool::from(computed.as_slice().ct_eq(&stored))
    }
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher(<key hidden>)")
    }
}

/// `len_bytes` random bytes as lowercase base32 without padding (32 bytes
/// give 52 characters). For temporary passwords, invitation tokens and the
/// parts of bearer tokens.
pub fn random_secret(len_bytes: usize) -> String {
    let mut bytes = vec![0u8; len_bytes];
    OsRng.fill_bytes(&mut bytes);
    BASE32_LOWER.encode(&bytes)
}

/// A numeric code of `digits` uniformly random decimal digits, leading
/// zeros included.
pub fn random_code(digits: usize) -> String {
    let mut rng = OsRng;
    (0..digits)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_token_hash_binds_the_key_the_type_and_the_id() {
        let hasher = TokenHasher::new("");
        let token = Token::generate(TokenType::ApiKey);
        let stored = hasher.hash(&token);
        assert!(hasher.verify(&token, &stored));
        assert!(!TokenHasher::new("another key").verify(&token, &stored));
        // The same secret under another ID or type does not match.
        let moved = Token::parse(&format!(
            "rak.{}.{}",
            random_secret(ID_BYTES),
            token.secret()
        ))
        .unwrap();
        assert!(!hasher.verify(&moved, &stored));
        let retyped = Token::parse(&format!("rst.{}.{}", token.id(), token.secret())).unwrap();
        assert!(!hasher.verify(&retyped, &stored));
        assert!(!hasher.verify(&token, "not hex"));
        assert!(!hasher.verify(&token, ""));
        assert!(!format!("{hasher:?}").contains("roster"));
    }

    fn token_type() -> impl Strategy<Value = TokenType> {
        prop::sample::select(TokenType::ALL.to_vec())
    }

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        for kind in TokenType::ALL {
            let token = Token::generate(kind).to_string();
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3);
            assert_eq!(parts[0], kind.as_str());
            assert_eq!(parts[1].len(), ID_CHARS);
            assert_eq!(parts[2].len(), SECRET_CHARS);
            assert!(parts[1..].iter().all(|p| {
                p.bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
            }));
        }
    }

    #[test]
    fn token_types_parse_from_their_prefix() {
        for kind in TokenType::ALL {
            assert_eq!(kind.as_str().parse::<TokenType>(), Ok(kind));
        }
        assert_eq!("RAK".parse::<TokenType>(), Err(TokenError::UnknownType));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let token = Token::generate(TokenType::ApiKey);
        let debug = format!("{token:?}");
        assert!(!debug.contains(token.secret()));
        assert!(debug.contains(token.id()));
    }

    #[test]
    fn token_with_uppercase_characters_is_rejected() {
        let token = Token::generate(TokenType::Session).to_string();
        assert_eq!(
            Token::parse(&token.to_uppercase()),
            Err(TokenError::UnknownType)
        );
        let upper_secret = format!(
            "rst.{}.{}",
            &token[4..4 + ID_CHARS],
            token[5 + ID_CHARS..].to_uppercase()
        );
        assert_eq!(Token::parse(&upper_secret), Err(TokenError::InvalidSecret));
    }

    #[test]
    fn token_with_wrong_part_count_is_rejected() {
        let token = Token::generate(TokenType::ApiKey).to_string();
        assert_eq!(Token::parse(""), Err(TokenError::Malformed));
        assert_eq!(Token::parse("rak"), Err(TokenError::Malformed));
        assert_eq!(
            Token::parse(&format!("{token}.x")),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn secret_with_non_zero_trailing_bits_is_rejected() {
        let token = Token::generate(TokenType::ApiKey);
        // The last character of a 32-byte secret carries one data bit; `7`
        // sets the four padding bits as well.
        let mut secret = token.secret()[..SECRET_CHARS - 1].to_owned();
        secret.push('7');
        let s = format!("rak.{}.{secret}", token.id());
        assert_eq!(Token::parse(&s), Err(TokenError::InvalidSecret));
    }

    #[test]
    fn secret_digest_is_lowercase_hex_sha256() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(verify_secret("abc", &hash_secret("abc")));
        assert!(!verify_secret("abd", &hash_secret("abc")));
        assert!(!verify_secret("abc", "not hex"));
        assert!(!verify_secret("abc", ""));
        assert!(!verify_secret("abc", &hash_secret("abc")[..62]));
    }

    #[test]
    fn random_secret_of_32_bytes_has_52_characters() {
        assert_eq!(random_secret(32).len(), 52);
        assert_eq!(random_secret(0), "");
        assert_ne!(random_secret(32), random_secret(32));
    }

    #[test]
    fn random_code_has_the_requested_number_of_digits() {
        for digits in [0, 1, 6, 12] {
            let code = random_code(digits);
            assert_eq!(code.len(), digits);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    proptest! {
        #[test]
        fn parsing_any_string_never_panics(s in any::<String>()) {
            let _ = Token::parse(&s);
        }

        #[test]
        fn parsing_token_shaped_strings_never_panics(
            s in "(rak|rst|rlt|[a-z]{0,4})\\.[a-z2-7A-Z0-9=]{0,30}\\.[a-z2-7A-Z0-9=.]{0,60}",
        ) {
            if let Ok(token) = Token::parse(&s) {
                prop_assert_eq!(token.to_string(), s);
            }
        }

        #[test]
        fn generated_tokens_roundtrip_through_their_string(kind in token_type()) {
            let token = Token::generate(kind);
            let parsed = Token::parse(&token.to_string()).unwrap();
            prop_assert_eq!(parsed, token);
        }

        #[test]
        fn any_single_character_change_to_a_secret_fails_verification(
            kind in token_type(),
            index in 0..SECRET_CHARS,
            replacement in any::<char>(),
        ) {
            let token = Token::generate(kind);
            let stored = hash_secret(token.secret());
            prop_assert!(verify_secret(token.secret(), &stored));
            let mut changed: Vec<char> = token.secret().chars().collect();
            prop_assume!(changed[index] != replacement);
            changed[index] = replacement;
            let changed: String = changed.into_iter().collect();
            prop_assert!(!verify_secret(&changed, &stored));
        }
    }
}

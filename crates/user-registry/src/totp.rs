//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP):
//! HMAC-SHA-1, 6 digits, 30-second steps, which is what authenticator apps
//! accept from an `otpauth://` URI without further parameters. Pure
//! functions; the secret's storage is `factor_keys`.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// Secret bytes: 160 bits, the size of an HMAC-SHA-1 output (RFC 4226
/// section 4 recommends it).
pub const SECRET_BYTES: usize = 20;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Seconds of a time step.
pub const STEP_SECS: i64 = 30;
/// Steps accepted on either side of the current one, for clocks that
/// drift and codes typed near the end of their step.
pub const WINDOW: i64 = 1;

/// A fresh random secret.
pub fn generate_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// The secret as authenticator apps take it: base32 without padding.
pub fn encode_secret(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// The time step of a Unix time.
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The HOTP value of `secret` at counter `step` with `digits` digits
/// (RFC 4226 section 5.3, dynamic truncation).
pub fn hotp(secret: &[u8], step: u64, digits: u32) -> u32 {
    let mut mac =
        <Hmac<Sha1> as hmac::Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

/// The code of `step`, zero-padded to [`DIGITS`].
pub fn code_at(secret: &[u8], step: i64) -> String {
    let value = hotp(secret, u64::try_from(step).unwrap_or(0), DIGITS);
    format!("{value:0width$}", width = DIGITS as usize)
}

/// The step `code` belongs to, among the steps around `now_step` that are
/// later than `last_step` (a step once accepted is never accepted again,
/// nor any before it, so a code seen over a shoulder is worth nothing).
/// Every candidate is compared, in constant time.
pub fn verify(secret: &[u8], code: &str, now_step: i64, last_step: i64) -> Option<i64> {
    let mut found = None;
    for step in (now_step - WINDOW)..=(now_step + WINDOW) {
        let expected = code_at(secret, step);
        let matches = bool::from(expected.as_bytes().ct_eq(code.as_bytes()));
        if matches && step > last_step && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Whether `code` looks like a TOTP code: exactly [`DIGITS`] ASCII digits.
pub fn is_well_formed(code: &str) -> bool {
    code.len() == DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit())
}

/// The `otpauth://` URI of Google Authenticator's key URI format, which
/// every common app reads: issuer and account name in the label and the
/// issuer again as a parameter.
pub fn uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let issuer_enc = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer_enc}:{}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        percent_encode(account),
        encode_secret(secret),
    )
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: 8-digit codes of the ASCII secret
    /// "12345678901234567890" at the given Unix times.
    #[test]
    fn the_rfc_6238_test_vectors_give_their_codes() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59_i64, 94287082_u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            let step = u64::try_from(step_of(time)).unwrap();
            assert_eq!(hotp(secret, step, 8), code, "at {time}");
        }
    }

    #[test]
    fn a_code_is_accepted_within_one_step_and_never_at_or_before_the_last_accepted() {
        let secret = generate_secret();
        let now = step_of(1_700_000_000);
        let code = code_at(&secret, now);
        assert_eq!(verify(&secret, &code, now, 0), Some(now));
        assert_eq!(verify(&secret, &code, now + 1, 0), Some(now));
        assert_eq!(verify(&secret, &code, now - 1, 0), Some(now));
        assert_eq!(verify(&secret, &code, now + 2, 0), None);
        assert_eq!(verify(&secret, &code, now, now), None);
        assert_eq!(verify(&secret, &code, now, now - 1), Some(now));
        assert_eq!(verify(&secret, "000000x", now, 0), None);
    }

    #[test]
    fn the_uri_carries_the_base32_secret_and_escapes_the_label() {
        let uri = uri("Roster", "alice smith", &[0u8; 20]);
        assert!(uri.starts_with("otpauth://totp/Roster:alice%20smith?secret=AAAA"));
        assert!(uri.contains("&issuer=Roster&"));
        assert!(is_well_formed("012345"));
        assert!(!is_well_formed("12345"));
        assert!(!is_well_formed("12345a"));
    }
}

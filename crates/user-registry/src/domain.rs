//! The user registry's domain types. Each wraps a value that has passed its
//! rules once, at the edge, through its one `parse()` constructor; past the
//! API layer nothing re-checks them.
//!
//! A violation names the leaf field (`user_id`, `name`); callers place it
//! under the request path with [`FieldViolation::under`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use roster_core::validation::{FieldViolation, max_chars, no_control_chars, required};
use roster_proto::v1::{Picture, UserRequiredAction};
use serde::Deserialize;

use crate::store::{Keyset, OrderValue};

/// Longest user ID, provider ID or attribute key.
pub const MAX_ID_CHARS: usize = 36;
/// Most attributes on one user.
pub const MAX_ATTRIBUTES: usize = 10;
/// Longest attribute value.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 200;
/// Largest embedded profile picture.
pub const MAX_PICTURE_BYTES: usize = 256 * 1024;
/// Most picture sizes (URLs) on one user; with the URL length this bounds
/// the picture's share of every event about the user.
pub const MAX_PICTURE_SIZES: usize = 16;
/// Longest profile picture URL.
pub const MAX_PICTURE_URL_CHARS: usize = 2048;
/// MIME types accepted for embedded profile pictures.
pub const PICTURE_MIME_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

const ID_RULE: &str = "must be 2 to 36 lowercase letters, digits and single hyphens, \
                       starting and ending with a letter or digit";

// The Things Stack's ID pattern, kept as is so exported IDs import
// unchanged. User IDs may be two characters long where other IDs need three.
static ID_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9](?:[-]?[a-z0-9]){1,}$").expect("the ID pattern compiles")
});

// User IDs share a namespace with URL paths, mail local parts and
// organisation IDs, so names that could impersonate the platform are
// reserved.
static BLOCKLIST: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("blocklist.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
});

/// Common passwords, lowercased and sorted bytewise, one a line: the list
/// Django ships (BSD-3-Clause; see `scripts/common-passwords.sh`, which
/// regenerates the file).
const COMMON_PASSWORDS_TEXT: &str = include_str!("common-passwords.txt");

static COMMON_PASSWORDS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS_TEXT.lines().collect());

/// Whether `lowercase` (a lowercased password) is a common password.
fn is_common_password(lowercase: &str) -> bool {
    COMMON_PASSWORDS.binary_search(&lowercase).is_ok()
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

fn check_id_shape(field: &str, value: &str) -> Result<(), FieldViolation> {
    required(field, value)?;
    max_chars(field, value, MAX_ID_CHARS)?;
    if !ID_PATTERN.is_match(value) {
        return Err(FieldViolation::new(field, ID_RULE));
    }
    Ok(())
}

/// Refuses every control character, newlines included: for one-line values.
fn no_control_chars_at_all(field: &str, value: &str) -> Result<(), FieldViolation> {
    if value.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters or line breaks",
        ));
    }
    Ok(())
}

/// A user ID: 2 to 36 lowercase letters, digits and single hyphens, not a
/// reserved word.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

string_newtype!(UserId);

impl UserId {
    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        const FIELD: &str = "user_id";
        check_id_shape(FIELD, value)?;
        if BLOCKLIST.contains(value) {
            return Err(FieldViolation::new(FIELD, "is reserved"));
        }
        Ok(Self(value.to_owned()))
    }
}

/// The ID of an external identity provider: the user ID rules without the
/// reserved words, since providers are named by administrators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(String);

string_newtype!(ProviderId);

impl ProviderId {
    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        check_id_shape("provider_id", value)?;
        Ok(Self(value.to_owned()))
    }
}

/// A user's identifier at an external identity provider (an OIDC `sub`, for
/// example): opaque, so only its length and control characters are checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalId(String);

string_newtype!(ExternalId);

impl ExternalId {
    pub const MAX_CHARS: usize = 250;

    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        const FIELD: &str = "external_id";
        required(FIELD, value)?;
        max_chars(FIELD, value, Self::MAX_CHARS)?;
        no_control_chars_at_all(FIELD, value)?;
        Ok(Self(value.to_owned()))
    }
}

/// An email address, kept as the user typed it (less surrounding spaces).
/// Uniqueness is decided on [`Email::normalized`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

string_newtype!(Email);

impl Email {
    pub const MAX_CHARS: usize = 254;
    pub const MAX_LOCAL_PART_CHARS: usize = 64;

    /// Parses `local@domain`, trimmed of surrounding whitespace. Accepted:
    ///
    /// - at most 254 characters in all, with no whitespace or control
    ///   characters;
    /// - a local part of at most 64 characters that is a dot-atom: one or
    ///   more atoms joined by single dots, so no leading, trailing or
    ///   doubled dot. An atom is one or more ASCII letters, ASCII digits,
    ///   ``!#$%&'*+-/=?^_`{|}~`` or non-ASCII alphabetic or numeric
    ///   characters (for internationalised local parts);
    /// - a domain of at least two dot-separated labels of ASCII letters,
    ///   digits and inner hyphens, each at most 63 characters.
    ///
    /// Deliberately stricter than RFC 5322: no quoted local parts, comments
    /// or address literals, which mail clients mangle. Their delimiters
    /// (``,;<>"():[]\``) would also let one address smuggle another
    /// recipient or header into a message. Internationalised domains come
    /// in punycode.
    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        const FIELD: &str = "primary_email_address";
        let value = value.trim();
        required(FIELD, value)?;
        max_chars(FIELD, value, Self::MAX_CHARS)?;
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(FieldViolation::new(
                FIELD,
                "must not contain spaces or control characters",
            ));
        }
        let mut parts = value.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(FieldViolation::new(FIELD, "must contain exactly one `@`"));
        };
        if local.is_empty() {
            return Err(FieldViolation::new(FIELD, "needs a name before the `@`"));
        }
        if local.chars().count() > Self::MAX_LOCAL_PART_CHARS {
            return Err(FieldViolation::new(
                FIELD,
                format!(
                    "the part before the `@` must be at most {} characters",
                    Self::MAX_LOCAL_PART_CHARS
                ),
            ));
        }
        if local.split('.').any(str::is_empty) {
            return Err(FieldViolation::new(
                FIELD,
                "the part before the `@` must not start or end with a dot \
                 or have two dots in a row",
            ));
        }
        if !local.chars().all(|c| c == '.' || is_atext(c)) {
            return Err(FieldViolation::new(
                FIELD,
                format!(
                    "the part before the `@` may only contain letters, digits, \
                     dots and {ATEXT_SPECIALS}"
                ),
            ));
        }
        if !is_domain_name(domain) {
            return Err(FieldViolation::new(
                FIELD,
                "needs a domain like example.com after the `@`",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The lowercased address: two addresses that differ only in case
    /// belong to the same person in practice.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

/// The RFC 5322 `atext` characters besides ASCII letters and digits.
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// Whether `c` may appear in an atom of an email local part: RFC 5322
/// `atext`, widened to the non-ASCII letters and digits of internationalised
/// addresses (a subset of what RFC 6531 allows).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || ATEXT_SPECIALS.contains(c)
        || (!c.is_ascii() && c.is_alphanumeric())
}

/// At least two dot-separated labels of ASCII letters, digits and inner
/// hyphens, each at most 63 characters.
fn is_domain_name(domain: &str) -> bool {
    let mut labels = 0;
    for label in domain.split('.') {
        labels += 1;
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return false;
        }
    }
    labels >= 2
}

/// What a password must look like. Configurable per deployment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    /// Fewest characters (not bytes).
    pub min_length: usize,
    /// Most characters; bounds the work of hashing.
    pub max_length: usize,
    /// Fewest uppercase letters.
    pub min_uppercase: usize,
    /// Fewest digits.
    pub min_digits: usize,
    /// Fewest characters that are neither letters, digits nor spaces.
    pub min_special: usize,
    /// Refuse the passwords attackers try first.
    pub reject_common: bool,
}

/// The defaults follow OWASP ASVS 4.0 section 2.1: at least 12 characters,
/// at least 64 allowed (128 here), any printable Unicode and spaces, no
/// composition rules, and common passwords refused.
impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            max_length: 128,
            min_uppercase: 0,
            min_digits: 0,
            min_special: 0,
            reject_common: true,
        }
    }
}

impl PasswordPolicy {
    /// Checks a new password for `user_id`. The reason never quotes the
    /// password.
    pub fn check(&self, password: &str, user_id: &UserId) -> Result<(), FieldViolation> {
        const FIELD: &str = "password";
        required(FIELD, password)?;
        let length = password.chars().count();
        if length > self.max_length {
            return Err(FieldViolation::new(
                FIELD,
                format!("must be at most {} characters", self.max_length),
            ));
        }
        if length < self.min_length {
            return Err(FieldViolation::new(
                FIELD,
                format!("must be at least {} characters", self.min_length),
            ));
        }
        let count = |pred: fn(&char) -> bool| password.chars().filter(pred).count();
        let minimums = [
            (
                self.min_uppercase,
                count(|c| c.is_uppercase()),
                "uppercase letter",
            ),
            (self.min_digits, count(|c| c.is_numeric()), "digit"),
            (self.min_special, count(is_special), "special character"),
        ];
        for (min, found, what) in minimums {
            if found < min {
                let plural = if min == 1 { "" } else { "s" };
                return Err(FieldViolation::new(
                    FIELD,
                    format!("must contain at least {min} {what}{plural}"),
                ));
            }
        }
        let lowercase = password.to_lowercase();
        if lowercase.contains(user_id.as_str()) {
            return Err(FieldViolation::new(FIELD, "must not contain the user ID"));
        }
        if self.reject_common && is_common_password(&lowercase) {
            return Err(FieldViolation::new(
                FIELD,
                "is one of the most common passwords",
            ));
        }
        Ok(())
    }

    /// Checks that a new password neither is nor contains the user's email
    /// address, in any case. Separate from [`PasswordPolicy::check`]
    /// because some flows learn the address only after authenticating the
    /// caller, and must not answer anyone else about it.
    pub fn check_against_email(&self, password: &str, email: &str) -> Result<(), FieldViolation> {
        let email = email.to_lowercase();
        if !email.is_empty() && password.to_lowercase().contains(&email) {
            return Err(FieldViolation::new(
                "password",
                "must not contain the email address",
            ));
        }
        Ok(())
    }
}

fn is_special(c: &char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace()
}

/// A display name: at most 50 characters on one line. May be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Name(String);

string_newtype!(Name);

impl Name {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        const FIELD: &str = "name";
        max_chars(FIELD, value, Self::MAX_CHARS)?;
        no_control_chars_at_all(FIELD, value)?;
        Ok(Self(value.to_owned()))
    }
}

/// A free-text description: at most 2000 characters; line breaks and tabs
/// allowed. May be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Description(String);

string_newtype!(Description);

impl Description {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        const FIELD: &str = "description";
        max_chars(FIELD, value, Self::MAX_CHARS)?;
        no_control_chars(FIELD, value)?;
        Ok(Self(value.to_owned()))
    }
}

/// Why an administrator set a user's state: at most 128 characters. May be
/// empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StateDescription(String);

string_newtype!(StateDescription);

impl StateDescription {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        const FIELD: &str = "state_description";
        max_chars(FIELD, value, Self::MAX_CHARS)?;
        no_control_chars(FIELD, value)?;
        Ok(Self(value.to_owned()))
    }
}

/// Why an administrator locked or deactivated an account: at most 128
/// characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleReason(String);

string_newtype!(LifecycleReason);

impl LifecycleReason {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(value: &str) -> Result<Self, FieldViolation> {
        const FIELD: &str = "reason";
        max_chars(FIELD, value, Self::MAX_CHARS)?;
        no_control_chars(FIELD, value)?;
        Ok(Self(value.to_owned()))
    }
}

/// The actions a user must complete: each known, none unspecified, none
/// twice; kept in enum-number order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequiredActions(Vec<UserRequiredAction>);

impl RequiredActions {
    pub fn parse(actions: &[i32]) -> Result<Self, FieldViolation> {
        const FIELD: &str = "actions";
        let mut out = Vec::with_capacity(actions.len());
        for (i, number) in actions.iter().enumerate() {
            let field = format!("{FIELD}[{i}]");
            match UserRequiredAction::try_from(*number) {
                Ok(UserRequiredAction::Unspecified) | Err(_) => {
                    return Err(FieldViolation::new(
                        field,
                        format!("{number} is not a required action"),
                    ));
                }
                Ok(action) if out.contains(&action) => {
                    return Err(FieldViolation::new(field, "repeats an action"));
                }
                Ok(action) => out.push(action),
            }
        }
        out.sort_unstable_by_key(|a| *a as i32);
        Ok(Self(out))
    }

    pub fn contains(&self, action: UserRequiredAction) -> bool {
        self.0.contains(&action)
    }

    pub fn iter(&self) -> impl Iterator<Item = UserRequiredAction> + '_ {
        self.0.iter().copied()
    }
}

/// A user's free key/value attributes, ordered by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes(BTreeMap<String, String>);

impl Attributes {
    /// Checks the pairs in key order, so the same input always reports the
    /// same violation.
    pub fn parse(attributes: &HashMap<String, String>) -> Result<Self, FieldViolation> {
        const FIELD: &str = "attributes";
        if attributes.len() > MAX_ATTRIBUTES {
            return Err(FieldViolation::new(
                FIELD,
                format!("must have at most {MAX_ATTRIBUTES} entries"),
            ));
        }
        let sorted: BTreeMap<&String, &String> = attributes.iter().collect();
        for (key, value) in &sorted {
            if check_id_shape(FIELD, key).is_err() {
                // The key is not a safe field name, so it is quoted, escaped
                // and shortened in the reason instead.
                let shown: String = key.chars().take(MAX_ID_CHARS + 1).collect();
                return Err(FieldViolation::new(
                    FIELD,
                    format!("key {shown:?} {ID_RULE}"),
                ));
            }
            let field = format!("{FIELD}.{key}");
            max_chars(&field, value, MAX_ATTRIBUTE_VALUE_CHARS)?;
            no_control_chars(&field, value)?;
        }
        Ok(Self(
            sorted
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Attributes> for HashMap<String, String> {
    fn from(value: Attributes) -> Self {
        value.0.into_iter().collect()
    }
}

/// Checks a profile picture: embedded data must be a non-empty PNG, JPEG,
/// GIF or WebP of at most 256 KiB; size URLs must be http or https and at most
/// 2048 characters. An empty picture is valid (it clears the picture).
pub fn validate_picture(picture: &Picture) -> Result<(), FieldViolation> {
    const FIELD: &str = "profile_picture";
    if let Some(embedded) = &picture.embedded {
        if !PICTURE_MIME_TYPES.contains(&embedded.mime_type.as_str()) {
            return Err(FieldViolation::new(
                FIELD,
                format!(
                    "embedded image type must be one of {}",
                    PICTURE_MIME_TYPES.join(", ")
                ),
            ));
        }
        if embedded.data.is_empty() {
            return Err(FieldViolation::new(FIELD, "embedded image data is empty"));
        }
        if embedded.data.len() > MAX_PICTURE_BYTES {
            return Err(FieldViolation::new(
                FIELD,
                "embedded image must be at most 256 KiB (larger pictures belong behind `sizes` URLs)",
            ));
        }
    }
    if picture.sizes.len() > MAX_PICTURE_SIZES {
        return Err(FieldViolation::new(
            FIELD,
            format!("at most {MAX_PICTURE_SIZES} sizes"),
        ));
    }
    let sorted: BTreeMap<&u32, &String> = picture.sizes.iter().collect();
    for (width, url) in sorted {
        if url.chars().count() > MAX_PICTURE_URL_CHARS {
            return Err(FieldViolation::new(
                FIELD,
                format!("URL for size {width} must be at most {MAX_PICTURE_URL_CHARS} characters"),
            ));
        }
        if !is_http_url(url) {
            return Err(FieldViolation::new(
                FIELD,
                format!("URL for size {width} must be an http or https URL"),
            ));
        }
    }
    Ok(())
}

/// An absolute http(s) URL with a host and no spaces or control
/// characters. The scheme is case-insensitive, as RFC 3986 says.
fn is_http_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    scheme_ok && !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A substring to search for in one field (`id_contains`, `name_contains`,
/// `description_contains`): at most 50 characters. Empty means no filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SearchText(String);

string_newtype!(SearchText);

impl SearchText {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        max_chars(field, value, Self::MAX_CHARS)?;
        no_control_chars_at_all(field, value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A `page_token`: where a keyset page starts, as the last row of the page
/// before left it. It is base64url (no padding) of a small JSON object with
/// the order it was made for, the order value and the user ID of that row.
/// It carries no secret and grants nothing: any position it names, the
/// caller could reach by paging. It is validated, not signed: a token that
/// does not decode, or names another order, is refused on `page_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    pub order: &'static str,
    pub descending: bool,
    pub after: Keyset,
}

/// The JSON inside a page token.
#[derive(serde::Serialize, Deserialize)]
struct TokenBody {
    /// The order field, and whether it is descending.
    o: String,
    d: bool,
    /// The order value of the last row (absent for `user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<TokenKey>,
    /// The user ID of the last row.
    id: String,
}

#[derive(serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TokenKey {
    Text(String),
    Int(i32),
    Bool(bool),
    /// Microseconds since the epoch.
    Micros(i64),
}

/// The longest page token accepted, in characters: a 254-character
/// address as the key is far below it.
const MAX_PAGE_TOKEN_CHARS: usize = 2048;

impl PageToken {
    const FIELD: &'static str = "page_token";

    /// The token of the page after the one that ends with `after`.
    pub fn encode(order: &str, descending: bool, after: &Keyset) -> String {
        use base64::Engine as _;
        let k = match &after.value {
            OrderValue::None => None,
            OrderValue::Text(v) => Some(TokenKey::Text(v.clone())),
            OrderValue::Int(v) => Some(TokenKey::Int(*v)),
            OrderValue::Bool(v) => Some(TokenKey::Bool(*v)),
            OrderValue::Time(v) => Some(TokenKey::Micros(v.timestamp_micros())),
        };
        let body = TokenBody {
            o: order.to_string(),
            d: descending,
            k,
            id: after.user_id.clone(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses a token sent with a request whose order is `order`
    /// (descending or not): it must have been made for that order.
    pub fn parse(
        token: &str,
        order: &'static str,
        descending: bool,
    ) -> Result<PageToken, FieldViolation> {
        use base64::Engine as _;
        let invalid = || {
            FieldViolation::new(
                Self::FIELD,
                "is not a page token this method returned; send the x-next-page-token of the previous page",
            )
        };
        if token.len() > MAX_PAGE_TOKEN_CHARS {
            return Err(invalid());
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid())?;
        let body: TokenBody = serde_json::from_slice(&json).map_err(|_| invalid())?;
        if body.o != order || body.d != descending {
            return Err(FieldViolation::new(
                Self::FIELD,
                "was made for another order; send it with the order of the request that returned it",
            ));
        }
        if body.id.is_empty()
            || body.id.chars().count() > MAX_ID_CHARS
            || body.id.chars().any(char::is_control)
        {
            return Err(invalid());
        }
        let value = match (order, body.k) {
            ("user_id", None) => OrderValue::None,
            ("name" | "primary_email_address", Some(TokenKey::Text(v)))
                if v.chars().count() <= MAX_PAGE_TOKEN_CHARS =>
            {
                OrderValue::Text(v)
            }
            ("state", Some(TokenKey::Int(v))) => OrderValue::Int(v),
            ("admin", Some(TokenKey::Bool(v))) => OrderValue::Bool(v),
            ("created_at", Some(TokenKey::Micros(v))) => {
                OrderValue::Time(chrono::DateTime::from_timestamp_micros(v).ok_or_else(invalid)?)
            }
            _ => return Err(invalid()),
        };
        Ok(PageToken {
            order,
            descending,
            after: Keyset {
                value,
                user_id: body.id,
            },
        })
    }
}

/// A metadata key: 1 to 200 characters, none of them a control character.
/// Case-sensitive; `%`, `_` and the like mean themselves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetadataKey(String);

string_newtype!(MetadataKey);

impl MetadataKey {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldViolation> {
        required(field, value)?;
        max_chars(field, value, Self::MAX_CHARS)?;
        no_control_chars_at_all(field, value)?;
        if value.chars().any(is_invisible) {
            return Err(FieldViolation::new(
                field,
                "must not contain invisible or direction-changing characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// Format and separator characters that print as nothing, or reorder what
/// follows them, so that one key could pass for another in a listing: the
/// soft hyphen, zero-width characters, bidirectional marks, embeddings,
/// overrides and isolates, the line and paragraph separators, invisible
/// operators, and the byte order mark.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Checks a metadata value: 1 to `max_bytes` bytes.
pub fn check_metadata_value(
    field: &str,
    value: &[u8],
    max_bytes: usize,
) -> Result<(), FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if value.len() > max_bytes {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max_bytes} bytes"),
        ));
    }
    Ok(())
}

/// The most metadata filters a List or SearchUsers takes.
pub const MAX_METADATA_FILTERS: usize = 10;

/// The entries of one SetUserMetadata: at least one and at most
/// `max_entries`, keys valid and distinct, values within the limit; kept in
/// key order.
#[derive(Clone, PartialEq, Eq)]
pub struct MetadataEntries(Vec<(String, Vec<u8>)>);

impl fmt::Debug for MetadataEntries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl MetadataEntries {
    pub fn parse(
        entries: &[(&str, &[u8])],
        max_entries: u64,
        max_value_bytes: usize,
    ) -> Result<Self, FieldViolation> {
        const FIELD: &str = "metadata";
        check_count(FIELD, entries.len(), max_entries)?;
        let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(entries.len());
        for (i, (key, value)) in entries.iter().enumerate() {
            let key = MetadataKey::parse(&format!("{FIELD}[{i}].key"), key)?;
            if out.iter().any(|(k, _)| k == key.as_str()) {
                return Err(FieldViolation::new(
                    format!("{FIELD}[{i}].key"),
                    "repeats a key",
                ));
            }
            check_metadata_value(&format!("{FIELD}[{i}].value"), value, max_value_bytes)?;
            out.push((key.into_string(), value.to_vec()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self(out))
    }

    pub fn as_slice(&self) -> &[(String, Vec<u8>)] {
        &self.0
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<String> {
        self.0.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// The keys of one DeleteUserMetadata: at least one and at most
/// `max_entries`, valid and distinct; kept in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataKeys(Vec<String>);

impl MetadataKeys {
    pub fn parse(keys: &[String], max_entries: u64) -> Result<Self, FieldViolation> {
        const FIELD: &str = "keys";
        check_count(FIELD, keys.len(), max_entries)?;
        let mut out: Vec<String> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let field = format!("{FIELD}[{i}]");
            let key = MetadataKey::parse(&field, key)?;
            if out.iter().any(|k| k == key.as_str()) {
                return Err(FieldViolation::new(field, "repeats a key"));
            }
            out.push(key.into_string());
        }
        out.sort();
        Ok(Self(out))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// At least one, at most `max`.
fn check_count(field: &str, count: usize, max: u64) -> Result<(), FieldViolation> {
    if count == 0 {
        return Err(FieldViolation::new(field, "needs at least one entry"));
    }
    if count as u64 > max {
        return Err(FieldViolation::new(
            field,
            format!("must have at most {max} entries (the limit per user)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_round_trips_for_every_order() {
        let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        for (order, value) in [
            ("user_id", OrderValue::None),
            ("name", OrderValue::Text("Émile \"Z\"".into())),
            (
                "primary_email_address",
                OrderValue::Text("a@example.com".into()),
            ),
            ("state", OrderValue::Int(3)),
            ("admin", OrderValue::Bool(true)),
            ("created_at", OrderValue::Time(at)),
        ] {
            let after = Keyset {
                value,
                user_id: "user-000042".into(),
            };
            for descending in [false, true] {
                let token = PageToken::encode(order, descending, &after);
                let parsed = PageToken::parse(&token, order, descending).unwrap();
                assert_eq!(parsed.after, after, "{order}");
            }
        }
    }

    #[test]
    fn a_page_token_for_another_order_or_altered_is_refused_on_page_token() {
        let after = Keyset {
            value: OrderValue::Text("Alice".into()),
            user_id: "alice".into(),
        };
        let token = PageToken::encode("name", false, &after);
        for (token, order, descending) in [
            (token.as_str(), "name", true),
            (token.as_str(), "user_id", false),
            ("not a token", "name", false),
            ("", "name", false),
            // Valid base64url of JSON of the wrong shape.
            ("eyJvIjoibmFtZSJ9", "name", false),
        ] {
            let err = PageToken::parse(token, order, descending).unwrap_err();
            assert_eq!(err.field, "page_token", "{token:?}");
        }
        let mut altered = token.clone();
        altered.insert(3, '!');
        assert!(PageToken::parse(&altered, "name", false).is_err());
        let kind = PageToken::encode(
            "state",
            false,
            &Keyset {
                value: OrderValue::Text("x".into()),
                user_id: "alice".into(),
            },
        );
        assert!(PageToken::parse(&kind, "state", false).is_err());
    }
    use proptest::prelude::*;
    use roster_proto::v1::picture::Embedded;

    fn user_id(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn field_of<T: fmt::Debug>(result: Result<T, FieldViolation>) -> String {
        result.unwrap_err().field
    }

    // User IDs

    #[test]
    fn user_id_of_two_characters_is_accepted() {
        assert_eq!(user_id("ab").as_str(), "ab");
    }

    #[test]
    fn user_id_with_inner_hyphens_and_digits_is_accepted() {
        assert!(UserId::parse("jane-doe-42").is_ok());
    }

    #[test]
    fn numeric_only_user_id_is_accepted() {
        assert!(UserId::parse("1234").is_ok());
    }

    #[test]
    fn user_id_of_36_characters_is_accepted_and_37_rejected() {
        assert!(UserId::parse(&"a".repeat(36)).is_ok());
        assert!(UserId::parse(&"a".repeat(37)).is_err());
    }

    #[test]
    fn user_id_with_uppercase_letters_is_rejected() {
        assert_eq!(field_of(UserId::parse("Jane")), "user_id");
    }

    #[test]
    fn user_id_of_one_character_is_rejected() {
        assert!(UserId::parse("a").is_err());
    }

    #[test]
    fn empty_user_id_is_rejected_as_required() {
        let v = UserId::parse("").unwrap_err();
        assert_eq!(v.field, "user_id");
        assert_eq!(v.reason, "is required");
    }

    #[test]
    fn user_id_with_leading_trailing_or_double_hyphens_is_rejected() {
        for id in ["-ab", "ab-", "a--b", "-", "--"] {
            assert!(UserId::parse(id).is_err(), "{id}");
        }
    }

    #[test]
    fn user_id_with_other_characters_is_rejected() {
        for id in [
            "jane_doe", "jane.doe", "jane doe", "jané", "jane@doe", "ab\n",
        ] {
            assert!(UserId::parse(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn reserved_user_ids_are_rejected() {
        for id in ["admin", "root", "roster", "me", "noreply", "well-known"] {
            let v = UserId::parse(id).unwrap_err();
            assert_eq!(v.field, "user_id");
            assert_eq!(v.reason, "is reserved");
        }
    }

    #[test]
    fn reserved_words_as_part_of_a_user_id_are_accepted() {
        assert!(UserId::parse("admin-jane").is_ok());
        assert!(UserId::parse("rooter").is_ok());
    }

    #[test]
    fn every_blocklisted_word_is_shaped_like_an_id() {
        assert!(BLOCKLIST.len() >= 200);
        for word in BLOCKLIST.iter() {
            assert!(check_id_shape("user_id", word).is_ok(), "{word}");
        }
    }

    #[test]
    fn provider_id_may_be_a_reserved_word() {
        assert!(ProviderId::parse("oidc").is_ok());
        assert_eq!(field_of(ProviderId::parse("Google")), "provider_id");
    }

    #[test]
    fn user_id_violation_can_be_placed_under_the_request_path() {
        let v = UserId::parse("X").unwrap_err().under("user.ids");
        assert_eq!(v.field, "user.ids.user_id");
    }

    // External IDs

    #[test]
    fn external_id_of_250_characters_is_accepted_and_251_rejected() {
        assert!(ExternalId::parse(&"x".repeat(250)).is_ok());
        assert_eq!(field_of(ExternalId::parse(&"x".repeat(251))), "external_id");
    }

    #[test]
    fn opaque_external_ids_are_accepted() {
        assert!(ExternalId::parse("auth0|5f7c8ec7c33c6c004bbafe82").is_ok());
        assert!(ExternalId::parse("https://idp.example/users/Jane Doe").is_ok());
    }

    #[test]
    fn empty_or_control_character_external_id_is_rejected() {
        assert!(ExternalId::parse("").is_err());
        assert!(ExternalId::parse("a\nb").is_err());
        assert!(ExternalId::parse("a\0b").is_err());
    }

    // Email

    #[test]
    fn ordinary_email_addresses_are_accepted() {
        for email in [
            "jane@example.com",
            "Jane.Doe+roster@mail.example.co.uk",
            "x@a-b.io",
            "o'brien@example.com",
        ] {
            assert!(Email::parse(email).is_ok(), "{email}");
        }
    }

    #[test]
    fn email_keeps_its_case_and_normalizes_to_lowercase() {
        let email = Email::parse("  Jane.Doe@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Jane.Doe@Example.COM");
        assert_eq!(email.normalized(), "jane.doe@example.com");
    }

    #[test]
    fn malformed_email_addresses_are_rejected() {
        for email in [
            "",
            "   ",
            "jane",
            "jane@",
            "@example.com",
            "jane@example",
            "jane@@example.com",
            "jane@doe@example.com",
            "jane doe@example.com",
            "jane@exa mple.com",
            "jane@example..com",
            "jane@.example.com",
            "jane@example.com.",
            "jane@-example.com",
            "jane@example-.com",
            "jane@exam_ple.com",
            "jane@exämple.com",
            "jane\r\n@example.com",
        ] {
            let v = Email::parse(email).unwrap_err();
            assert_eq!(v.field, "primary_email_address", "{email:?}");
        }
    }

    #[test]
    fn email_with_a_local_part_over_64_characters_is_rejected() {
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn email_over_254_characters_is_rejected() {
        let domain = format!(
            "{}.{}.{}.com",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63)
        );
        let ok = format!("{}@{domain}", "j".repeat(254 - 1 - domain.len()));
        assert_eq!(ok.len(), 254);
        assert!(Email::parse(&ok).is_ok());
        assert!(Email::parse(&format!("j{ok}")).is_err());
    }

    #[test]
    fn an_email_with_a_comma_in_the_local_part_is_rejected() {
        let v = Email::parse("x,victim@corp.com").unwrap_err();
        assert_eq!(v.field, "primary_email_address");
    }

    #[test]
    fn an_email_with_a_mail_delimiter_in_the_local_part_is_rejected() {
        for c in [',', ';', '<', '>', '"', '(', ')', ':', '[', ']', '\\'] {
            let email = format!("jane{c}doe@example.com");
            assert!(Email::parse(&email).is_err(), "{email}");
        }
    }

    #[test]
    fn an_email_with_a_quoted_local_part_is_rejected() {
        assert!(Email::parse("\"jane\"@example.com").is_err());
        assert!(Email::parse("\"jane doe\"@example.com").is_err());
        assert!(Email::parse("\"x@victim.com\"@example.com").is_err());
    }

    #[test]
    fn an_email_with_a_non_alphanumeric_non_ascii_character_in_the_local_part_is_rejected() {
        for email in [
            "jane\u{ff0c}doe@example.com",
            "jane\u{2022}@example.com",
            "€@example.com",
        ] {
            assert!(Email::parse(email).is_err(), "{email}");
        }
    }

    #[test]
    fn an_email_whose_local_part_starts_with_a_dot_is_rejected() {
        assert!(Email::parse(".jane@example.com").is_err());
    }

    #[test]
    fn an_email_whose_local_part_ends_with_a_dot_is_rejected() {
        assert!(Email::parse("jane.@example.com").is_err());
    }

    #[test]
    fn an_email_with_two_dots_in_a_row_in_the_local_part_is_rejected() {
        assert!(Email::parse("jane..doe@example.com").is_err());
        assert!(Email::parse(".@example.com").is_err());
    }

    #[test]
    fn an_email_with_single_dots_between_atoms_is_accepted() {
        assert!(Email::parse("first.last@example.com").is_ok());
        assert!(Email::parse("a.b.c.d@example.com").is_ok());
    }

    #[test]
    fn an_email_with_rfc_5322_specials_in_the_local_part_is_accepted() {
        for email in [
            "first.last+tag@example.com",
            "o'brien@example.com",
            "!#$%&'*+-/=?^_`{|}~@example.com",
            "user/dept=sales@example.com",
            "{tag}.x|y@example.com",
        ] {
            assert!(Email::parse(email).is_ok(), "{email}");
        }
    }

    #[test]
    fn an_email_with_non_ascii_letters_or_digits_in_the_local_part_is_accepted() {
        for email in [
            "élodie@example.com",
            "Jürgen.Groß@example.de",
            "用户@example.com",
            "δοκιμή@example.gr",
            "अजय@example.in",
        ] {
            assert!(Email::parse(email).is_ok(), "{email}");
        }
    }

    // Passwords

    #[test]
    fn password_meeting_the_default_policy_is_accepted() {
        let policy = PasswordPolicy::default();
        assert!(policy.check("Correct-Horse-7", &user_id("jane")).is_ok());
        // No composition rules: a long lowercase passphrase will do, and
        // any printable Unicode and spaces are welcome.
        assert!(
            policy
                .check("correct horse battery staple", &user_id("jane"))
                .is_ok()
        );
        assert!(
            policy
                .check("сорок два кота 🐈 в саду", &user_id("jane"))
                .is_ok()
        );
    }

    #[test]
    fn default_policy_meets_owasp_asvs_section_2_1() {
        let policy = PasswordPolicy::default();
        assert_eq!(policy.min_length, 12);
        assert!(policy.max_length >= 64);
        assert_eq!(
            (policy.min_uppercase, policy.min_digits, policy.min_special),
            (0, 0, 0)
        );
        assert!(policy.reject_common);
    }

    #[test]
    fn password_policy_defaults_apply_to_an_empty_config() {
        let policy: PasswordPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(policy, PasswordPolicy::default());
        assert!(serde_json::from_str::<PasswordPolicy>(r#"{"min_len": 3}"#).is_err());
    }

    #[test]
    fn password_shorter_than_the_minimum_is_rejected() {
        let v = PasswordPolicy::default()
            .check("eleven-char", &user_id("jane"))
            .unwrap_err();
        assert_eq!(v.field, "password");
        assert_eq!(v.reason, "must be at least 12 characters");
        // Characters count, not bytes.
        assert!(
            PasswordPolicy::default()
                .check("éééé-éééé-éé", &user_id("jane"))
                .is_ok()
        );
    }

    #[test]
    fn password_longer_than_the_maximum_is_rejected() {
        let long = format!("A1{}", "x".repeat(127));
        let longest = format!("A1{}", "x".repeat(126));
        assert!(
            PasswordPolicy::default()
                .check(&long, &user_id("jane"))
                .is_err()
        );
        assert!(
            PasswordPolicy::default()
                .check(&longest, &user_id("jane"))
                .is_ok()
        );
    }

    #[test]
    fn composition_rules_apply_only_when_configured() {
        let strict = PasswordPolicy {
            min_uppercase: 1,
            min_digits: 1,
            ..PasswordPolicy::default()
        };
        let jane = user_id("jane");
        assert!(
            PasswordPolicy::default()
                .check("correct-horse", &jane)
                .is_ok()
        );
        assert!(strict.check("correct-horse-7", &jane).is_err());
        assert!(strict.check("Correct-Horse", &jane).is_err());
        assert!(strict.check("Correct-Horse-7", &jane).is_ok());
    }

    #[test]
    fn password_without_enough_special_characters_is_rejected_when_required() {
        let policy = PasswordPolicy {
            min_special: 2,
            ..PasswordPolicy::default()
        };
        assert!(policy.check("Correct-Horse7", &user_id("jane")).is_err());
        assert!(policy.check("Correct-Horse-7!", &user_id("jane")).is_ok());
        // Spaces are not special characters.
        assert!(policy.check("Correct Horse 7 -", &user_id("jane")).is_err());
    }

    #[test]
    fn password_containing_the_user_id_in_any_case_is_rejected() {
        let v = PasswordPolicy::default()
            .check("My-JANE-doe-Pass1", &user_id("jane-doe"))
            .unwrap_err();
        assert_eq!(v.reason, "must not contain the user ID");
    }

    #[test]
    fn common_passwords_are_rejected_by_default_in_any_case() {
        let jane = user_id("jane");
        let v = PasswordPolicy::default()
            .check("QwertyUIOP123", &jane)
            .unwrap_err();
        assert_eq!(v.reason, "is one of the most common passwords");
        assert!(
            PasswordPolicy::default()
                .check("1qaz2wsx3edc", &jane)
                .is_err()
        );
        let lenient = PasswordPolicy {
            reject_common: false,
            ..PasswordPolicy::default()
        };
        assert!(lenient.check("QwertyUIOP123", &jane).is_ok());
        // With a shorter minimum, the short common ones count too.
        let short = PasswordPolicy {
            min_length: 8,
            ..PasswordPolicy::default()
        };
        assert!(short.check("Password1", &jane).is_err());
        assert!(short.check("Correct-Horse-7", &jane).is_ok());
    }

    #[test]
    fn common_password_list_is_lowercase_sorted_and_large() {
        assert!(
            COMMON_PASSWORDS.len() >= 10_000,
            "{}",
            COMMON_PASSWORDS.len()
        );
        for p in COMMON_PASSWORDS.iter() {
            assert_eq!(*p, p.to_lowercase());
        }
        assert!(COMMON_PASSWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn password_equal_to_or_containing_the_email_is_rejected() {
        let policy = PasswordPolicy::default();
        for password in ["Jane.Doe@Example.com", "my jane.doe@example.com pass"] {
            let v = policy
                .check_against_email(password, "jane.doe@example.com")
                .unwrap_err();
            assert_eq!(v.field, "password");
            assert_eq!(v.reason, "must not contain the email address");
        }
        assert!(
            policy
                .check_against_email("Correct-Horse-7", "jane.doe@example.com")
                .is_ok()
        );
    }

    #[test]
    fn password_violation_never_quotes_the_password() {
        let v = PasswordPolicy::default()
            .check("sEcretword", &user_id("jane"))
            .unwrap_err();
        assert!(!v.reason.contains("sEcretword"));
    }

    // Texts

    #[test]
    fn name_of_50_characters_is_accepted_and_51_rejected() {
        assert!(Name::parse(&"é".repeat(50)).is_ok());
        assert_eq!(field_of(Name::parse(&"é".repeat(51))), "name");
    }

    #[test]
    fn name_with_a_line_break_is_rejected() {
        assert!(Name::parse("Jane\nDoe").is_err());
        assert!(Name::parse("Jane\tDoe").is_err());
    }

    #[test]
    fn empty_name_is_accepted() {
        assert!(Name::parse("").is_ok());
    }

    #[test]
    fn description_may_span_lines_but_not_contain_other_control_characters() {
        assert!(Description::parse("line one\nline two\twith a tab").is_ok());
        assert_eq!(field_of(Description::parse("bell\u{7}")), "description");
    }

    #[test]
    fn description_over_2000_characters_is_rejected() {
        assert!(Description::parse(&"d".repeat(2000)).is_ok());
        assert!(Description::parse(&"d".repeat(2001)).is_err());
    }

    #[test]
    fn state_description_over_128_characters_is_rejected() {
        assert!(StateDescription::parse(&"s".repeat(128)).is_ok());
        assert_eq!(
            field_of(StateDescription::parse(&"s".repeat(129))),
            "state_description"
        );
    }

    #[test]
    fn search_text_names_the_field_it_came_from() {
        assert!(SearchText::parse("name_contains", "jan").is_ok());
        assert!(SearchText::parse("name_contains", "").unwrap().is_empty());
        assert_eq!(
            field_of(SearchText::parse("name_contains", &"n".repeat(51))),
            "name_contains"
        );
    }

    // Attributes

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ten_valid_attributes_are_accepted() {
        let pairs: HashMap<String, String> = (0..10)
            .map(|i| (format!("key-{i}"), "v".repeat(200)))
            .collect();
        let attributes = Attributes::parse(&pairs).unwrap();
        assert_eq!(attributes.len(), 10);
        assert_eq!(HashMap::from(attributes), pairs);
    }

    #[test]
    fn eleven_attributes_are_rejected() {
        let pairs: HashMap<String, String> = (0..11)
            .map(|i| (format!("key-{i}"), String::new()))
            .collect();
        assert_eq!(field_of(Attributes::parse(&pairs)), "attributes");
    }

    #[test]
    fn attribute_key_may_be_a_reserved_word() {
        assert!(Attributes::parse(&map(&[("admin", "yes")])).is_ok());
    }

    #[test]
    fn attribute_with_an_invalid_key_is_rejected_under_attributes() {
        let v = Attributes::parse(&map(&[("Bad_Key", "x")])).unwrap_err();
        assert_eq!(v.field, "attributes");
        assert!(v.reason.contains("Bad_Key"));
        assert!(Attributes::parse(&map(&[(&"k".repeat(37), "x")])).is_err());
    }

    #[test]
    fn attribute_with_a_long_value_is_rejected_under_its_key() {
        let v = Attributes::parse(&map(&[("team", &"v".repeat(201))])).unwrap_err();
        assert_eq!(v.field, "attributes.team");
    }

    // Pictures

    fn embedded(mime_type: &str, data: Vec<u8>) -> Picture {
        Picture {
            embedded: Some(Embedded {
                mime_type: mime_type.to_owned(),
                data,
            }),
            sizes: HashMap::new(),
        }
    }

    fn sized(url: &str) -> Picture {
        Picture {
            embedded: None,
            sizes: HashMap::from([(256, url.to_owned())]),
        }
    }

    #[test]
    fn empty_picture_is_accepted() {
        assert!(validate_picture(&Picture::default()).is_ok());
    }

    #[test]
    fn embedded_picture_of_each_allowed_type_is_accepted() {
        for mime in PICTURE_MIME_TYPES {
            assert!(validate_picture(&embedded(mime, vec![1, 2, 3])).is_ok());
        }
    }

    #[test]
    fn embedded_picture_of_another_type_is_rejected() {
        for mime in ["image/svg+xml", "text/html", "", "IMAGE/PNG"] {
            let v = validate_picture(&embedded(mime, vec![1])).unwrap_err();
            assert_eq!(v.field, "profile_picture");
        }
    }

    #[test]
    fn embedded_picture_without_data_is_rejected() {
        assert!(validate_picture(&embedded("image/png", Vec::new())).is_err());
    }

    #[test]
    fn embedded_picture_over_8_mib_is_rejected() {
        assert!(validate_picture(&embedded("image/png", vec![0; MAX_PICTURE_BYTES])).is_ok());
        assert!(validate_picture(&embedded("image/png", vec![0; MAX_PICTURE_BYTES + 1])).is_err());
    }

    #[test]
    fn a_picture_with_too_many_sizes_is_rejected() {
        let sizes = |n: u32| Picture {
            embedded: None,
            sizes: (1..=n)
                .map(|w| (w, format!("https://pictures.example.com/{w}.png")))
                .collect(),
        };
        assert!(validate_picture(&sizes(MAX_PICTURE_SIZES as u32)).is_ok());
        let err = validate_picture(&sizes(MAX_PICTURE_SIZES as u32 + 1)).unwrap_err();
        assert_eq!(err.field, "profile_picture");
    }

    #[test]
    fn picture_urls_must_be_http_or_https() {
        assert!(validate_picture(&sized("https://cdn.example.com/a.png")).is_ok());
        assert!(validate_picture(&sized("HTTP://cdn.example.com/a.png?x=1")).is_ok());
        for url in [
            "",
            "ftp://example.com/a.png",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "https://",
            "https:///a.png",
            "https://example.com/a b.png",
            "//example.com/a.png",
        ] {
            assert!(validate_picture(&sized(url)).is_err(), "{url}");
        }
    }

    #[test]
    fn picture_url_over_2048_characters_is_rejected() {
        let base = "https://example.com/";
        assert!(
            validate_picture(&sized(&format!("{base}{}", "a".repeat(2048 - base.len())))).is_ok()
        );
        assert!(
            validate_picture(&sized(&format!("{base}{}", "a".repeat(2049 - base.len())))).is_err()
        );
    }

    // Properties

    fn id_like() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z0-9-]{0,40}", "[a-zA-Z0-9_. -]{0,40}"]
    }

    fn valid_id() -> impl Strategy<Value = String> {
        "[a-z0-9](-?[a-z0-9]){1,17}"
    }

    fn email_like() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ ]?[a-zA-Z0-9.+@_-]{0,70}@[a-zA-Z0-9.@-]{0,30}[ ]?",
            "[a-z]{1,70}@[a-z-]{0,70}(\\.[a-z0-9-]{0,70}){0,4}",
            // Local parts mixing atext, dots, mail delimiters and non-ASCII.
            "[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~,;<>\"():\\[\\]\\\\@ -]{0,20}@example\\.com",
            "[a-zà-ÿΑ-ω.,;<>\u{2022}\u{ff0c}]{0,20}@example\\.com",
        ]
    }

    /// A dot-atom, built independently of [`is_atext`].
    fn dot_atom() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~à-öø-ÿ-]{1,10}(\\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}){0,4}"
    }

    /// The dot-atom rule's characters, restated apart from [`is_atext`].
    fn dot_atom_char(c: char) -> bool {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && c.is_alphanumeric())
    }

    fn no_control(s: &str) -> bool {
        !s.chars().any(char::is_control)
    }

    fn picture() -> impl Strategy<Value = Picture> {
        let mime = prop_oneof![
            prop::sample::select(PICTURE_MIME_TYPES.to_vec()).prop_map(str::to_owned),
            any::<String>(),
        ];
        let embedded = prop::option::of(
            (mime, prop::collection::vec(any::<u8>(), 0..4))
                .prop_map(|(mime_type, data)| Embedded { mime_type, data }),
        );
        let url = prop_oneof![any::<String>(), "(https?|HTTPS|ftp|)(://)?[a-z./ ]{0,20}",];
        let sizes = prop::collection::hash_map(any::<u32>(), url, 0..4);
        (embedded, sizes).prop_map(|(embedded, sizes)| Picture { embedded, sizes })
    }

    #[test]
    fn required_actions_are_known_and_each_given_once() {
        let parsed = RequiredActions::parse(&[2, 1]).unwrap();
        assert!(parsed.contains(UserRequiredAction::UpdatePassword));
        assert!(parsed.contains(UserRequiredAction::ValidateEmail));
        assert!(RequiredActions::parse(&[]).unwrap().0.is_empty());
        assert_eq!(field_of(RequiredActions::parse(&[1, 0])), "actions[1]");
        assert_eq!(field_of(RequiredActions::parse(&[99])), "actions[0]");
        assert_eq!(field_of(RequiredActions::parse(&[1, 2, 1])), "actions[2]");
        assert!(LifecycleReason::parse(&"r".repeat(128)).is_ok());
        assert_eq!(field_of(LifecycleReason::parse(&"r".repeat(129))), "reason");
        assert_eq!(field_of(LifecycleReason::parse("a\u{7}b")), "reason");
    }

    proptest! {
        #[test]
        fn parsing_lifecycle_input_never_panics(reason in ".*", actions in proptest::collection::vec(proptest::num::i32::ANY, 0..6)) {
            if let Ok(r) = LifecycleReason::parse(&reason) {
                prop_assert!(r.as_str().chars().count() <= LifecycleReason::MAX_CHARS);
            }
            if let Ok(parsed) = RequiredActions::parse(&actions) {
                prop_assert!(parsed.0.len() <= 2);
            }
        }

        #[test]
        fn accepted_user_ids_match_the_pattern_and_are_not_reserved(s in id_like()) {
            if let Ok(id) = UserId::parse(&s) {
                prop_assert!(ID_PATTERN.is_match(id.as_str()));
                prop_assert!(id.as_str().len() <= MAX_ID_CHARS);
                prop_assert!(!BLOCKLIST.contains(id.as_str()));
                prop_assert_eq!(id.as_str(), s.as_str());
            }
        }

        #[test]
        fn user_ids_matching_the_pattern_are_accepted_unless_reserved(s in valid_id()) {
            prop_assert_eq!(UserId::parse(&s).is_ok(), !BLOCKLIST.contains(s.as_str()));
        }

        #[test]
        fn accepted_provider_ids_match_the_pattern(s in id_like()) {
            if let Ok(id) = ProviderId::parse(&s) {
                prop_assert!(ID_PATTERN.is_match(id.as_str()));
                prop_assert!(id.as_str().len() <= MAX_ID_CHARS);
            }
        }

        #[test]
        fn accepted_external_ids_are_short_and_free_of_control_characters(s in any::<String>()) {
            if let Ok(id) = ExternalId::parse(&s) {
                let chars = id.as_str().chars().count();
                prop_assert!((1..=ExternalId::MAX_CHARS).contains(&chars));
                prop_assert!(no_control(id.as_str()));
            }
        }

        #[test]
        fn accepted_emails_follow_the_rules(s in email_like()) {
            if let Ok(email) = Email::parse(&s) {
                let e = email.as_str();
                prop_assert_eq!(e, s.trim());
                prop_assert!(e.chars().count() <= Email::MAX_CHARS);
                prop_assert!(!e.chars().any(|c| c.is_whitespace() || c.is_control()));
                let (local, domain) = e.split_once('@').unwrap();
                prop_assert!(!domain.contains('@'));
                prop_assert!(!local.is_empty() && local.chars().count() <= 64);
                // The local part is a dot-atom.
                prop_assert!(local.split('.').all(|atom| !atom.is_empty()));
                prop_assert!(local.chars().all(|c| c == '.' || dot_atom_char(c)));
                prop_assert!(!local.contains([',', ';', '<', '>', '"', '(', ')', ':', '[', ']', '\\']));
                prop_assert!(domain.contains('.'));
                prop_assert!(domain.split('.').all(|l| !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
                // Parsing is idempotent, and normalizing keeps it valid.
                prop_assert_eq!(Email::parse(e).unwrap(), email.clone());
                // Except for `İ`, whose lowercase gains a combining dot and
                // so a character outside the dot-atom rule. The normalized
                // form is only a lookup key and is never parsed.
                if !e.contains('\u{130}') {
                    prop_assert!(Email::parse(&email.normalized()).is_ok());
                }
            }
        }

        #[test]
        fn emails_with_a_dot_atom_local_part_are_accepted(local in dot_atom()) {
            let email = format!("{local}@example.com");
            prop_assert!(Email::parse(&email).is_ok(), "{}", email);
        }

        #[test]
        fn accepted_passwords_meet_the_policy(
            password in prop_oneof![any::<String>(), "[a-zA-Z0-9 !-]{0,20}", "[a-z0-9]{8,16}"],
            id in valid_id(),
            min_special in 0usize..3,
            reject_common in any::<bool>(),
        ) {
            prop_assume!(!BLOCKLIST.contains(id.as_str()));
            let user_id = UserId::parse(&id).unwrap();
            let policy = PasswordPolicy { min_special, reject_common, ..PasswordPolicy::default() };
            if policy.check(&password, &user_id).is_ok() {
                let chars = password.chars().count();
                prop_assert!((12..=128).contains(&chars));
                prop_assert!(password.chars().filter(is_special).count() >= min_special);
                prop_assert!(!password.to_lowercase().contains(&id));
                if reject_common {
                    prop_assert!(!is_common_password(&password.to_lowercase()));
                }
            }
        }

        #[test]
        fn accepted_names_are_short_single_lines(s in any::<String>()) {
            if let Ok(name) = Name::parse(&s) {
                prop_assert!(name.as_str().chars().count() <= Name::MAX_CHARS);
                prop_assert!(no_control(name.as_str()));
            }
        }

        #[test]
        fn accepted_descriptions_are_bounded(s in any::<String>()) {
            if let Ok(d) = Description::parse(&s) {
                prop_assert!(d.as_str().chars().count() <= Description::MAX_CHARS);
                prop_assert!(d.as_str().chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
            }
        }

        #[test]
        fn accepted_state_descriptions_are_bounded(s in any::<String>()) {
            if let Ok(d) = StateDescription::parse(&s) {
                prop_assert!(d.as_str().chars().count() <= StateDescription::MAX_CHARS);
                prop_assert!(d.as_str().chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
            }
        }

        #[test]
        fn accepted_search_texts_are_bounded(s in any::<String>()) {
            if let Ok(t) = SearchText::parse("query", &s) {
                prop_assert!(t.as_str().chars().count() <= SearchText::MAX_CHARS);
                prop_assert!(no_control(t.as_str()));
            }
        }

        #[test]
        fn accepted_attributes_follow_the_rules(
            pairs in prop::collection::hash_map(id_like(), ".{0,210}", 0..12),
        ) {
            match Attributes::parse(&pairs) {
                Ok(attributes) => {
                    prop_assert!(attributes.len() <= MAX_ATTRIBUTES);
                    for (k, v) in attributes.as_map() {
                        prop_assert!(ID_PATTERN.is_match(k) && k.len() <= MAX_ID_CHARS);
                        prop_assert!(v.chars().count() <= MAX_ATTRIBUTE_VALUE_CHARS);
                    }
                    prop_assert_eq!(HashMap::from(attributes), pairs);
                }
                Err(v) => prop_assert!(v.field.starts_with("attributes")),
            }
        }

        #[test]
        fn accepted_pictures_follow_the_rules(picture in picture()) {
            if validate_picture(&picture).is_ok() {
                if let Some(e) = &picture.embedded {
                    prop_assert!(PICTURE_MIME_TYPES.contains(&e.mime_type.as_str()));
                    prop_assert!(!e.data.is_empty() && e.data.len() <= MAX_PICTURE_BYTES);
                }
                for url in picture.sizes.values() {
                    let lower = url.to_ascii_lowercase();
                    prop_assert!(lower.starts_with("http://") || lower.starts_with("https://"));
                    prop_assert!(url.chars().count() <= MAX_PICTURE_URL_CHARS);
                }
            }
        }
    }

    #[test]
    fn metadata_keys_are_bounded_and_one_line() {
        assert!(MetadataKey::parse("k", &"k".repeat(200)).is_ok());
        assert!(MetadataKey::parse("k", "tenant/eu_1%").is_ok());
        for bad in [
            "",
            "line\nbreak",
            "tab\there",
            "zero\u{200B}width",
            "\u{202E}reversed",
            "para\u{2029}graph",
            "\u{FEFF}bom",
        ] {
            assert_eq!(field_of(MetadataKey::parse("k", bad)), "k", "{bad:?}");
        }
        assert!(MetadataKey::parse("k", "résumé – naïve").is_ok());
        assert_eq!(field_of(MetadataKey::parse("k", &"k".repeat(201))), "k");
    }

    #[test]
    fn metadata_entries_name_the_bad_one() {
        type Entries<'a> = &'a [(&'a str, &'a [u8])];
        let big = vec![0u8; 9];
        let cases: [(Entries, &str); 5] = [
            (&[], "metadata"),
            (&[("a", b"1"), ("b", b"2"), ("c", b"3")], "metadata"),
            (&[("a", b"1"), ("a", b"2")], "metadata[1].key"),
            (&[("a", b"")], "metadata[0].value"),
            (&[("a", b"1"), ("b", &big)], "metadata[1].value"),
        ];
        for (entries, field) in cases {
            assert_eq!(field_of(MetadataEntries::parse(entries, 2, 8)), field);
        }
        let ok = MetadataEntries::parse(&[("b", b"2"), ("a", b"1")], 2, 8).unwrap();
        assert_eq!(ok.keys(), ["a", "b"]);
    }

    #[test]
    fn metadata_keys_to_delete_are_distinct() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(field_of(MetadataKeys::parse(&keys(&[]), 5)), "keys");
        assert_eq!(
            field_of(MetadataKeys::parse(&keys(&["a", "a"]), 5)),
            "keys[1]"
        );
        assert_eq!(
            field_of(MetadataKeys::parse(&keys(&["a", ""]), 5)),
            "keys[1]"
        );
        assert_eq!(
            MetadataKeys::parse(&keys(&["b", "a"]), 5)
                .unwrap()
                .as_slice(),
            ["a", "b"]
        );
    }
}

//! Input validation shared by every service: a field violation names the
//! field it is about, so callers get `INVALID_ARGUMENT` with the field name.

use std::fmt;

/// One invalid field of a request: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field path, such as `user.ids.user_id`.
    pub field: String,
    /// What is wrong, in words a caller can act on.
    pub reason: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same violation, with the field placed under `prefix`
    /// (`ids.user_id` under `user` becomes `user.ids.user_id`).
    pub fn under(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.field = format!("{prefix}.{}", self.field);
        }
        self
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for FieldViolation {}

impl From<FieldViolation> for tonic::Status {
    fn from(v: FieldViolation) -> Self {
        tonic::Status::invalid_argument(v.to_string())
    }
}

/// Checks that `value` has at most `max` characters (not bytes).
pub fn max_chars(field: &str, value: &str, max: usize) -> Result<(), FieldViolation> {
    if value.chars().count() > max {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Checks that `value` is not empty.
pub fn required(field: &str, value: &str) -> Result<(), FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    Ok(())
}

/// Checks that a string holds no control characters (names, descriptions).
pub fn no_control_chars(field: &str, value: &str) -> Result<(), FieldViolation> {
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// The longest user ID, in characters.
pub const MAX_USER_ID_CHARS: usize = 36;

/// A user ID, checked for shape only: 2 to 36 lowercase letters, digits and
/// single dashes, starting and ending with a letter or digit. The user
/// registry owns the rest of the rules (reserved words); other services
/// check the shape before they ask it.
pub fn user_id(field: &str, text: &str) -> Result<String, FieldViolation> {
    if text.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    let bytes = text.as_bytes();
    let shaped = (2..=MAX_USER_ID_CHARS).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
        && !text.contains("--");
    if !shaped {
        return Err(FieldViolation::new(
            field,
            "must be 2 to 36 lowercase letters, digits and single dashes, starting and ending with a letter or digit",
        ));
    }
    Ok(text.to_string())
}

/// A UUID as Roster writes IDs (lowercase, hyphenated); any spelling the
/// `uuid` crate accepts is turned into that one.
pub fn uuid(field: &str, text: &str) -> Result<String, FieldViolation> {
    if text.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    ::uuid::Uuid::parse_str(text)
        .map(|id| id.to_string())
        .map_err(|_| FieldViolation::new(field, "is not a UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_under_a_prefix_names_the_full_path() {
        let v = FieldViolation::new("ids.user_id", "bad").under("user");
        assert_eq!(v.field, "user.ids.user_id");
        let status: tonic::Status = v.into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("user.ids.user_id"));
    }

    #[test]
    fn max_chars_counts_characters_not_bytes() {
        assert!(max_chars("name", "ééé", 3).is_ok());
        assert!(max_chars("name", "éééé", 3).is_err());
    }
}

//! The invitations' domain types, each with one `parse()` that checks
//! request input once, at the edge. No tonic or sqlx types here.

use roster_core::validation::FieldViolation;
pub use roster_core::validation::{user_id as user_id_of, uuid as uuid_of};

/// The longest email address (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// Most addresses one `Send` may invite.
pub const MAX_ADDRESSES_PER_SEND: usize = 100;

/// An email address to invite, as written, and its lowercased key:
/// addresses are compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress {
    address: String,
    key: String,
}

impl EmailAddress {
    /// Parses `text` as an email address (the mailer's rules: what
    /// `lettre` can send to, at most 254 characters). `field` names the
    /// request field in the violation.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        if text.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        if text.chars().count() > MAX_EMAIL_CHARS {
            return Err(FieldViolation::new(
                field,
                format!("must be at most {MAX_EMAIL_CHARS} characters"),
            ));
        }
        text.parse::<lettre::Address>()
            .map_err(|_| FieldViolation::new(field, "is not an email address"))?;
        Ok(Self {
            address: text.to_string(),
            key: text.to_lowercase(),
        })
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The address lowercased, as compared and stored in `email_key`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The addresses of a `Send`: `email` first, then `emails`; at least one,
/// at most [`MAX_ADDRESSES_PER_SEND`], each valid, none repeated
/// (case-insensitively).
pub fn send_addresses(email: &str, emails: &[String]) -> Result<Vec<EmailAddress>, FieldViolation> {
    let total = usize::from(!email.is_empty()) + emails.len();
    if total == 0 {
        return Err(FieldViolation::new(
            "emails",
            "at least one address is required (`email` or `emails`)",
        ));
    }
    if total > MAX_ADDRESSES_PER_SEND {
        return Err(FieldViolation::new(
            "emails",
            format!(
                "at most {MAX_ADDRESSES_PER_SEND} addresses per call (`email` and `emails` together)"
            ),
        ));
    }
    let mut addresses: Vec<EmailAddress> = Vec::with_capacity(total);
    if !email.is_empty() {
        addresses.push(EmailAddress::parse("email", email)?);
    }
    for (i, text) in emails.iter().enumerate() {
        let address = EmailAddress::parse(&format!("emails[{i}]"), text)?;
        if addresses.iter().any(|a| a.key() == address.key()) {
            return Err(FieldViolation::new(
                "emails",
                format!("repeats the address `{text}` (addresses are compared case-insensitively)"),
            ));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_kept_as_written_and_keyed_lowercase() {
        let address = EmailAddress::parse("email", "Ada.Lovelace@Example.COM").unwrap();
        assert_eq!(address.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(address.key(), "ada.lovelace@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a@b@example.com",
            "ada @example.com",
        ] {
            let error = EmailAddress::parse("emails[3]", bad).unwrap_err();
            assert_eq!(error.field, "emails[3]", "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(EmailAddress::parse("email", &long).is_err());
    }

    #[test]
    fn send_merges_email_and_emails_in_order_and_refuses_repeats() {
        let emails = vec!["b@example.com".to_string(), "c@example.com".to_string()];
        let merged = send_addresses("a@example.com", &emails).unwrap();
        let keys: Vec<&str> = merged.iter().map(EmailAddress::key).collect();
        assert_eq!(keys, ["a@example.com", "b@example.com", "c@example.com"]);
        assert_eq!(send_addresses("", &emails).unwrap().len(), 2);

        assert_eq!(send_addresses("", &[]).unwrap_err().field, "emails");
        let repeated = send_addresses("A@example.com", &["a@EXAMPLE.com".into()]).unwrap_err();
        assert_eq!(repeated.field, "emails");
        let bad =
            send_addresses("a@example.com", &["b@example.com".into(), "nope".into()]).unwrap_err();
        assert_eq!(bad.field, "emails[1]");
        assert_eq!(send_addresses("nope", &[]).unwrap_err().field, "email");

        let hundred: Vec<String> = (0..100).map(|i| format!("u{i}@example.com")).collect();
        assert_eq!(send_addresses("", &hundred).unwrap().len(), 100);
        let error = send_addresses("extra@example.com", &hundred).unwrap_err();
        assert_eq!(error.field, "emails");
    }

    #[test]
    fn uuids_are_written_one_way() {
        let id = uuid::Uuid::new_v4();
        let upper = id.to_string().to_uppercase();
        assert_eq!(uuid_of("id", &upper).unwrap(), id.to_string());
        assert_eq!(uuid_of("id", "").unwrap_err().field, "id");
        assert_eq!(uuid_of("id", "not-a-uuid").unwrap_err().field, "id");
    }

    #[test]
    fn user_ids_are_checked_for_shape() {
        assert!(user_id_of("user_id", "alice-1").is_ok());
        for bad in [
            "",
            "a",
            "-a",
            "a-",
            "a--b",
            "Alice",
            "al ice",
            &"a".repeat(37),
        ] {
            assert_eq!(
                user_id_of("user_id", bad).unwrap_err().field,
                "user_id",
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_input_never_panics(text in ".*", list in proptest::collection::vec(".*", 0..4)) {
            let _ = EmailAddress::parse("email", &text);
            let _ = send_addresses(&text, &list);
            let _ = uuid_of("id", &text);
            let _ = user_id_of("user_id", &text);
        }

        #[test]
        fn a_parsed_address_keys_to_its_lowercase(local in "[A-Za-z0-9._-]{1,20}", domain in "[A-Za-z0-9-]{1,20}\\.[a-z]{2,6}") {
            let text = format!("{local}@{domain}");
            if let Ok(address) = EmailAddress::parse("email", &text) {
                proptest::prop_assert_eq!(address.key(), text.to_lowercase());
                proptest::prop_assert_eq!(address.as_str(), text.as_str());
            }
        }
    }
}

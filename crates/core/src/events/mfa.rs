//! The names of the second-factor events (`user.mfa.*`), published by the
//! user registry and read by the notifications service. Each carries the
//! user's identifiers and an `AuthenticationFactor` (never a secret).

/// An authenticator app was verified and is active.
pub const TOTP_ADDED: &str = "user.mfa.totp_added";
pub const TOTP_REMOVED: &str = "user.mfa.totp_removed";
/// Mailed one-time codes became a second factor.
pub const OTP_EMAIL_ADDED: &str = "user.mfa.otp_email_added";
pub const OTP_EMAIL_REMOVED: &str = "user.mfa.otp_email_removed";
/// A batch of recovery codes was generated (replacing any earlier one).
pub const RECOVERY_CODES_GENERATED: &str = "user.mfa.recovery_codes_generated";
pub const RECOVERY_CODES_REMOVED: &str = "user.mfa.recovery_codes_removed";
/// A recovery code completed a login (and is used up).
pub const RECOVERY_CODE_USED: &str = "user.mfa.recovery_code_used";

/// A subscription pattern for every second-factor event.
pub const ALL: &str = "user.mfa.>";

/// Events of a factor added.
pub const ADDED: &[&str] = &[TOTP_ADDED, OTP_EMAIL_ADDED, RECOVERY_CODES_GENERATED];
/// Events of a factor removed.
pub const REMOVED: &[&str] = &[TOTP_REMOVED, OTP_EMAIL_REMOVED, RECOVERY_CODES_REMOVED];

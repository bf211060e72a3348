//! What a credential may do: the rights it carries, cut down by its user's
//! state, email validation and `universal_rights`, plus an approved admin's
//! universal rights. One pure function, so every rule is tested here.

use roster_core::rights::{RightSet, state_limit, unvalidated_email_limit};
use roster_proto::v1::{Right, State, UserRequiredAction};

use crate::users::Subject;

/// The outcome of [`grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Rights on the user's own account.
    pub own: RightSet,
    /// Rights on every user (approved admins only).
    pub universal: RightSet,
    /// An approved admin whose credential carries every right.
    pub is_admin: bool,
    /// Why rights were withheld, for the caller.
    pub warnings: Vec<String>,
}

/// What a credential carrying `carried` may do for `subject`.
///
/// - On its own account: `carried`'s user rights, limited by the state
///   (requested: info, basic settings, delete; rejected: info, delete;
///   suspended: info; flagged counts as approved) and, when
///   `require_validated_email` and the address is not validated, by the
///   same limit as requested users (not for a machine user, which has no
///   address and was made by an admin).
/// - On every account (approved or flagged admins only): `carried` itself,
///   so an admin's key never does more than the rights written on it.
/// - `User.universal_rights`, when set, caps both.
pub fn grant(carried: RightSet, subject: &Subject, require_validated_email: bool) -> Grant {
    let mut warnings = Vec::new();
    let mut own = carried.intersect(RightSet::all_user());
    if let Some(limit) = state_limit(subject.state) {
        if !own.minus(limit).is_empty() {
            warnings.push(format!(
                "rights limited by the user's state {}",
                subject.state.as_str_name()
            ));
        }
        own = own.intersect(limit);
    }
    // A machine has no address to validate: an admin made it, which is
    // the vetting the limit stands in for.
    if require_validated_email && !subject.email_validated && !subject.machine {
        let limit = unvalidated_email_limit();
        if !own.minus(limit).is_empty() {
            warnings
                .push("rights limited until the primary email address is validated".to_string());
        }
        own = own.intersect(limit);
    }
    let approved = matches!(subject.state, State::Approved | State::Flagged);
    let mut universal = if subject.admin && approved {
        carried
    } else {
        RightSet::EMPTY
    };
    if let Some(restriction) = subject.restriction {
        if !own.union(universal).minus(restriction).is_empty() {
            warnings.push("rights limited by the user's universal_rights".to_string());
        }
        own = own.intersect(restriction);
        universal = universal.intersect(restriction);
    }
    let is_admin = !universal.is_empty() && universal.contains_all(RightSet::all());
    Grant {
        own,
        universal,
        is_admin,
        warnings,
    }
}

/// A session's grant while its user has pending required actions: only
/// the rights completing them needs, on its own account, and nothing on
/// anyone else's. A password change needs none (UpdatePassword takes the
/// old password as its credential); an email validation needs
/// RIGHT_USER_SETTINGS_BASIC (SendEmailValidation) and RIGHT_USER_INFO (to
/// read what is pending); enrolling a second factor needs the same two
/// (a first factor is added with RIGHT_USER_SETTINGS_BASIC and the
/// password). No pending
/// action: the grant as it is.
pub fn limit_to_pending_actions(mut granted: Grant, subject: &Subject) -> Grant {
    let validate_email = subject
        .required_actions
        .contains(&UserRequiredAction::ValidateEmail);
    let enrol = subject
        .required_actions
        .contains(&UserRequiredAction::EnrolSecondFactor);
    if !subject.require_password_update && !validate_email && !enrol {
        return granted;
    }
    let mut needed = RightSet::EMPTY;
    let mut names = Vec::new();
    if subject.require_password_update {
        names.push("UPDATE_PASSWORD (UserRegistry.UpdatePassword)");
    }
    if validate_email {
        needed = needed.union(RightSet::from_rights([
            Right::UserInfo,
            Right::UserSettingsBasic,
        ]));
        names.push("VALIDATE_EMAIL (UserLifecycle.SendEmailValidation, ValidateEmail)");
    }
    if enrol {
        // Adding a first factor needs RIGHT_USER_SETTINGS_BASIC (and the
        // password, which the registry checks).
        needed = needed.union(RightSet::from_rights([
            Right::UserInfo,
            Right::UserSettingsBasic,
        ]));
        names.push("ENROL_SECOND_FACTOR (UserAuthenticationFactors)");
    }
    granted.own = granted.own.intersect(needed);
    granted.universal = RightSet::EMPTY;
    granted.is_admin = false;
    granted.warnings.push(format!(
        "required_actions: rights limited until the pending actions are done: {}",
        names.join(", ")
    ));
    granted
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use roster_proto::v1::Right;

    fn subject(state: State, admin: bool) -> Subject {
        Subject {
            user_id: "alice".into(),
            created_at: Utc::now(),
            deleted: false,
            state,
            admin,
            restriction: None,
            email_validated: true,
            require_password_update: false,
            email: "alice@example.com".into(),
            name: String::new(),
            suspended: false,
            required_actions: Vec::new(),
            sessions_ended_at: None,
            machine: false,
        }
    }

    #[test]
    fn pending_actions_leave_a_session_only_what_completing_them_needs() {
        let admin = subject(State::Approved, true);
        let full = grant(set(&[Right::All]), &admin, false);
        assert_eq!(limit_to_pending_actions(full.clone(), &admin), full);

        let mut password = admin.clone();
        password.require_password_update = true;
        let g = limit_to_pending_actions(full.clone(), &password);
        assert!(g.own.is_empty() && g.universal.is_empty() && !g.is_admin);
        assert_eq!(g.warnings.len(), 1);

        let mut email = admin.clone();
        email.required_actions = vec![UserRequiredAction::ValidateEmail];
        let g = limit_to_pending_actions(full.clone(), &email);
        assert_eq!(g.own, set(&[Right::UserInfo, Right::UserSettingsBasic]));
        assert!(g.universal.is_empty() && !g.is_admin);

        email.require_password_update = true;
        let g = limit_to_pending_actions(full.clone(), &email);
        assert_eq!(g.own, set(&[Right::UserInfo, Right::UserSettingsBasic]));

        let mut enrol = admin.clone();
        enrol.required_actions = vec![UserRequiredAction::EnrolSecondFactor];
        let g = limit_to_pending_actions(full, &enrol);
        assert_eq!(g.own, set(&[Right::UserInfo, Right::UserSettingsBasic]));
        assert!(g.universal.is_empty() && !g.is_admin);
    }

    fn set(rights: &[Right]) -> RightSet {
        RightSet::from_rights(rights.iter().copied())
    }

    #[test]
    fn an_approved_users_key_carries_its_rights_on_its_own_account_only() {
        let g = grant(
            set(&[Right::UserInfo, Right::UserSettingsApiKeys]),
            &subject(State::Approved, false),
            false,
        );
        assert_eq!(g.own, set(&[Right::UserInfo, Right::UserSettingsApiKeys]));
        assert!(g.universal.is_empty());
        assert!(!g.is_admin);
        assert!(g.warnings.is_empty());
    }

    #[test]
    fn universal_rights_on_a_non_admins_key_do_nothing() {
        let g = grant(set(&[Right::All]), &subject(State::Approved, false), false);
        assert_eq!(g.own, RightSet::all_user());
        assert!(g.universal.is_empty());
    }

    #[test]
    fn each_state_limits_the_rights_as_the_reference_says() {
        let all = set(&[Right::UserAll]);
        let cases = [
            (
                State::Requested,
                set(&[Right::UserInfo, Right::UserSettingsBasic, Right::UserDelete]),
            ),
            (State::Rejected, set(&[Right::UserInfo, Right::UserDelete])),
            (State::Suspended, set(&[Right::UserInfo])),
            (State::Flagged, RightSet::all_user()),
            (State::Approved, RightSet::all_user()),
        ];
        for (state, expected) in cases {
            let g = grant(all, &subject(state, false), false);
            assert_eq!(g.own, expected, "{state:?}");
            assert_eq!(
                g.warnings.is_empty(),
                expected == RightSet::all_user(),
                "{state:?}"
            );
        }
    }

    #[test]
    fn an_unvalidated_email_limits_only_when_validation_is_required() {
        let mut s = subject(State::Approved, false);
        s.email_validated = false;
        let all = set(&[Right::UserAll]);
        assert_eq!(grant(all, &s, false).own, RightSet::all_user());
        let limited = grant(all, &s, true);
        assert_eq!(
            limited.own,
            set(&[Right::UserInfo, Right::UserSettingsBasic, Right::UserDelete])
        );
        assert_eq!(limited.warnings.len(), 1);
    }

    #[test]
    fn a_machine_without_an_address_is_not_limited_for_it() {
        let mut s = subject(State::Approved, false);
        s.email_validated = false;
        s.email.clear();
        s.machine = true;
        let all = set(&[Right::UserAll]);
        let granted = grant(all, &s, true);
        assert_eq!(granted.own, RightSet::all_user());
        assert!(granted.warnings.is_empty());
    }

    #[test]
    fn an_approved_admin_gets_the_keys_rights_on_everyone() {
        let full = grant(set(&[Right::All]), &subject(State::Approved, true), false);
        assert_eq!(full.universal, RightSet::all());
        assert!(full.is_admin);
        let narrow = grant(
            set(&[Right::UserInfo, Right::UserList]),
            &subject(State::Approved, true),
            false,
        );
        assert_eq!(narrow.universal, set(&[Right::UserInfo, Right::UserList]));
        assert!(!narrow.is_admin);
    }

    #[test]
    fn a_suspended_or_requested_admin_is_no_admin() {
        for state in [State::Suspended, State::Requested, State::Rejected] {
            let g = grant(set(&[Right::All]), &subject(state, true), false);
            assert!(g.universal.is_empty(), "{state:?}");
            assert!(!g.is_admin, "{state:?}");
        }
        assert!(grant(set(&[Right::All]), &subject(State::Flagged, true), false).is_admin);
    }

    #[test]
    fn universal_rights_on_the_user_cap_every_credential() {
        let mut s = subject(State::Approved, true);
        s.restriction = Some(set(&[Right::UserInfo, Right::UserList]));
        let g = grant(set(&[Right::All]), &s, false);
        assert_eq!(g.own, set(&[Right::UserInfo]));
        assert_eq!(g.universal, set(&[Right::UserInfo, Right::UserList]));
        assert!(!g.is_admin);
        assert_eq!(g.warnings.len(), 1);
    }
}

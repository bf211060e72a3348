//! Rights: sets of `roster.v1.Right`, their expansion (`RIGHT_USER_ALL`,
//! `RIGHT_ALL`) and the limits a user's state puts on them.

use roster_proto::v1::{Right, State};

/// Every right a user may hold on a user (its own account).
pub const USER_RIGHTS: &[Right] = &[
    Right::UserInfo,
    Right::UserSettingsBasic,
    Right::UserSettingsApiKeys,
    Right::UserDelete,
    Right::UserAuthorizedClients,
    Right::UserNotificationsRead,
];

/// Rights that are only meaningful as universal rights (admins).
pub const UNIVERSAL_RIGHTS: &[Right] = &[
    Right::UserList,
    Right::UserCreate,
    Right::UserPurge,
    Right::SendInvites,
];

/// A set of concrete rights (never containing the `*_ALL` pseudo rights),
/// as a bitset over the enum's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RightSet(u128);

impl RightSet {
    pub const EMPTY: RightSet = RightSet(0);

    fn bit(right: Right) -> u128 {
        // Right numbers are below 128 (checked by a test).
        1u128 << (right as i32 as u32)
    }

    /// Every concrete right.
    pub fn all() -> Self {
        Self::from_rights(USER_RIGHTS.iter().chain(UNIVERSAL_RIGHTS).copied())
    }

    /// Every concrete user right.
    pub fn all_user() -> Self {
        Self::from_rights(USER_RIGHTS.iter().copied())
    }

    /// A set from rights, expanding `RIGHT_USER_ALL` and `RIGHT_ALL` and
    /// ignoring `RIGHT_INVALID`.
    pub fn from_rights(rights: impl IntoIterator<Item = Right>) -> Self {
        let mut set = 0u128;
        for r in rights {
            match r {
                Right::Invalid => {}
                Right::UserAll => set |= Self::all_user().0,
                Right::All => set |= Self::all().0,
                r => set |= Self::bit(r),
            }
        }
        RightSet(set)
    }

    /// A set from raw enum numbers (as they come in a request); unknown
    /// numbers are ignored.
    pub fn from_i32s(rights: &[i32]) -> Self {
        Self::from_rights(rights.iter().filter_map(|r| Right::try_from(*r).ok()))
    }

    pub fn contains(&self, right: Right) -> bool {
        let needed = Self::from_rights([right]);
        needed.0 != 0 && self.0 & needed.0 == needed.0
    }

    pub fn contains_all(&self, other: RightSet) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: RightSet) -> RightSet {
        RightSet(self.0 | other.0)
    }

    pub fn intersect(self, other: RightSet) -> RightSet {
        RightSet(self.0 & other.0)
    }

    pub fn minus(self, other: RightSet) -> RightSet {
        RightSet(self.0 & !other.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The concrete rights, in enum-number order.
    pub fn to_vec(self) -> Vec<Right> {
        USER_RIGHTS
            .iter()
            .chain(UNIVERSAL_RIGHTS)
            .copied()
            .filter(|r| self.0 & Self::bit(*r) != 0)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// As a `roster.v1.Rights` message.
    pub fn to_proto(self) -> roster_proto::v1::Rights {
        roster_proto::v1::Rights {
            rights: self.to_vec().into_iter().map(|r| r as i32).collect(),
        }
    }
}

/// The most a credential of a user in `state` may do on its own account,
/// and whether a warning should tell the caller so.
pub fn state_limit(state: State) -> Option<RightSet> {
    use Right::*;
    match state {
        State::Approved | State::Flagged => None,
        State::Requested => Some(RightSet::from_rights([
            UserInfo,
            UserSettingsBasic,
            UserDelete,
        ])),
        State::Rejected => Some(RightSet::from_rights([UserInfo, UserDelete])),
        State::Suspended => Some(RightSet::from_rights([UserInfo])),
    }
}

/// The limit while the primary email address is not yet validated and
/// validation is required.
pub fn unvalidated_email_limit() -> RightSet {
    RightSet::from_rights([Right::UserInfo, Right::UserSettingsBasic, Right::UserDelete])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_right_number_fits_the_bitset() {
        for r in USER_RIGHTS.iter().chain(UNIVERSAL_RIGHTS) {
            assert!((*r as i32) < 128);
        }
    }

    #[test]
    fn user_all_expands_to_every_user_right_and_nothing_universal() {
        let set = RightSet::from_rights([Right::UserAll]);
        for r in USER_RIGHTS {
            assert!(set.contains(*r));
        }
        assert!(!set.contains(Right::SendInvites));
        assert!(set.contains(Right::UserAll));
        assert!(!set.contains(Right::All));
    }

    #[test]
    fn all_contains_everything() {
        let set = RightSet::from_rights([Right::All]);
        assert!(set.contains(Right::All));
        assert!(set.contains(Right::UserPurge));
        assert_eq!(set, RightSet::all());
    }

    #[test]
    fn invalid_is_never_contained() {
        assert!(!RightSet::all().contains(Right::Invalid));
    }

    #[test]
    fn suspended_users_keep_only_info() {
        let limit = state_limit(State::Suspended).unwrap();
        assert_eq!(limit.to_vec(), vec![Right::UserInfo]);
        assert!(state_limit(State::Flagged).is_none());
    }
}

//! List conventions shared by every list and search method: `limit`
//! (0 → 100, at most 1000), `page` (from 1; 0 → 1), `order` from an
//! allow-list with `-` for descending, the total in the `x-total-count`
//! response header, and field masks checked against the paths a message
//! allows.

use std::collections::BTreeSet;

use tonic::Response;
use tonic::metadata::MetadataValue;

use crate::validation::FieldViolation;

/// The page size when the request says 0.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page size.
pub const MAX_LIMIT: u32 = 1000;
/// The response header with the total number of matching items.
pub const TOTAL_COUNT_HEADER: &str = "x-total-count";
/// The response header with the `page_token` of the next page, on methods
/// that page by keyset, while more items follow.
pub const NEXT_PAGE_TOKEN_HEADER: &str = "x-next-page-token";

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub page: u32,
}

impl Page {
    /// Validates `limit` and `page` as they come in a request.
    pub fn parse(limit: u32, page: u32) -> Result<Page, FieldViolation> {
        if limit > MAX_LIMIT {
            return Err(FieldViolation::new(
                "limit",
                format!("must be at most {MAX_LIMIT}"),
            ));
        }
        let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
        let page = page.max(1);
        // Keep offsets within i64 for every backend.
        if u64::from(page - 1) * u64::from(limit) > i64::MAX as u64 {
            return Err(FieldViolation::new("page", "is too large"));
        }
        Ok(Page { limit, page })
    }

    /// Rows to skip.
    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.limit)
    }

    pub fn limit(&self) -> i64 {
        i64::from(self.limit)
    }
}

/// A validated order: one allowed field, ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub field: &'static str,
    pub descending: bool,
}

impl Order {
    /// Parses `order` against `allowed`; empty gives `default` ascending.
    pub fn parse(
        order: &str,
        allowed: &[&'static str],
        default: &'static str,
    ) -> Result<Order, FieldViolation> {
        if order.is_empty() {
            return Ok(Order {
                field: default,
                descending: false,
            });
        }
        let (name, descending) = match order.strip_prefix('-') {
            Some(rest) => (rest, true),
            None => (order, false),
        };
        allowed
            .iter()
            .find(|a| **a == name)
            .map(|field| Order { field, descending })
            .ok_or_else(|| {
                FieldViolation::new(
                    "order",
                    format!(
                        "must be one of {} (optionally with `-`)",
                        allowed.join(", ")
                    ),
                )
            })
    }
}

/// Wraps a list response, with the total count in its header.
pub fn with_total_count<T>(message: T, total: u64) -> Response<T> {
    let mut response = Response::new(message);
    response
        .metadata_mut()
        .insert(TOTAL_COUNT_HEADER, MetadataValue::from(total));
    response
}

/// A field mask checked against the paths a message allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMask {
    paths: BTreeSet<String>,
}

impl FieldMask {
    /// Validates `mask`: every path must be in `allowed` and none in
    /// `forbidden` (write-only fields). Sub-paths (`profile_picture.sizes`)
    /// are accepted when their top-level path is allowed, and count as the
    /// top-level path.
    pub fn parse(
        mask: Option<&prost_types::FieldMask>,
        allowed: &[&str],
        forbidden: &[&str],
    ) -> Result<FieldMask, FieldViolation> {
        let mut paths = BTreeSet::new();
        for path in mask.map(|m| m.paths.as_slice()).unwrap_or_default() {
            let top = path.split('.').next().unwrap_or_default();
            if forbidden.contains(&path.as_str()) || forbidden.contains(&top) {
                return Err(FieldViolation::new(
                    "field_mask",
                    format!("path `{path}` is not allowed here"),
                ));
            }
            if !allowed.contains(&top) {
                return Err(FieldViolation::new(
                    "field_mask",
                    format!("unknown path `{path}`"),
                ));
            }
            paths.insert(top.to_string());
        }
        Ok(FieldMask { paths })
    }

    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }

    pub fn insert(&mut self, path: &str) {
        self.paths.insert(path.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_limit_and_page_give_the_defaults() {
        assert_eq!(
            Page::parse(0, 0).unwrap(),
            Page {
                limit: 100,
                page: 1
            }
        );
        assert_eq!(Page::parse(10, 3).unwrap().offset(), 20);
    }

    #[test]
    fn a_limit_over_the_maximum_names_the_limit_field() {
        assert_eq!(Page::parse(1001, 1).unwrap_err().field, "limit");
    }

    #[test]
    fn order_accepts_allowed_fields_with_an_optional_minus() {
        let allowed = ["user_id", "name"];
        let o = Order::parse("-name", &allowed, "user_id").unwrap();
        assert_eq!((o.field, o.descending), ("name", true));
        assert_eq!(
            Order::parse("", &allowed, "user_id").unwrap().field,
            "user_id"
        );
        assert_eq!(
            Order::parse("password", &allowed, "user_id")
                .unwrap_err()
                .field,
            "order"
        );
        assert!(Order::parse("--name", &allowed, "user_id").is_err());
    }

    #[test]
    fn field_masks_refuse_write_only_and_unknown_paths() {
        let mask = prost_types::FieldMask {
            paths: vec!["name".into(), "profile_picture.sizes".into()],
        };
        let m = FieldMask::parse(Some(&mask), &["name", "profile_picture"], &["password"]).unwrap();
        assert!(m.contains("profile_picture"));
        let bad = prost_types::FieldMask {
            paths: vec!["password".into()],
        };
        assert_eq!(
            FieldMask::parse(Some(&bad), &["name"], &["password"])
                .unwrap_err()
                .field,
            "field_mask"
        );
        let unknown = prost_types::FieldMask {
            paths: vec!["nope".into()],
        };
        assert!(FieldMask::parse(Some(&unknown), &["name"], &[]).is_err());
    }

    #[test]
    fn total_count_goes_in_the_header() {
        let r = with_total_count((), 42);
        assert_eq!(r.metadata().get(TOTAL_COUNT_HEADER).unwrap(), "42");
    }

    proptest! {
        #[test]
        fn page_parse_never_panics_and_respects_bounds(limit in any::<u32>(), page in any::<u32>()) {
            if let Ok(p) = Page::parse(limit, page) {
                prop_assert!(p.limit >= 1 && p.limit <= MAX_LIMIT);
                prop_assert!(p.page >= 1);
                prop_assert!(p.offset() >= 0);
            }
        }

        #[test]
        fn order_parse_never_panics(s in ".*") {
            let _ = Order::parse(&s, &["user_id", "name"], "user_id");
        }

        #[test]
        fn field_mask_parse_never_panics(paths in proptest::collection::vec(".*", 0..5)) {
            let mask = prost_types::FieldMask { paths };
            let _ = FieldMask::parse(Some(&mask), &["name"], &["password"]);
        }
    }
}

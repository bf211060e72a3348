//! Assertions on gRPC answers, and [`on_both_backends!`](crate::on_both_backends).

use tonic::{Code, Status};

/// Turns `async fn case(backend: Backend)` into the tests
/// `case::on_postgres` (PostgreSQL and JetStream) and `case::on_sqlite`
/// (SQLite and the in-process bus).
#[macro_export]
macro_rules! on_both_backends {
    // Cases that race tasks against each other need threads to race on.
    (multi_thread: $($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                super::$case($crate::Backend::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_sqlite() {
                super::$case($crate::Backend::Sqlite).await;
            }
        }
    )*};
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn on_postgres() {
                super::$case($crate::Backend::Postgres).await;
            }

            #[tokio::test]
            async fn on_sqlite() {
                super::$case($crate::Backend::Sqlite).await;
            }
        }
    )*};
}

/// Asserts `result` failed with `code` and returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Err(status) if status.code() == code => status,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// Asserts `INVALID_ARGUMENT` naming `field` (messages read
/// "invalid `<field>`: <reason>").
#[track_caller]
pub fn assert_invalid_field<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = expect_code(result, Code::InvalidArgument);
    assert!(
        status.message().contains(&format!("`{field}`")),
        "expected a violation of `{field}`, got {status:?}"
    );
}

/// The `x-total-count` header of a list response.
#[track_caller]
pub fn total_count<T>(response: &tonic::Response<T>) -> u64 {
    response
        .metadata()
        .get("x-total-count")
        .expect("x-total-count header")
        .to_str()
        .expect("ascii header")
        .parse()
        .expect("a number")
}

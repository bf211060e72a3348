//! What `rosterd` itself counts: `grpc_server_handled_total` from its
//! Prometheus endpoint, read before and after a run to check that every
//! request h2load sent was answered with `grpc-status` 0 (h2load itself
//! only sees HTTP 200, which a gRPC error also is).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context as _, ensure};

/// `grpc_server_handled_total` of one method, by `grpc_code`.
pub type Codes = BTreeMap<String, u64>;

/// Fetches `GET /metrics` from `addr` (`host:port`).
pub fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("connecting to metrics at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the metrics response has no header end")?;
    ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "metrics answered `{}`",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}

/// The handled counts of `service`/`method` in a Prometheus text page.
pub fn handled(page: &str, service: &str, method: &str) -> Codes {
    let mut codes = Codes::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("grpc_server_handled_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if label(labels, "grpc_service") != Some(service)
            || label(labels, "grpc_method") != Some(method)
        {
            continue;
        }
        if let (Some(code), Ok(value)) = (label(labels, "grpc_code"), value.trim().parse::<f64>()) {
            *codes.entry(code.to_owned()).or_default() += value as u64;
        }
    }
    codes
}

/// The value of `name` in a `a="x",b="y"` label list (values here never
/// hold quotes or commas).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// How much the count of `code` grew from `before` to `after`.
pub fn grown(before: &Codes, after: &Codes, code: &str) -> u64 {
    let after = after.get(code).copied().unwrap_or(0);
    after - before.get(code).copied().unwrap_or(0).min(after)
}

/// Checks that between `before` and `after` exactly `expected` calls were
/// answered OK and none with any other code.
pub fn check_all_ok(before: &Codes, after: &Codes, expected: u64) -> anyhow::Result<()> {
    let mut errors = BTreeMap::new();
    for code in after.keys().filter(|code| *code != "OK") {
        let delta = grown(before, after, code);
        if delta > 0 {
            errors.insert(code.as_str(), delta);
        }
    }
    let ok = grown(before, after, "OK");
    ensure!(
        errors.is_empty(),
        "the server answered some calls with an error: {errors:?} (and {ok} OK)"
    );
    ensure!(
        ok == expected,
        "the server answered {ok} calls OK, h2load completed {expected}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Codes, check_all_ok, handled};

    const PAGE: &str = "\
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_service=\"roster.v1.UserRegistry\",grpc_method=\"Get\",grpc_code=\"OK\"} 1200
grpc_server_handled_total{grpc_service=\"roster.v1.UserRegistry\",grpc_method=\"Get\",grpc_code=\"NotFound\"} 3
grpc_server_handled_total{grpc_service=\"roster.v1.UserRegistry\",grpc_method=\"List\",grpc_code=\"OK\"} 7
grpc_server_started_total{grpc_service=\"roster.v1.UserRegistry\",grpc_method=\"Get\"} 1203
";

    #[test]
    fn counts_are_read_per_method_and_code() {
        let codes = handled(PAGE, "roster.v1.UserRegistry", "Get");
        assert_eq!(
            codes,
            Codes::from([("OK".into(), 1200), ("NotFound".into(), 3)])
        );
        assert!(handled(PAGE, "roster.v1.Authentication", "Login").is_empty());
    }

    #[test]
    fn only_ok_growth_by_the_request_count_passes() {
        let before = Codes::from([("OK".into(), 100)]);
        let after = Codes::from([("OK".into(), 150)]);
        check_all_ok(&before, &after, 50).unwrap();
        let err = check_all_ok(&before, &after, 60).unwrap_err();
        assert!(err.to_string().contains("50 calls OK"), "{err}");
        let failed = Codes::from([("OK".into(), 150), ("Unauthenticated".into(), 1)]);
        let err = check_all_ok(&before, &failed, 50).unwrap_err();
        assert!(err.to_string().contains("Unauthenticated"), "{err}");
    }
}

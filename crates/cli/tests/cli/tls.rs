//! `roster` against a `rosterd` that serves mutual TLS: the CA file and
//! the client certificate come from flags or from a context.

use roster_test_support::TestCa;

use crate::support::{Server, run};

#[test]
fn mutual_tls_works_with_a_ca_and_a_client_certificate_from_flags_or_a_context() {
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Roster test CA");
    let ca_file = pki.path().join("ca.pem");
    ca.write(&ca_file);
    let (server_cert, server_key) = ca.issue("rosterd").write(pki.path(), "server-");
    let (client_cert, client_key) = ca.issue("operator").write(pki.path(), "client-");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let server = Server::start_with(&[
        ("ROSTER__TLS__CERT_FILE", &path(&server_cert)),
        ("ROSTER__TLS__KEY_FILE", &path(&server_key)),
        ("ROSTER__TLS__CLIENT_CA_FILE", &path(&ca_file)),
    ]);
    let tls_flags = [
        "--tls-ca-file".to_string(),
        path(&ca_file),
        "--tls-cert-file".to_string(),
        path(&client_cert),
        "--tls-key-file".to_string(),
        path(&client_key),
    ];
    let with = |extra: &[String], args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(extra.iter().map(String::as_str));
        server.admin(&all)
    };

    // A bare host:port with TLS flags is dialled over TLS.
    let users = run(&mut with(&tls_flags, &["users", "get", "ops-admin"]), None)
        .ok()
        .json();
    assert_eq!(users["ids"]["userId"], "ops-admin");

    // Plaintext to a TLS listener, or TLS without a client certificate,
    // does not get through.
    let plain = run(&mut server.admin(&["users", "get", "ops-admin"]), None);
    assert_eq!(plain.code, 5, "{}", plain.stderr);
    assert!(
        plain.stderr.contains("the connection failed"),
        "{}",
        plain.stderr
    );
    eprintln!("{}", plain.stderr);
    let anonymous = run(
        &mut with(&tls_flags[..2], &["users", "get", "ops-admin"]),
        None,
    );
    assert_eq!(anonymous.code, 5, "{}", anonymous.stderr);
    eprintln!("{}", anonymous.stderr);

    // A context keeps the TLS settings.
    run(
        &mut with(
            &tls_flags,
            &[
                "context",
                "add",
                "secure",
                "--addr",
                &format!("https://{}", server.addr),
                "--use",
            ],
        ),
        None,
    )
    .ok();
    let again = run(
        server
            .admin(&["users", "get", "ops-admin"])
            .env_remove("ROSTER_ADDR"),
        None,
    )
    .ok()
    .json();
    assert_eq!(again["ids"]["userId"], "ops-admin");
}

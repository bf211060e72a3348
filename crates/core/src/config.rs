//! Layered configuration: built-in defaults, then a TOML file (`--config`),
//! then environment variables `ROSTER__SECTION__KEY`. Every configuration
//! struct denies unknown fields, so a misspelt key fails at start and the
//! error names it.

use std::path::Path;

use serde::de::DeserializeOwned;

/// The environment prefix: `ROSTER__LISTEN`, `ROSTER__DATABASE__URL`, …
pub const ENV_PREFIX: &str = "ROSTER";

/// Loads `T` from its defaults, the optional TOML `file` and the process
/// environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> anyhow::Result<T> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_from(file, vars)
}

/// As [`load`], with the environment given explicitly (tests must not
/// mutate the process environment: other threads read it).
pub fn load_from<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<T> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        anyhow::ensure!(
            file.exists(),
            "configuration file {} does not exist",
            file.display()
        );
        builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
    }
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    // Every other value, again, as the text it is: a secret such as
    // `0012…`, `True` or `1.50` must not come out as `12…`, `true` or
    // `1.5`. Typed settings parse their text as they are read.
    let verbatim: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| !is_list_variable(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("cluster.keys")
            .with_list_parse_key("auth.trusted_proxies")
            .try_parsing(true)
            .source(Some(env)),
    );
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(Some(verbatim)),
    );
    let config = builder.build()?;
    config
        .try_deserialize::<T>()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

/// Whether the environment variable `name` sets a comma-separated list.
fn is_list_variable(name: &str) -> bool {
    ["CLUSTER__KEYS", "AUTH__TRUSTED_PROXIES"]
        .iter()
        .any(|key| name.eq_ignore_ascii_case(&format!("{ENV_PREFIX}__{key}")))
}

/// A URL fit for logs and output: credentials (`user:password@`) and the
/// query (which can carry `password=`) are replaced by `<hidden>`.
pub fn redacted_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(query) = out.find('?') {
        out.truncate(query);
        out.push_str("?<hidden>");
    }
    let scheme_end = out.find("://").map_or(0, |i| i + 3);
    if let Some(at) = out[scheme_end..].rfind('@') {
        out.replace_range(scheme_end..scheme_end + at, "<hidden>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        url: String,
        max: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Root {
        listen: String,
        database: Section,
    }

    impl Default for Root {
        fn default() -> Self {
            Root {
                listen: "127.0.0.1:8884".into(),
                database: Section::default(),
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn redacted_urls_hide_credentials_and_queries() {
        assert_eq!(
            redacted_url("postgres://roster:secret@db:5432/roster?sslmode=require&password=x"),
            "postgres://<hidden>@db:5432/roster?<hidden>"
        );
        assert_eq!(
            redacted_url("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            redacted_url("nats://token@nats:4222"),
            "nats://<hidden>@nats:4222"
        );
    }

    #[test]
    fn no_configuration_gives_the_defaults() {
        let root: Root = load_from(None, env(&[])).unwrap();
        assert_eq!(root.listen, "127.0.0.1:8884");
        assert_eq!(root.database.url, "");
    }

    #[test]
    fn environment_overrides_the_file_and_nests_with_double_underscores() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("roster.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:1\"\n[database]\nurl = \"postgres://a\"\nmax = 3\n",
        )
        .unwrap();
        let root: Root = load_from(
            Some(&file),
            env(&[
                ("ROSTER__LISTEN", "0.0.0.0:9000"),
                ("ROSTER__DATABASE__MAX", "7"),
                ("ROSTER_TEST_DATABASE_URL", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(root.listen, "0.0.0.0:9000");
        assert_eq!(root.database.url, "postgres://a");
        assert_eq!(root.database.max, 7);
    }

    #[test]
    fn environment_values_that_look_like_numbers_or_booleans_stay_text() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct Secrets {
            password: String,
            flag: String,
            ratio: String,
            port: u16,
            on: bool,
        }
        let secrets: Secrets = load_from(
            None,
            env(&[
                ("ROSTER__PASSWORD", "0012345678901"),
                ("ROSTER__FLAG", "True"),
                ("ROSTER__RATIO", "1.50"),
                ("ROSTER__PORT", "8884"),
                ("ROSTER__ON", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(secrets.password, "0012345678901");
        assert_eq!(secrets.flag, "True");
        assert_eq!(secrets.ratio, "1.50");
        assert_eq!(secrets.port, 8884);
        assert!(secrets.on);
    }

    #[test]
    fn an_unknown_key_fails_and_names_the_key() {
        let err = load_from::<Root>(None, env(&[("ROSTER__DATABASE__URLL", "x")])).unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("roster.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let err = load_from::<Root>(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}

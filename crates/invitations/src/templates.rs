//! The mails Roster sends: each template has a subject, a text part and an
//! HTML part, and names the variables it needs. Variables are inserted as
//! text (HTML-escaped in the HTML part; percent-encoded inside links).

use std::collections::BTreeMap;

/// A mail ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One template: its name, the variables it requires, and how it reads.
struct Template {
    name: &'static str,
    required: &'static [&'static str],
    subject: &'static str,
    /// Paragraphs; `{{name}}` is replaced by a variable, `{{link}}` by the
    /// template's link (if any).
    body: &'static [&'static str],
    /// The link's path and query, appended to `mail.base_url`.
    link: Option<&'static str>,
}

const TEMPLATES: &[Template] = &[
    Template {
        name: "invitation",
        required: &["secret_token"],
        subject: "You are invited to Roster",
        body: &[
            "You have been invited to create an account.",
            "Register here: {{link}}",
            "The invitation expires at {{expires_at}}. If you did not expect it, ignore this mail.",
        ],
        link: Some("/register?invitation_token={{secret_token}}"),
    },
    Template {
        name: "temporary_password",
        required: &["user_id", "secret_temporary_password"],
        subject: "Your temporary password",
        body: &[
            "A temporary password was requested for the account {{user_id}}.",
            "Temporary password: {{secret_temporary_password}}",
            "Use it to set a new password before {{expires_at}}. If you did not ask for it, ignore this mail: your password has not changed.",
        ],
        link: None,
    },
    Template {
        name: "second_factor_code",
        required: &["user_id", "secret_code"],
        subject: "Your login code",
        body: &[
            "A login to the account {{user_id}} asked for a code.",
            "Code: {{secret_code}}",
            "It works once, until {{expires_at}}. If you did not try to log in, someone knows your password: change it.",
        ],
        link: None,
    },
    Template {
        name: "login_token",
        required: &["user_id", "secret_token"],
        subject: "Your login link",
        body: &[
            "A login link was requested for the account {{user_id}}.",
            "Log in here: {{link}}",
            "The link works once, until {{expires_at}}. If you did not ask for it, ignore this mail.",
        ],
        link: Some("/login?token={{secret_token}}"),
    },
    Template {
        name: "validate_email",
        required: &["user_id", "secret_token"],
        subject: "Confirm your email address",
        body: &[
            "Confirm that this address belongs to the account {{user_id}}.",
            "Confirm here: {{link}}",
            "The link works until {{expires_at}}. If you did not expect this mail, ignore it.",
        ],
        link: Some("/validate-email?user_id={{user_id}}&token={{secret_token}}"),
    },
    Template {
        name: "email_changed",
        required: &["user_id", "new_email"],
        subject: "The email address of your account changed",
        body: &[
            "The primary email address of the account {{user_id}} was changed to {{new_email}}.",
            "Mails about the account, password resets included, now go there once it is confirmed.",
            "If you did not make this change, your account may be in someone else's hands: contact your administrator.",
        ],
        link: None,
    },
    Template {
        name: "address_in_use",
        required: &[],
        subject: "Someone tried to register with your address",
        body: &[
            "Someone tried to register a new account with this address, which already belongs to an account.",
            "If it was you, log in to your account, or ask for a temporary password if you forgot yours. If it was not, ignore this mail: nothing was created.",
        ],
        link: None,
    },
    Template {
        name: "notification",
        required: &["title"],
        subject: "{{title}}",
        body: &["{{body}}", "{{link}}"],
        link: Some("{{path}}"),
    },
];

/// Checks variables beyond presence: a notification's `path` must be a
/// path on Roster's own site (`/…`), so a link cannot lead elsewhere.
pub fn check_variable(key: &str, value: &str) -> Result<(), &'static str> {
    if key == "path"
        && !value.is_empty()
        && (!value.starts_with('/') || value.starts_with("//") || value.contains('\\'))
    {
        return Err("must be a path starting with a single `/`");
    }
    Ok(())
}

/// The names of every template.
pub fn names() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|t| t.name)
}

/// The variables `template` requires, or `None` for an unknown template.
pub fn required(template: &str) -> Option<&'static [&'static str]> {
    TEMPLATES
        .iter()
        .find(|t| t.name == template)
        .map(|t| t.required)
}

/// Renders `template` for `recipient_name` with `data`. Missing optional
/// variables read as empty; `None` for an unknown template.
pub fn render(
    template: &str,
    recipient_name: &str,
    data: &BTreeMap<String, String>,
    base_url: &str,
) -> Option<Rendered> {
    let template = TEMPLATES.iter().find(|t| t.name == template)?;
    let value = |key: &str| data.get(key).map(String::as_str).unwrap_or_default();
    let link = template.link.and_then(|path| {
        let path = fill(path, |key| percent_encode(value(key)));
        // A notification without a path has no link; a path always starts
        // below the base URL's root, so it cannot name another host.
        (!path.is_empty()).then(|| {
            let path = format!("/{}", path.trim_start_matches('/'));
            format!("{}{path}", base_url.trim_end_matches('/'))
        })
    });
    let text_value = |key: &str| -> String {
        if key == "link" {
            link.clone().unwrap_or_default()
        } else {
            value(key).to_string()
        }
    };
    let greeting = if recipient_name.is_empty() {
        "Hello,".to_string()
    } else {
        format!("Hello {recipient_name},")
    };
    let paragraphs: Vec<String> = template
        .body
        .iter()
        .map(|p| fill(p, text_value))
        .filter(|p| !p.trim().is_empty())
        .collect();
    let text = format!("{greeting}\n\n{}\n\n-- \nRoster\n", paragraphs.join("\n\n"));
    let html_paragraphs: String = template
        .body
        .iter()
        .map(|p| {
            fill(p, |key| {
                if key == "link" {
                    link.as_deref()
                        .map(|l| format!("<a href=\"{0}\">{0}</a>", escape_html(l)))
                        .unwrap_or_default()
                } else {
                    escape_html(value(key))
                }
            })
        })
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{p}</p>\n"))
        .collect();
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>{}</p>\n{html_paragraphs}<p>&mdash; Roster</p>\n</body></html>\n",
        escape_html(&greeting)
    );
    Some(Rendered {
        subject: fill(template.subject, |key| value(key).to_string()),
        text,
        html,
    })
}

/// `text` with every `{{name}}` replaced by `value(name)`.
fn fill(text: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push_str(&value(after[..end].trim()));
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986), so a
/// value cannot change a link's structure.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_invitation_links_to_registration_with_its_token() {
        let mail = render(
            "invitation",
            "",
            &data(&[("secret_token", "abc234"), ("expires_at", "2026-11-29")]),
            "https://roster.example.com/",
        )
        .unwrap();
        let link = "https://roster.example.com/register?invitation_token=abc234";
        assert!(mail.text.contains(link), "{}", mail.text);
        assert!(
            mail.html.contains(&format!("href=\"{link}\"")),
            "{}",
            mail.html
        );
        assert!(mail.text.starts_with("Hello,"));
    }

    #[test]
    fn values_cannot_inject_markup_or_change_links() {
        let mail = render(
            "validate_email",
            "<b>Eve</b>",
            &data(&[("user_id", "eve&x=1"), ("secret_token", "t\"><script>")]),
            "http://localhost:8080",
        )
        .unwrap();
        assert!(!mail.html.contains("<script>"));
        assert!(!mail.html.contains("<b>Eve"));
        assert!(
            mail.text
                .contains("user_id=eve%26x%3D1&token=t%22%3E%3Cscript%3E")
        );
    }

    #[test]
    fn every_template_renders_with_its_required_variables() {
        for name in names() {
            let vars: Vec<(&str, &str)> = required(name)
                .unwrap()
                .iter()
                .map(|k| (*k, "value"))
                .collect();
            let mail = render(name, "Ada", &data(&vars), "http://localhost").unwrap();
            assert!(!mail.subject.is_empty(), "{name}");
            assert!(mail.text.contains("Hello Ada,"), "{name}");
            assert!(mail.html.contains("<html>"), "{name}");
        }
        assert!(render("nope", "", &BTreeMap::new(), "").is_none());
        assert!(required("nope").is_none());
    }

    #[test]
    fn a_notification_link_stays_on_the_configured_site() {
        for path in [".evil.example/phish", "//evil.example", "@evil.example"] {
            let mail = render(
                "notification",
                "",
                &data(&[("title", "t"), ("path", path)]),
                "https://roster.example.com",
            )
            .unwrap();
            assert!(
                mail.text.contains("https://roster.example.com/"),
                "{path}: {}",
                mail.text
            );
            assert!(!mail.text.contains("roster.example.com."), "{path}");
        }
        assert!(check_variable("path", "/notifications/1").is_ok());
        for bad in [".evil", "//evil", "/a\\b", "evil"] {
            assert!(check_variable("path", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fill_keeps_unclosed_braces() {
        assert_eq!(fill("a {{b", |_| "x".into()), "a {{b");
        assert_eq!(fill("{{ a }}-{{b}}", |k| k.to_uppercase()), "A-B");
    }
}

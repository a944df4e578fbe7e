//! The configuration's keys: the list of known ones (the README's table, checked by a test),
//! a warning for each unknown key that names where it came from and the nearest known key, and
//! the effective configuration as `key = value` lines with secrets redacted.

use figment::value::{Dict, Value};
use figment::Figment;

/// Every key the configuration reads, as dotted paths. Arrays and free-form values are leaves.
pub const KNOWN: &[&str] = &[
    "bind",
    "data_dir",
    "database_url",
    "public_url",
    "master_key",
    "log_format",
    "secure_cookies",
    "trust_proxy",
    "trusted_proxies",
    "body_limit_bytes",
    "sqlite_readers",
    "backup_keep",
    "pg_bin_dir",
    "smtp.host",
    "smtp.port",
    "smtp.username",
    "smtp.password",
    "smtp.from",
    "smtp.tls",
    "telegram_login.bot_token",
    "telegram_login.bot_username",
    "telegram.api_base",
    "telegram.webhook_base",
    "telegram.poll_timeout_secs",
    "amocrm.client_id",
    "amocrm.client_secret",
    "amocrm.redirect_uri",
    "amocrm.consent_url",
    "amocrm.account_base",
    "amocrm.chats.channel_id",
    "amocrm.chats.secret",
    "amocrm.chats.base_url",
    "amocrm.chats.title",
    "worker.concurrency",
    "worker.lease_secs",
    "worker.shutdown_timeout_secs",
    "public_webhook_base",
    "vk.api_base",
    "max.api_base",
    "max.extra_ca_pem",
    "avito.api_base",
    "avito.poll_interval_secs",
    "whatsapp.api_base",
    "whatsapp.api_version",
    "sms.api_base",
    "sms.smsc_base",
    "sms.smsru_base",
    "sms.smsaero_base",
    "telegram_personal.gateway_url",
    "telegram_personal.include_bots",
    "allow_private_targets",
    "media_link_days",
    "tls.cert",
    "tls.key",
    "tls.http_bind",
    "tls.acme.domains",
    "tls.acme.email",
    "tls.acme.directory",
    "tls.acme.ca_pem",
    "tls.acme.renew_before_days",
    "blobs.store",
    "blobs.s3.endpoint",
    "blobs.s3.bucket",
    "blobs.s3.region",
    "blobs.s3.access_key_id",
    "blobs.s3.secret_access_key",
    "blobs.s3.path_style",
];

/// Environment variables with the `CHATTER_` prefix that are not configuration keys.
const ENV_ONLY: &[&str] = &["log"];

/// Keys whose values are never printed.
const SECRET_LEAVES: &[&str] = &[
    "master_key",
    "password",
    "client_secret",
    "secret",
    "bot_token",
    "secret_access_key",
];

/// One warning per unknown key: where it came from and the nearest known key.
pub fn unknown(fig: &Figment) -> Vec<String> {
    let Ok(root) = fig.extract::<Dict>() else {
        return Vec::new();
    };
    let mut leaves = Vec::new();
    walk(&root, "", &mut leaves);
    let mut out = Vec::new();
    for (path, _) in leaves {
        if KNOWN.contains(&path.as_str()) || ENV_ONLY.contains(&path.as_str()) {
            continue;
        }
        let from = fig.find_metadata(&path);
        let in_file =
            from.is_some_and(|m| m.source.as_ref().is_some_and(|s| s.file_path().is_some()));
        let near = nearest(&path);
        // The `CHATTER_` prefix is shared with other tools (test runners); only a variable that
        // looks like a misspelt key is worth a warning.
        if !in_file && near.is_none() {
            continue;
        }
        let origin = match from.and_then(|m| m.source.as_ref()) {
            Some(s) if s.file_path().is_some() => format!("in {s}"),
            _ => format!(
                "from the environment variable CHATTER_{}",
                path.to_uppercase().replace('.', "__")
            ),
        };
        let hint = match near {
            Some(k) => format!("did you mean `{k}`?"),
            None => "it is not one of the keys in the README's configuration table".into(),
        };
        out.push(format!(
            "unknown configuration key `{path}` ({origin}) is ignored; {hint}"
        ));
    }
    out
}

/// The known key closest to `path`, if it is close enough to be a misspelling.
fn nearest(path: &str) -> Option<&'static str> {
    let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    KNOWN
        .iter()
        .map(|k| {
            let whole = strsim::levenshtein(path, k);
            let tail = strsim::levenshtein(&last(path), &last(k));
            (whole.min(tail + 2), *k)
        })
        .min()
        .filter(|(d, _)| *d <= 2.max(path.len() / 4))
        .map(|(_, k)| k)
}

fn walk(d: &Dict, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (k, v) in d {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Dict(_, inner) if !KNOWN.contains(&path.as_str()) => walk(inner, &path, out),
            _ => out.push((path, v.clone())),
        }
    }
}

/// The effective configuration, one `key = value` line per key, sorted, secrets redacted.
/// `derived` are values computed at start (the database URL, the public URL) shown in place
/// of their unset keys.
pub fn effective(fig: &Figment, derived: &[(&str, Value)]) -> Vec<String> {
    let Ok(root) = fig.extract::<Dict>() else {
        return Vec::new();
    };
    let mut leaves = Vec::new();
    walk(&root, "", &mut leaves);
    let mut lines: Vec<(String, String)> = leaves
        .into_iter()
        // Unknown keys are ignored, so they are not part of the effective configuration.
        .filter(|(p, _)| KNOWN.contains(&p.as_str()))
        .map(|(p, v)| {
            let shown = show(&p, &v);
            (p, shown)
        })
        .collect();
    for (k, v) in derived {
        lines.retain(|(p, _)| p != k);
        lines.push((k.to_string(), show(k, v)));
    }
    lines.sort();
    lines
        .into_iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect()
}

fn show(path: &str, v: &Value) -> String {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    if SECRET_LEAVES.contains(&leaf) {
        return "\"(redacted)\"".into();
    }
    let json = serde_json::to_string(v).unwrap_or_else(|_| "?".into());
    if path == "database_url" {
        return redacted_url(&json);
    }
    json
}

/// `postgres://user:secret@host/db` → `postgres://user:(redacted)@host/db`.
pub fn redacted_url(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let rest = &s[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return s.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:(redacted){}",
            &s[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Toml};

    #[test]
    fn an_unknown_key_names_the_file_and_the_nearest_known_key() {
        let fig = Figment::from(Toml::string(
            "bind = \"0.0.0.0:8080\"\npublc_url = \"https://x\"\n[smtp]\nhots = \"mail\"\n[tls]\nhttp_bnd = \":80\"\n",
        ));
        let w = unknown(&fig).join("\n");
        assert!(
            w.contains("`publc_url`") && w.contains("did you mean `public_url`?"),
            "{w}"
        );
        assert!(
            w.contains("`smtp.hots`") && w.contains("`smtp.host`"),
            "{w}"
        );
        assert!(
            w.contains("`tls.http_bnd`") && w.contains("`tls.http_bind`"),
            "{w}"
        );
        assert!(!w.contains("`bind`"), "{w}");
    }

    #[test]
    fn secrets_never_show_in_the_effective_configuration() {
        let fig = Figment::from(Toml::string(
            "master_key = \"00ff\"\ndatabase_url = \"postgres://chatter:hunter2@db/chatter\"\n[smtp]\npassword = \"hunter2\"\nhost = \"mail\"\n",
        ));
        let lines = effective(&fig, &[]).join("\n");
        assert!(
            !lines.contains("hunter2") && !lines.contains("00ff"),
            "{lines}"
        );
        assert!(lines.contains("smtp.host = \"mail\""), "{lines}");
        assert!(
            lines.contains("postgres://chatter:(redacted)@db/chatter"),
            "{lines}"
        );
    }

    /// The README's configuration table and this list name the same keys.
    #[test]
    fn the_readme_documents_every_known_key() {
        let readme = include_str!("../../../README.md");
        for k in KNOWN {
            assert!(
                readme.contains(&format!("`{k}`")),
                "README's configuration table does not mention `{k}`"
            );
        }
    }
}

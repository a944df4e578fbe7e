//! `chatter check-config`: the sample production configuration passes as shipped; a
//! configuration that cannot work gets one clear message per problem (and `serve` refuses it
//! too), unknown keys are named with the nearest known key, secrets never print.

use crate::cli::{chatter, run, text};
use crate::tools;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn the_sample_production_configuration_passes_as_shipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // The ports of the sample (443, 80) are replaced by free ones: the test may run unprivileged.
    let out = run(chatter(tmp.path())
        .env("CHATTER_TLS__HTTP_BIND", "127.0.0.1:0")
        .args(["check-config", "--bind", "127.0.0.1:0", "--config"])
        .arg(tools::repo().join("deploy/chatter.toml"))
        .arg("--data-dir")
        .arg(&data));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(!stdout.contains("warning:"), "{stdout}");
    for line in [
        "tls.acme.domains = [\"chatter.example.ru\"]",
        "tls.acme.directory = \"https://acme-v02.api.letsencrypt.org/directory\"",
        "public_url = \"https://chatter.example.ru\"",
        "log_format = \"json\"",
        "# the configuration can work",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no `{line}` in:\n{stdout}"
        );
    }
    assert!(!data.exists(), "check-config creates nothing");
}

#[test]
fn what_cannot_work_gets_one_clear_message_each_and_serve_refuses_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Readable by the unprivileged user the check runs as when the tests run as root.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let key = tmp.path().join("key.pem");
    std::fs::write(&key, "not a key").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = tmp.path().join("chatter.toml");
    std::fs::write(
        &config,
        format!(
            r#"bind = "127.0.0.1:443"
public_url = "http://chatter.example.ru"
secure_cookies = true
database_url = "postgres://chatter:hunter2@127.0.0.1:1/chatter"
publik_webhook_base = "https://chatter.example.ru"
[telegram]
webhook_base = "https://chatter.example.ru:8080"
[tls]
cert = "{dir}/missing-cert.pem"
key = "{key}"
"#,
            dir = tmp.path().display(),
            key = key.display()
        ),
    )
    .expect("write chatter.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let (mut cmd, unprivileged_run) = unprivileged(tmp.path());
    let low_ports_for_everyone = !unprivileged_run
        || std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .is_some_and(|start| start <= 443);
    let out = run(cmd.arg("check-config").arg("--config").arg(&config));
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "refused:\n{stdout}");
    let errors: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    let expect = [
        "secure_cookies = true with the http:// public_url http://chatter.example.ru",
        "telegram.webhook_base = https://chatter.example.ru:8080: Telegram would refuse it as a webhook (port 8080 is not one of 443, 80, 88, 8443)",
        &format!("tls.cert {}/missing-cert.pem: cannot read it", tmp.path().display()),
        "cannot connect to the database postgres://chatter:(redacted)@127.0.0.1:1/chatter",
    ];
    for e in expect {
        assert_eq!(
            errors.iter().filter(|l| l.contains(e)).count(),
            1,
            "one message with `{e}` in:\n{stdout}"
        );
    }
    if low_ports_for_everyone {
        println!("this run may bind port 443: the capability message is not checked");
    } else {
        assert_eq!(
            errors
                .iter()
                .filter(
                    |l| l.contains("bind = 127.0.0.1:443: port 443 is below 1024")
                        && l.contains("CAP_NET_BIND_SERVICE")
                )
                .count(),
            1,
            "{stdout}"
        );
    }
    assert_eq!(
        errors.len(),
        expect.len() + usize::from(!low_ports_for_everyone),
        "nothing else is reported:\n{stdout}"
    );
    assert!(
        stdout.contains("warning: unknown configuration key `publik_webhook_base` (in ")
            && stdout.contains("did you mean `public_webhook_base`?"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2"),
        "the password is redacted:\n{stdout}"
    );
    assert!(stdout.contains("# effective configuration (secrets redacted)"));

    // `serve` refuses the same configuration before listening, with the same sentences.
    let out = run(unprivileged(tmp.path())
        .0
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data")));
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("the configuration cannot work"), "{stderr}");
    assert!(stderr.contains("Telegram would refuse it"), "{stderr}");
}

/// A webhook base Telegram would refuse (plain http, a port other than 443, 80, 88, 8443) is
/// refused at start even when the bots talk to a Bot API other than api.telegram.org (the fake,
/// a local Bot API server): the key, the value and the fix are named, by `check-config` and by
/// `serve`. `public_webhook_base` counts when Telegram has no base of its own.
#[test]
fn a_webhook_base_telegram_would_refuse_is_refused_by_check_and_serve() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [Case; 5] = [
        (
            &[("CHATTER_PUBLIC_WEBHOOK_BASE", "http://127.0.0.1:8080")],
            Some(
                "public_webhook_base = http://127.0.0.1:8080: Telegram would refuse it as a \
                 webhook (it only calls https:// URLs); use the public https:// address on port \
                 443, 80, 88 or 8443 (a TLS proxy in front of Chatter), or set \
                 telegram.webhook_base to such an address for Telegram alone",
            ),
        ),
        (
            &[(
                "CHATTER_TELEGRAM__WEBHOOK_BASE",
                "https://chatter.example.ru:9443",
            )],
            Some(
                "telegram.webhook_base = https://chatter.example.ru:9443: Telegram would refuse \
                 it as a webhook (port 9443 is not one of 443, 80, 88, 8443); use the public \
                 https:// address on port 443, 80, 88 or 8443 (a TLS proxy in front of \
                 Chatter), or leave it unset to poll",
            ),
        ),
        (
            // Telegram's own base wins: the general one is not given to Telegram.
            &[
                ("CHATTER_PUBLIC_WEBHOOK_BASE", "http://127.0.0.1:8080"),
                (
                    "CHATTER_TELEGRAM__WEBHOOK_BASE",
                    "https://chatter.example.ru:8443",
                ),
            ],
            None,
        ),
        (
            &[("CHATTER_PUBLIC_WEBHOOK_BASE", "https://chatter.example.ru")],
            None,
        ),
        (&[("CHATTER_PUBLIC_WEBHOOK_BASE", "")], None),
    ];
    for (env, refusal) in cases {
        let mut check = chatter(tmp.path());
        check
            .env("CHATTER_TELEGRAM__API_BASE", "http://127.0.0.1:9")
            .args(["check-config", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(&data);
        for (k, v) in env {
            check.env(k, v);
        }
        let out = run(&mut check);
        let stdout = text(&out.stdout);
        let telegram: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("error: ") && l.contains("Telegram would refuse"))
            .collect();
        match refusal {
            Some(expected) => {
                assert_eq!(
                    telegram,
                    [format!("error: {expected}")],
                    "{env:?}:\n{stdout}"
                );
                let mut serve = chatter(tmp.path());
                serve
                    .env("CHATTER_TELEGRAM__API_BASE", "http://127.0.0.1:9")
                    .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
                    .arg(&data);
                for (k, v) in env {
                    serve.env(k, v);
                }
                let out = run(&mut serve);
                let stderr = text(&out.stderr);
                assert!(!out.status.success(), "serve refuses {env:?}");
                assert!(stderr.contains(expected), "{env:?}:\n{stderr}");
            }
            None => assert!(telegram.is_empty(), "{env:?} passes:\n{stdout}"),
        }
    }
    assert!(!data.exists(), "nothing was created");
}

/// The program as an unprivileged user: itself when the tests do not run as root, else
/// `nobody` with no capabilities (through util-linux's `setpriv`). The flag says whether it
/// really runs unprivileged.
fn unprivileged(cwd: &std::path::Path) -> (Command, bool) {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    let plain = chatter(cwd);
    if !root {
        return (plain, true);
    }
    let Some(setpriv) = tools::find("setpriv", "util-linux") else {
        return (plain, false);
    };
    let mut c = Command::new(setpriv);
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ])
    .arg(plain.get_program());
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.current_dir(cwd);
    (c, true)
}

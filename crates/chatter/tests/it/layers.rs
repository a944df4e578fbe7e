//! The order of `chatter-core`'s folders, kept true (issue 10: "the circle in core is broken").
//! A folder may name only the folders below it:
//!
//! ```text
//! sources      (adding and running sources, hooks, pollers, the API source's inbound endpoint)
//!   ↓
//! inbox  ⇄  crm   (they meet only through the outbox: inbox → crm::sync::outbox (which also
//!   ↓        ↓     names a deal's pipeline and stage for templates), and
//!   ↓        ↓     crm → inbox::{insert_outgoing, Outgoing} for answers written in the CRM)
//! api_source      (the API source's management, signing and outgoing webhooks)
//!   ↓
//! connectors      (what a stored source is, and its kind's connector)
//! ```
//!
//! `accounts`, `jobs`, `reports`, `billing` and `automation` sit beside them: `jobs` names none
//! of them, `billing` only `jobs` (the inbox's send job and the CRM drain ask `billing::gate`
//! whether the company may send; `accounts` starts a new company's trial), `accounts` only
//! `jobs`, `reports` none. `automation` meets the inbox the way the CRM does,
//! at narrow seams: the inbox queues the auto-reply check through `automation::replies::trigger`
//! in the storing transaction, and an auto-reply is sent through `inbox::insert_outgoing` (its
//! variables filled by `inbox::templates::render_in`, mirrored through `crm::sync::outbox`). The check reads every `crate::…` path in a folder's files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The folders whose imports are checked, with what each may name.
const ALLOWED: &[(&str, &[&str])] = &[
    ("connectors", &[]),
    ("api_source", &["connectors", "jobs"]),
    (
        "inbox",
        &[
            "connectors",
            "api_source",
            "jobs",
            "billing::gate",
            "crm::sync::outbox",
            "automation::replies::trigger",
        ],
    ),
    (
        "crm",
        &[
            "connectors",
            "jobs",
            "accounts",
            "billing::gate",
            "inbox::insert_outgoing",
            "inbox::Outgoing",
        ],
    ),
    ("sources", &["connectors", "api_source", "inbox", "jobs"]),
    ("accounts", &["jobs", "billing::start_trial"]),
    ("billing", &["jobs"]),
    ("jobs", &[]),
    ("reports", &[]),
    (
        "automation",
        &[
            "connectors",
            "jobs",
            "inbox::insert_outgoing",
            "inbox::Outgoing",
            "inbox::reply_window_open",
            "inbox::labels::add_labels",
            "inbox::templates::render_in",
            "crm::sync::outbox",
        ],
    ),
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = e.expect("directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a::b…` path in `text`, grouped imports (`crate::{a, b::c}`,
/// `crate::a::{b, c}`) spread out.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let prefix = &rest[..end];
        match rest[end..].strip_prefix('{') {
            Some(group) => {
                let close = group.find('}').unwrap_or(group.len());
                out.extend(
                    group[..close]
                        .split(',')
                        .map(|p| p.trim().replace(' ', ""))
                        .filter(|p| !p.is_empty())
                        .map(|p| format!("{prefix}{p}")),
                );
            }
            None => out.push(prefix.trim_end_matches(':').to_string()),
        }
    }
    out
}

#[test]
fn core_folders_name_only_the_folders_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chatter-core/src");
    let folders: BTreeSet<&str> = ALLOWED.iter().map(|(f, _)| *f).collect();
    let mut wrong = Vec::new();
    let mut seen = 0;
    for (folder, allowed) in ALLOWED {
        let mut list = Vec::new();
        files(&src.join(folder), &mut list);
        assert!(!list.is_empty(), "no files in chatter-core/src/{folder}");
        for f in list {
            let text = std::fs::read_to_string(&f).expect("read source");
            for path in crate_paths(&text) {
                seen += 1;
                let top = path.split("::").next().unwrap_or("");
                if top == *folder || !folders.contains(top) {
                    continue;
                }
                let ok = allowed.iter().any(|a| {
                    path == *a
                        || path.starts_with(&format!("{a}::"))
                        || (!a.contains("::") && top == *a)
                });
                if !ok {
                    let shown = f.strip_prefix(&src).unwrap_or(&f).display().to_string();
                    wrong.push(format!("{shown}: crate::{path}"));
                }
            }
        }
    }
    assert!(
        seen > 100,
        "read only {seen} crate paths: is the parser broken?"
    );
    assert!(
        wrong.is_empty(),
        "a folder names one it may not (see the order at the top of layers.rs):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_path_reader_sees_grouped_and_plain_imports() {
    let got =
        crate_paths("use crate::{inbox::send, crm};\nlet x = crate::crm::sync::outbox::f(1);");
    assert_eq!(got, ["inbox::send", "crm", "crm::sync::outbox::f"]);
}

//! `chatter leads classify | eval | train` as a user runs them: JSON lines in, JSON lines or
//! figures out, no configuration and no database (each test runs in an empty directory).

use crate::cli::{chatter, text};
use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

/// Runs `chatter leads <args>` in `dir` with `input` on stdin.
fn leads(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = chatter(dir)
        .arg("leads")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chatter leads");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("chatter leads output")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

const REQUEST: &str = "Всем привет! Нужен сантехник завтра с утра, течёт смеситель на кухне. Химки";
const AD: &str = "Сантехник с опытом 15 лет. Установка, замена, ремонт. Звоните +7 916 204-18-33";

#[test]
fn classify_answers_every_line_with_its_id_verdict_score_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = format!(
        "{}\n\n{}\n{}\n",
        serde_json::json!({"id": 1, "text": REQUEST}),
        serde_json::json!({"id": "msg-2", "text": AD}),
        serde_json::json!({"id": {"chat": 7, "message": 3}, "text": "Кто сделает лендинг за неделю? Бюджет 30к"}),
    );
    let out = leads(dir.path(), &["classify"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let ids: Vec<&serde_json::Value> = lines.iter().map(|l| &l["id"]).collect();
    assert_eq!(
        ids,
        [
            &serde_json::json!(1),
            &serde_json::json!("msg-2"),
            &serde_json::json!({"chat": 7, "message": 3})
        ]
    );
    let leads: Vec<bool> = lines.iter().map(|l| l["lead"] == true).collect();
    assert_eq!(leads, [true, false, true], "{lines:?}");
    for l in &lines {
        let score = l["score"].as_f64().expect("score is a number");
        assert!((0.0..=1.0).contains(&score), "{l}");
        assert_eq!(score >= 0.5, l["lead"] == true, "{l}");
        let reason = l["reason"].as_str().expect("reason");
        assert!(reason.contains("похоже на запрос клиента: "), "{l}");
    }
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("номер телефона")
            || lines[1]["reason"].as_str().unwrap_or("").contains("опыт"),
        "the ad's reason names what gave it away: {}",
        lines[1]
    );
    // No data directory, database or configuration was made.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn eval_prints_precision_recall_and_f1_of_a_small_known_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two requests, an ad, an ad labelled as a lead (a false negative of the model) and a
    // request labelled as not a lead (a false positive): 2 TP, 1 FP, 1 FN, 1 TN.
    let file = dir.path().join("labelled.jsonl");
    let rows = [
        (REQUEST, true),
        (
            "Ищу репетитора по математике для сына, 8 класс, онлайн",
            true,
        ),
        (AD, false),
        (
            "Грузоперевозки по городу и области! Газель, грузчики, 1200 ₽/час. Звоните",
            true,
        ),
        (
            "Нужна газель с грузчиками завтра, переезд из однушки",
            false,
        ),
    ];
    let body: String = rows
        .iter()
        .map(|(t, l)| format!("{}\n", serde_json::json!({"text": t, "lead": l})))
        .collect();
    std::fs::write(&file, body).expect("write file");
    let out = leads(dir.path(), &["eval", file.to_str().expect("path")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "lines 5, leads 3",
        "precision 0.667",
        "recall 0.667",
        "F1 0.667",
        "true positives 2, false positives 1, false negatives 1, true negatives 1",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
}

#[test]
fn bad_lines_are_named_by_number_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = format!(
        "{}\nnot json\n{}\n[1, 2]\n{}\n{}\n",
        serde_json::json!({"id": 1, "text": REQUEST}),
        serde_json::json!({"id": 2}),
        serde_json::json!({"text": AD}),
        serde_json::json!({"id": 5, "text": AD}),
    );
    let out = leads(dir.path(), &["classify"], &input);
    assert!(
        !out.status.success(),
        "bad lines make the exit status non-zero"
    );
    let stderr = text(&out.stderr);
    for expected in [
        "line 2: is not JSON",
        "line 3: has no \"text\"; skipped",
        "line 4: is not a JSON object",
        "line 5: has no \"id\"; skipped",
        "4 of 6 lines were skipped",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
    let ids: Vec<serde_json::Value> = json_lines(&out).iter().map(|l| l["id"].clone()).collect();
    assert_eq!(ids, [serde_json::json!(1), serde_json::json!(5)]);

    let file = dir.path().join("labelled.jsonl");
    let labelled = format!(
        "{}\n{}\n",
        serde_json::json!({"text": REQUEST, "lead": "yes"}),
        serde_json::json!({"text": AD, "lead": false}),
    );
    std::fs::write(&file, labelled).expect("write file");
    let out = leads(dir.path(), &["eval", file.to_str().expect("path")], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 1: \"lead\" is \"yes\", expected true or false"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("lines 1, leads 0"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn train_writes_a_model_that_classify_reads_and_a_bad_model_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A niche the built-in model knows nothing about: aquarium service. Requests and ads.
    let rows = [
        ("Нужен аквариумист почистить аквариум на 200 литров", true),
        (
            "Кто обслуживает аквариумы? Рыбки болеют, нужен специалист",
            true,
        ),
        ("Ищу мастера запустить морской аквариум", true),
        ("Посоветуйте аквариумиста на регулярное обслуживание", true),
        (
            "Обслуживание аквариумов! Чистка, запуск, лечение рыб. Звоните",
            false,
        ),
        ("Продаю аквариум 100 литров с тумбой, недорого", false),
        (
            "Аквариумист с опытом 10 лет, выезд по городу, скидки",
            false,
        ),
        ("Какие рыбки уживаются с петушком? Просто интересно", false),
    ];
    let body: String = rows
        .iter()
        .map(|(t, l)| format!("{}\n", serde_json::json!({"text": t, "lead": l})))
        .collect();
    let file = dir.path().join("aquarium.jsonl");
    std::fs::write(&file, body).expect("write file");
    let model = dir.path().join("aquarium.model");
    let out = leads(
        dir.path(),
        &[
            "train",
            file.to_str().expect("path"),
            "--out",
            model.to_str().expect("path"),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("trained on 8 lines (4 leads)"),
        "{}",
        text(&out.stdout)
    );
    let input = format!(
        "{}\n{}\n",
        serde_json::json!({"id": 1, "text": "Нужен аквариумист, кто свободен на выходных?"}),
        serde_json::json!({"id": 2, "text": "Чистка аквариумов недорого, звоните"}),
    );
    let out = leads(
        dir.path(),
        &["classify", "--model", model.to_str().expect("path")],
        &input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verdicts: Vec<bool> = json_lines(&out).iter().map(|l| l["lead"] == true).collect();
    assert_eq!(verdicts, [true, false], "{}", text(&out.stdout));

    let bad = dir.path().join("not-a-model");
    std::fs::write(&bad, "hello").expect("write");
    let out = leads(
        dir.path(),
        &["classify", "--model", bad.to_str().expect("path")],
        &input,
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is not a usable model") && stderr.contains("not a Chatter lead model"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is classified with a bad model"
    );
}

#[test]
fn help_lists_the_leads_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let help = crate::cli::run_ok(chatter(dir.path()).arg("--help"));
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("leads ")),
        "{help}"
    );
    let leads_help = crate::cli::run_ok(chatter(dir.path()).args(["leads", "--help"]));
    for command in ["classify", "eval", "train"] {
        assert!(
            leads_help
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} in:\n{leads_help}"
        );
    }
}

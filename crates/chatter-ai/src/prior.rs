//! The fixture set (`fixtures/leads.jsonl`, compiled into the binary) and the built-in model
//! trained on it.
//!
//! The prior is trained lazily on first use rather than in `build.rs`: training 700 messages
//! takes a fraction of a second, a build script would need the feature code compiled twice
//! (once for the host) and a 1 MiB generated file in every build, and the fixture set stays the
//! one source of truth that a change of the features picks up without a stale artefact.

use crate::model::LeadModel;
use serde::Deserialize;
use std::sync::OnceLock;

const FIXTURES: &str = include_str!("../fixtures/leads.jsonl");
/// Training passes of the prior.
pub const PRIOR_EPOCHS: usize = 12;

/// One labelled message of the fixture set.
#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    pub id: u64,
    /// RFC 3339 UTC time; lines are in this order.
    pub ts: String,
    pub chat: String,
    pub niche: String,
    /// request, seller_ad, spam, job_seeker, vacancy, chitchat, noncommercial_question.
    pub kind: String,
    pub lead: bool,
    pub text: String,
}

/// The fixture set in time order.
pub fn fixtures() -> &'static [Labelled] {
    static ROWS: OnceLock<Vec<Labelled>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let mut rows: Vec<Labelled> = FIXTURES
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("the fixture set is valid JSON lines"))
            .collect();
        rows.sort_by(|a, b| a.ts.cmp(&b.ts));
        rows
    })
}

/// The first `share` of rows by time (training) and the rest (testing).
pub fn time_split(rows: &[Labelled], share: f64) -> (&[Labelled], &[Labelled]) {
    let at = ((rows.len() as f64) * share).round() as usize;
    rows.split_at(at.min(rows.len()))
}

/// A model trained on the given rows with the prior's settings.
pub fn train_on(rows: &[Labelled]) -> LeadModel {
    LeadModel::train(rows.iter().map(|r| (r.text.as_str(), r.lead)), PRIOR_EPOCHS)
}

/// The "unknown niche" experiment: a model trained on every other niche judges the niche's
/// messages after its first `marks` (by time), then learns those `marks` messages as marks
/// and judges the same later messages again. Returns `[before, after]`.
pub fn left_out_niche(niche: &str, marks: usize) -> Vec<crate::eval::Metrics> {
    use crate::Trainable;
    let rows = fixtures();
    let others: Vec<Labelled> = rows.iter().filter(|r| r.niche != niche).cloned().collect();
    let own: Vec<&Labelled> = rows.iter().filter(|r| r.niche == niche).collect();
    let (marked, later) = own.split_at(marks.min(own.len()));
    let mut model = train_on(&others);
    let judge =
        |m: &LeadModel| crate::eval::evaluate(m, later.iter().map(|r| (r.text.as_str(), r.lead)));
    let before = judge(&model);
    for r in marked {
        model.learn(&r.text, r.lead);
    }
    vec![before, judge(&model)]
}

/// [`left_out_niche`] for every niche of the fixture set, the counts summed: `(before, after)`.
pub fn every_niche_left_out(marks: usize) -> (crate::eval::Metrics, crate::eval::Metrics) {
    let niches: std::collections::BTreeSet<&str> =
        fixtures().iter().map(|r| r.niche.as_str()).collect();
    let (mut before, mut after) = (
        crate::eval::Metrics::default(),
        crate::eval::Metrics::default(),
    );
    for niche in niches {
        let m = left_out_niche(niche, marks);
        before.merge(&m[0]);
        after.merge(&m[1]);
    }
    (before, after)
}

/// The built-in model: trained on the whole fixture set at first use.
pub fn builtin() -> &'static LeadModel {
    static PRIOR: OnceLock<LeadModel> = OnceLock::new();
    PRIOR.get_or_init(|| train_on(fixtures()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::evaluate;
    use crate::model::LeadModel;
    use crate::{LeadClassifier, Trainable};

    #[test]
    fn the_fixture_set_has_what_its_readme_promises() {
        let rows = fixtures();
        assert!(rows.len() >= 600, "{} rows", rows.len());
        let niches: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r.niche.as_str()).collect();
        assert!(niches.len() >= 8, "{niches:?}");
        for r in rows {
            assert_eq!(r.lead, r.kind == "request", "line {}: {}", r.id, r.text);
        }
    }

    /// The time-ordered split the bench reports: train on the first 70%, test on the rest.
    /// Measured 0.96 precision and 0.96 recall (204 messages); the gate leaves a margin for
    /// feature tuning, and fails if the model breaks.
    #[test]
    fn quality_on_the_held_out_later_messages() {
        let (train, test) = time_split(fixtures(), 0.7);
        let model = train_on(train);
        let m = evaluate(&model, test.iter().map(|r| (r.text.as_str(), r.lead)));
        assert!(m.total() >= 180, "{m:?}");
        assert!(
            m.precision() >= 0.9,
            "precision {:.3}: {m:?}",
            m.precision()
        );
        assert!(m.recall() >= 0.9, "recall {:.3}: {m:?}", m.recall());
    }

    /// Each niche in turn unknown to the model, then 50 marks of its earlier messages: the
    /// later ones, summed over the niches, are judged at least as well, and F1 stays high.
    #[test]
    fn marks_on_an_unknown_niche_teach_it() {
        let (before, after) = every_niche_left_out(50);
        eprintln!("before {before:?} after {after:?}");
        assert!(before.total() >= 150, "{before:?}");
        assert!(
            after.f1() >= before.f1(),
            "before {before:?} after {after:?}"
        );
        assert!(after.f1() >= 0.85, "after {after:?}");
    }

    /// A real-estate agency wants owners who sell (their listings), which the prior calls ads:
    /// a few marks turn a confident verdict, and the marks carry over to similar messages.
    #[test]
    fn a_few_marks_flip_a_confident_verdict() {
        let mut model = builtin().clone();
        let text = "Продаю двушку без посредников, евроремонт, документы готовы";
        let first = model.classify(text);
        assert!(!first.lead && first.score < 0.2, "{first:?}");
        let mut marks = 0;
        while !model.classify(text).lead {
            model.learn(text, true);
            marks += 1;
            assert!(
                marks <= 10,
                "still {:?} after 10 marks",
                model.classify(text)
            );
        }
        assert!(
            marks >= 2,
            "one mark should not overturn a confident verdict"
        );
        assert_eq!(model.marks(), marks);
        let similar = "Продаю однушку без посредников, документы готовы";
        assert!(
            model.classify(similar).score > builtin().classify(similar).score + 0.2,
            "{:?}",
            model.classify(similar)
        );
        // Requests elsewhere are still requests, ads elsewhere still ads.
        assert!(model.classify("Нужен сантехник завтра, течёт кран").lead);
        assert!(
            !model
                .classify("Грузоперевозки по городу! Газель, грузчики. Звоните")
                .lead
        );
    }

    #[test]
    fn the_prior_explains_its_verdicts() {
        let model = builtin();
        let request = model.classify("Кто сделает лендинг за неделю? Бюджет 30 тысяч");
        assert!(request.lead, "{request:?}");
        assert!(
            request.reason.contains("вопрос «кто сделает»"),
            "{request:?}"
        );
        assert!(
            request.reason.starts_with("похоже на запрос клиента: "),
            "{request:?}"
        );
        let ad = model.classify("Создаю сайты на Тильде от 5000 ₽, звоните +7 916 204-18-33");
        assert!(!ad.lead && ad.score < 0.3, "{ad:?}");
        assert!(
            ad.reason.starts_with("не похоже на запрос клиента: "),
            "{ad:?}"
        );
        assert!(
            ad.reason.contains("номер телефона") || ad.reason.contains("«звоните»"),
            "{ad:?}"
        );
    }

    #[test]
    fn a_model_survives_bytes_and_damage_is_refused() {
        let mut model = train_on(&fixtures()[..200]);
        model.learn("Ищу репетитора по химии", true);
        let bytes = model.snapshot();
        let back = LeadModel::from_bytes(&bytes).expect("round trip");
        assert_eq!(back, model);
        assert_eq!(back.marks(), 1);
        let text = "Нужна газель с грузчиками завтра";
        assert_eq!(back.classify(text), model.classify(text));
        use crate::ModelError;
        assert_eq!(LeadModel::from_bytes(b"nope"), Err(ModelError::NotAModel));
        assert!(matches!(
            LeadModel::from_bytes(&bytes[..bytes.len() - 1]),
            Err(ModelError::Length { .. })
        ));
        let mut newer = bytes.clone();
        newer[4] = 9;
        assert_eq!(LeadModel::from_bytes(&newer), Err(ModelError::Version(9)));
        let mut nan = bytes;
        nan[14..18].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(LeadModel::from_bytes(&nan), Err(ModelError::NotFinite));
    }
}

//! The LLM backend and the cascade against the fake OpenAI-compatible server: the request a
//! provider sees, the structured-output fallbacks, retries on 429/5xx, timeouts, nonsense, and
//! the cascade's band, cache and monthly budget, with the embedded verdict standing whenever
//! the LLM cannot answer.

use chatter_ai::llm::{Cascade, LlmAuth, LlmClient, LlmConfig, LlmError};
use chatter_ai::prior::builtin;
use chatter_ai::LeadClassifier;
use chatter_fakes::{FakeLlm, LlmFault};
use std::time::Duration;

fn client(fake: &FakeLlm, auth: LlmAuth) -> LlmClient {
    let mut config = LlmConfig::new(&fake.base_url(), "yandexgpt-lite", auth);
    config.timeout = Duration::from_millis(500);
    LlmClient::new(config).expect("client")
}

const REQUEST: &str = "Посоветуйте юриста по наследству, нужно оспорить завещание";
const AD: &str = "Юридические услуги недорого, звоните, скидка 20%";

#[tokio::test]
async fn the_request_carries_the_model_the_schema_the_text_and_the_key() {
    let fake = FakeLlm::start().await.expect("fake");
    let llm = client(&fake, LlmAuth::ApiKey("k-123".into()));
    let v = llm.judge(REQUEST).await.expect("verdict");
    assert!(v.lead && v.score > 0.9, "{v:?}");
    assert_eq!(v.backend, "llm");
    assert!(v.reason.starts_with("LLM: просит услугу"), "{v:?}");
    let ad = llm.judge(AD).await.expect("verdict");
    assert!(!ad.lead, "{ad:?}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let call = &calls[0];
    assert_eq!(call.header("authorization"), Some("Api-Key k-123"));
    assert_eq!(call.body["model"], "yandexgpt-lite");
    assert_eq!(call.body["temperature"], 0);
    assert_eq!(call.body["response_format"]["type"], "json_schema");
    assert_eq!(
        call.body["response_format"]["json_schema"]["name"],
        "lead_verdict"
    );
    assert_eq!(call.body["messages"][1]["role"], "user");
    assert_eq!(call.body["messages"][1]["content"], REQUEST);

    let mut config = LlmConfig::new(&fake.base_url(), "m", LlmAuth::Bearer("t-9".into()));
    config.extra_headers = vec![("x-folder-id".into(), "b1g-folder".into())];
    let bearer = LlmClient::new(config).expect("client");
    bearer.judge(REQUEST).await.expect("verdict");
    assert_eq!(fake.calls()[2].header("authorization"), Some("Bearer t-9"));
    assert_eq!(fake.calls()[2].header("x-folder-id"), Some("b1g-folder"));

    let mut bad_ca = LlmConfig::new(&fake.base_url(), "m", LlmAuth::Bearer("t".into()));
    bad_ca.extra_root_ca_pem = Some(b"not a certificate".to_vec());
    let refused = LlmClient::new(bad_ca).err().expect("a bad CA is refused");
    assert!(refused.to_string().contains("extra root CA"), "{refused}");
}

#[tokio::test]
async fn a_server_without_json_schema_gets_json_object_then_a_plain_prompt() {
    let fake = FakeLlm::start().await.expect("fake");
    fake.refuse_json_schema(true);
    let llm = client(&fake, LlmAuth::Bearer("t".into()));
    assert!(llm.judge(REQUEST).await.expect("verdict").lead);
    assert!(llm.judge(AD).await.is_ok());
    let formats: Vec<String> = fake
        .calls()
        .iter()
        .map(|c| {
            c.body["response_format"]["type"]
                .as_str()
                .unwrap_or("none")
                .to_owned()
        })
        .collect();
    assert_eq!(
        formats,
        ["json_schema", "json_object", "json_object"],
        "the fallback sticks"
    );

    fake.refuse_json_object(true);
    let v = llm
        .judge(REQUEST)
        .await
        .expect("a fenced answer to a plain prompt is read");
    assert!(v.lead, "{v:?}");
    let last = fake.calls().pop().expect("call");
    assert!(last.body.get("response_format").is_none(), "{}", last.body);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_given_up() {
    let fake = FakeLlm::start().await.expect("fake");
    let llm = client(&fake, LlmAuth::Bearer("t".into()));
    fake.fail_next(LlmFault::RateLimited {
        retry_after_secs: 0,
    });
    fake.fail_next(LlmFault::Status(502));
    assert!(
        llm.judge(REQUEST)
            .await
            .expect("third attempt answers")
            .lead
    );
    assert_eq!(fake.calls().len(), 3);

    for _ in 0..3 {
        fake.fail_next(LlmFault::RateLimited {
            retry_after_secs: 0,
        });
    }
    assert_eq!(llm.judge(REQUEST).await, Err(LlmError::RateLimited(2)));
    fake.fail_next(LlmFault::RateLimited {
        retry_after_secs: 3600,
    });
    assert_eq!(
        llm.judge(REQUEST).await,
        Err(LlmError::RateLimited(0)),
        "an hour's Retry-After is not waited for"
    );
    for _ in 0..3 {
        fake.fail_next(LlmFault::Status(500));
    }
    assert!(matches!(
        llm.judge(REQUEST).await,
        Err(LlmError::Status { status: 500, .. })
    ));
}

#[tokio::test]
async fn a_hang_times_out_and_nonsense_is_refused() {
    let fake = FakeLlm::start().await.expect("fake");
    let llm = client(&fake, LlmAuth::Bearer("t".into()));
    fake.fail_next(LlmFault::Hang);
    assert_eq!(llm.judge(REQUEST).await, Err(LlmError::Timeout(500)));
    fake.fail_next(LlmFault::Nonsense);
    assert!(matches!(
        llm.judge(REQUEST).await,
        Err(LlmError::Nonsense(_))
    ));
    let unauthorised = LlmClient::new(LlmConfig {
        base_url: format!("{}/nowhere", fake.base_url()),
        ..LlmConfig::new(&fake.base_url(), "m", LlmAuth::Bearer("t".into()))
    })
    .expect("client");
    assert!(matches!(
        unauthorised.judge(REQUEST).await,
        Err(LlmError::Status { status: 404, .. })
    ));
}

#[tokio::test]
async fn the_cascade_asks_only_when_unsure_caches_and_keeps_to_its_budget() {
    let fake = FakeLlm::start().await.expect("fake");
    let sure_lead = "Нужен сантехник завтра, течёт кран";
    let sure_ad = "Сантехник с опытом 15 лет. Звоните +7 916 204-18-33";
    let local = builtin();
    assert!(local.classify(sure_lead).score >= 0.7 && local.classify(sure_ad).score < 0.3);

    let cascade = Cascade::new(local.clone(), client(&fake, LlmAuth::Bearer("t".into())), 2);
    for text in [sure_lead, sure_ad] {
        let v = cascade.classify(text, "2026-12").await;
        assert_eq!(v.verdict.backend, "embedded", "{v:?}");
    }
    assert!(fake.calls().is_empty(), "sure verdicts cost no call");

    // Everything is "unsure" from here on.
    let mut cascade = cascade;
    cascade.low = 0.0;
    cascade.high = 1.01;
    let first = cascade.classify(REQUEST, "2026-12").await;
    assert_eq!(first.verdict.backend, "llm");
    assert!(first.verdict.lead && !first.cached);
    let again = cascade
        .classify(
            "посоветуйте ЮРИСТА по наследству — нужно оспорить завещание!",
            "2026-12",
        )
        .await;
    assert!(
        again.cached,
        "the same text, normalised, is answered from the cache"
    );
    assert_eq!(fake.calls().len(), 1);

    fake.fail_next(LlmFault::Status(400));
    let failed = cascade.classify(AD, "2026-12").await;
    assert_eq!(
        failed.verdict.backend, "embedded",
        "the embedded verdict stands"
    );
    assert!(matches!(
        failed.llm_error,
        Some(LlmError::Status { status: 400, .. })
    ));
    assert_eq!(cascade.calls_this_month(), 2);

    let over = cascade.classify("Ищу репетитора по химии", "2026-12").await;
    assert_eq!(over.llm_error, Some(LlmError::BudgetExhausted(2)));
    assert_eq!(over.verdict, local.classify("Ищу репетитора по химии"));
    assert_eq!(fake.calls().len(), 2, "no call over the budget");

    let next_month = cascade.classify("Ищу репетитора по химии", "2027-01").await;
    assert_eq!(next_month.verdict.backend, "llm");
    assert_eq!(next_month.llm_error, None);
}

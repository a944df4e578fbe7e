//! `kinds`: webhook ingest per source kind. For each kind with a webhook (Telegram for
//! comparison, VK Callback API, Max, Avito, the API source, WhatsApp, SMS) a fresh release
//! server in webhook mode against the in-process fakes, one source added through the form, then
//! closed-loop load from keep-alive clients posting correctly signed webhooks. A 2xx means the
//! message is committed, so afterwards the inbound rows must equal the 2xx answers.

use crate::ingest::mark;
use crate::server::{self, Common, Run, Server};
use crate::telegram;
use anyhow::{bail, Context as _};
use chatter_fakes::{FakeAvito, FakeMax, FakeSms, FakeTelegram, FakeVk, FakeWhatsApp};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderValue, COOKIE, LOCATION};
use reqwest::StatusCode;
use serde_json::json;
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Seconds of measured load per kind.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent keep-alive webhook clients.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Distinct customers the messages come from.
    #[arg(long, default_value_t = 1000)]
    customers: u64,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
}

const KINDS: &[&str] = &[
    "Telegram",
    "VK",
    "Max",
    "Avito",
    "API source",
    "WhatsApp",
    "SMS",
];
const SHOP_NUMBER: &str = "74950001122";

/// Every fake the server may talk to; they stop when dropped.
struct Fakes {
    telegram: FakeTelegram,
    vk: FakeVk,
    max: FakeMax,
    avito: FakeAvito,
    whatsapp: FakeWhatsApp,
    sms: FakeSms,
}

/// How one kind's webhook is posted.
#[derive(Clone)]
enum Hook {
    Telegram {
        secret: String,
    },
    Vk {
        secret: String,
        group_id: i64,
    },
    Max {
        secret: String,
    },
    Avito {
        user_id: i64,
    },
    Api {
        secret: String,
    },
    WhatsApp {
        app_secret: String,
        pnid: String,
        waba: String,
    },
    Sms,
}

struct Row {
    kind: &'static str,
    run: Run,
    accepted: u64,
    stored: i64,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    if args.common.database_url.is_some() {
        bail!("`kinds` needs a fresh database per kind: run it on SQLite (no --database-url)");
    }
    let binary = args.common.binary()?;
    let mut rows = Vec::new();
    for kind in KINDS {
        let fakes = Fakes {
            telegram: FakeTelegram::start().await?,
            vk: FakeVk::start().await?,
            max: FakeMax::start().await?,
            avito: FakeAvito::start().await?,
            whatsapp: FakeWhatsApp::start().await?,
            sms: FakeSms::start().await?,
        };
        let port = server::free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        // Telegram is given an https address; its fake delivers it to the server's port, as a
        // TLS-terminating proxy would.
        let public = "https://chatter.example.test";
        fakes.telegram.route(public, &base);
        let env = [
            ("CHATTER_TELEGRAM__API_BASE", fakes.telegram.base_url()),
            ("CHATTER_TELEGRAM__WEBHOOK_BASE", public.to_string()),
            ("CHATTER_PUBLIC_WEBHOOK_BASE", base.clone()),
            ("CHATTER_VK__API_BASE", fakes.vk.base_url()),
            ("CHATTER_MAX__API_BASE", fakes.max.base_url()),
            ("CHATTER_AVITO__API_BASE", fakes.avito.base_url()),
            ("CHATTER_WHATSAPP__API_BASE", fakes.whatsapp.base_url()),
            ("CHATTER_SMS__API_BASE", fakes.sms.base_url()),
        ];
        let server = Server::start(&binary, None, port, &env).await?;
        let cookie = server::sign_up(&server.base).await?;
        let (hook, url) = add_source(kind, &fakes, &server.base, &cookie)
            .await
            .with_context(|| format!("add the {kind} source"))?;
        eprintln!(
            "{kind}: {} clients, {} s (+{} s warm-up) at {url}",
            args.connections, args.seconds, args.warmup_seconds
        );
        let seq = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let clients: Vec<reqwest::Client> = (0..args.connections)
            .map(|_| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(30))
                    .build()
            })
            .collect::<Result<_, _>>()?;
        let load = |d: u64| {
            load(
                &clients,
                &hook,
                &url,
                args.customers.max(1),
                &seq,
                &accepted,
                Duration::from_secs(d),
            )
        };
        if args.warmup_seconds > 0 {
            load(args.warmup_seconds).await?;
        }
        let run = load(args.seconds).await?;
        let stored = server::count(
            &server.database_url,
            "SELECT COUNT(*) FROM messages WHERE direction = 'in'",
        )
        .await?;
        server.stop().await?;
        drop(fakes);
        rows.push(Row {
            kind,
            run,
            accepted: accepted.load(Ordering::SeqCst),
            stored,
        });
    }

    println!(
        "### Webhook ingest per source kind on SQLite: {} keep-alive clients, {} s each, {} customers\n",
        args.connections, args.seconds, args.customers
    );
    println!(
        "| kind | accepted | accepted/s | p50 ms | p99 ms | errors | rows stored == accepted (incl. warm-up) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let mut bad = Vec::new();
    for r in &rows {
        let ok = r.stored as u64 == r.accepted;
        if !ok {
            bad.push(r.kind);
        }
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} / {} {} |",
            r.kind,
            r.run.latencies_us.len(),
            r.run.per_second(),
            r.run.percentile_ms(50.0),
            r.run.percentile_ms(99.0),
            r.run.errors,
            r.stored,
            r.accepted,
            mark(ok)
        );
    }
    if !bad.is_empty() {
        bail!("rows stored differ from 2xx answers for {bad:?}");
    }
    Ok(())
}

/// Closed-loop load: each client posts the next message as soon as the last one is answered.
async fn load(
    clients: &[reqwest::Client],
    hook: &Hook,
    url: &str,
    customers: u64,
    seq: &Arc<AtomicU64>,
    accepted: &Arc<AtomicU64>,
    duration: Duration,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let (client, hook, url) = (client.clone(), hook.clone(), url.to_owned());
        let (seq, accepted) = (seq.clone(), accepted.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::SeqCst);
                let request = hook.request(&client, &url, n, n % customers);
                let sent = Instant::now();
                let ok = match request.send().await {
                    Ok(r) => {
                        let status = r.status();
                        r.bytes().await.is_ok() && status.is_success()
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed().as_micros() as u64);
                    accepted.fetch_add(1, Ordering::SeqCst);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let mut run = Run {
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        let (latencies, errors) = done.context("a load task panicked")?;
        run.latencies_us.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = start.elapsed();
    run.latencies_us.sort_unstable();
    Ok(run)
}

fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Hook {
    /// Message `n` from customer `k`, as the provider (or the company's system) posts it.
    fn request(
        &self,
        http: &reqwest::Client,
        url: &str,
        n: u64,
        k: u64,
    ) -> reqwest::RequestBuilder {
        let text = format!("Здравствуйте! Подскажите, когда будет доставка? (#{n})");
        match self {
            Hook::Telegram { secret } => http
                .post(url)
                .header("x-telegram-bot-api-secret-token", secret)
                .json(&telegram::text_update(n, k, &format!("(#{n})"))),
            Hook::Vk { secret, group_id } => {
                let user = 612_100_000 + k as i64;
                http.post(url).json(&json!({"type": "message_new",
                    "event_id": format!("ev{n}"), "v": "5.199", "group_id": group_id,
                    "secret": secret, "object": {"message": {"date": now_secs(),
                        "from_id": user, "id": 10_000 + n, "out": 0, "peer_id": user,
                        "text": text, "conversation_message_id": n + 1,
                        "attachments": [], "fwd_messages": []}, "client_info": {}}}))
            }
            Hook::Max { secret } => {
                let user = 7_400_000 + k as i64;
                let ms = now_secs() as i64 * 1000;
                http.post(url).header("X-Max-Bot-Api-Secret", secret).json(
                    &json!({"update_type": "message_created", "timestamp": ms,
                        "message": {"sender": {"user_id": user, "first_name": format!("Клиент {k}"),
                            "is_bot": false},
                        "recipient": {"chat_id": user, "chat_type": "dialog"},
                        "timestamp": ms,
                        "body": {"mid": format!("mid.bench.{n}"), "seq": n, "text": text,
                            "attachments": []}}}),
                )
            }
            Hook::Avito { user_id } => http.post(url).json(&json!({"id": format!("hook-{n}"),
                "version": "v3.0.0", "timestamp": now_secs(),
                "payload": {"type": "message", "value": {"id": format!("bench-{n}"),
                    "chat_id": format!("u2i-bench-{k}"), "user_id": user_id,
                    "author_id": 141_000_000 + k as i64, "created": now_secs(),
                    "type": "text", "chat_type": "u2i", "content": {"text": text}}}})),
            Hook::Api { secret } => {
                let body = json!({"message_id": format!("m-{n}"), "chat_id": format!("c-{k}"),
                    "sender": {"id": format!("c-{k}"), "name": format!("Клиент {k}")},
                    "text": text})
                .to_string();
                let ts = now_secs();
                let sig = hmac_hex(secret, format!("{ts}.{body}").as_bytes());
                http.post(url)
                    .header("content-type", "application/json")
                    .header("x-chatter-timestamp", ts.to_string())
                    .header("x-chatter-signature", format!("sha256={sig}"))
                    .body(body)
            }
            Hook::WhatsApp {
                app_secret,
                pnid,
                waba,
            } => {
                let wa_id = format!("7916{k:07}");
                let body = json!({"object": "whatsapp_business_account",
                    "entry": [{"id": waba, "changes": [{"field": "messages", "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": SHOP_NUMBER, "phone_number_id": pnid},
                        "contacts": [{"profile": {"name": format!("Клиент {k}")}, "wa_id": wa_id}],
                        "messages": [{"from": wa_id, "id": format!("wamid.bench-{n}"),
                            "timestamp": now_secs().to_string(), "type": "text",
                            "text": {"body": text}}]}}]}]})
                .to_string();
                let sig = hmac_hex(app_secret, body.as_bytes());
                http.post(url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", format!("sha256={sig}"))
                    .body(body)
            }
            Hook::Sms => http.post(url).form(&[
                ("id", format!("bench-{n}")),
                ("from", format!("7926{k:07}")),
                ("to", SHOP_NUMBER.to_owned()),
                ("text", text),
                ("time", now_secs().to_string()),
            ]),
        }
    }
}

/// Posts the add-a-source form with `fields` to `path`; returns the answer.
async fn post_form(
    base: &str,
    cookie: &HeaderValue,
    path: &str,
    fields: &[(&str, &str)],
) -> anyhow::Result<reqwest::Response> {
    let csrf = server::session_csrf(base, cookie).await?;
    let mut form = vec![("_csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    Ok(server::form_client()?
        .post(format!("{base}{path}"))
        .header(COOKIE, cookie.clone())
        .form(&form)
        .send()
        .await?)
}

/// Adds a source of `kind` through the form; returns the new source's page path.
async fn add_via_form(
    base: &str,
    cookie: &HeaderValue,
    fields: &[(&str, &str)],
) -> anyhow::Result<String> {
    let r = post_form(base, cookie, "/app/sources", fields).await?;
    let status = r.status();
    let location = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match (status, location) {
        (StatusCode::SEE_OTHER, Some(l)) => Ok(l),
        _ => {
            let body = r.text().await.unwrap_or_default();
            bail!(
                "adding the source answered {status}: {}",
                body.chars().take(300).collect::<String>()
            )
        }
    }
}

fn id_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

async fn page(base: &str, cookie: &HeaderValue, path: &str) -> anyhow::Result<String> {
    Ok(reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header(COOKIE, cookie.clone())
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The value a source page shows under `key` (`<code data-setup="key">value</code>`).
fn setup_value(page: &str, key: &str) -> anyhow::Result<String> {
    let marker = format!("data-setup=\"{key}\">");
    let start = page
        .find(&marker)
        .map(|i| i + marker.len())
        .with_context(|| format!("the source page shows no {key}"))?;
    Ok(page[start..]
        .split('<')
        .next()
        .unwrap_or_default()
        .replace("&#x2F;", "/")
        .replace("&#47;", "/"))
}

/// Polls `probe` every 50 ms for up to 30 s.
async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Adds one source of `kind` and returns how its webhooks are posted, and where.
async fn add_source(
    kind: &str,
    fakes: &Fakes,
    base: &str,
    cookie: &HeaderValue,
) -> anyhow::Result<(Hook, String)> {
    Ok(match kind {
        "Telegram" => {
            let token = fakes.telegram.create_bot("bench_shop_bot", "Магазин");
            let path = add_via_form(
                base,
                cookie,
                &[("kind", "1"), ("token", &token), ("name", "")],
            )
            .await?;
            let secret = wait_for("the server set no webhook", || {
                fakes.telegram.webhook(&token).and_then(|w| w.secret_token)
            })
            .await?;
            let url = format!("{base}/hooks/telegram/{}", id_of(&path));
            (Hook::Telegram { secret }, url)
        }
        "VK" => {
            let group = fakes.vk.create_group("Магазин", "bench_shop");
            let club = format!("club{}", group.id);
            let path = add_via_form(
                base,
                cookie,
                &[
                    ("kind", "3"),
                    ("vk_token", &group.token),
                    ("vk_group_id", &club),
                    ("name", ""),
                ],
            )
            .await?;
            let server = wait_for("no confirmed callback server", || {
                fakes
                    .vk
                    .callback_servers(group.id)
                    .into_iter()
                    .find(|c| c.confirmed && !c.event_types.is_empty())
            })
            .await?;
            let url = format!("{base}/hooks/vk/{}", id_of(&path));
            if server.url != url {
                bail!("the callback server points at {}", server.url);
            }
            let secret = server.secret_key.context("no callback secret")?;
            (
                Hook::Vk {
                    secret,
                    group_id: group.id,
                },
                url,
            )
        }
        "Max" => {
            let token = fakes.max.add_bot("Магазин", "bench_shop_bot");
            let path = add_via_form(
                base,
                cookie,
                &[("kind", "4"), ("max_token", &token), ("name", "")],
            )
            .await?;
            let secret = wait_for("no Max subscription", || {
                fakes.max.subscription(&token).and_then(|s| s.secret)
            })
            .await?;
            let url = format!("{base}/hooks/max/{}", id_of(&path));
            (Hook::Max { secret }, url)
        }
        "Avito" => {
            let creds = fakes.avito.add_account("Магазин");
            add_via_form(
                base,
                cookie,
                &[
                    ("kind", "5"),
                    ("avito_client_id", &creds.client_id),
                    ("avito_client_secret", &creds.client_secret),
                    ("name", ""),
                ],
            )
            .await?;
            let url = wait_for("no Avito webhook", || {
                fakes.avito.webhooks(&creds.client_id).into_iter().next()
            })
            .await?;
            (
                Hook::Avito {
                    user_id: creds.user_id,
                },
                url,
            )
        }
        "API source" => {
            let r = post_form(base, cookie, "/app/api-sources", &[("name", "Сайт")]).await?;
            if r.status() != StatusCode::OK {
                bail!("creating the API source answered {}", r.status());
            }
            let html = r.text().await?;
            let secret =
                attr_of(&html, "id=\"api-secret\"", "value").context("the secret is not shown")?;
            let id = html
                .split("/app/api-sources/")
                .nth(1)
                .and_then(|x| x.split(['/', '"']).next())
                .context("no source id on the page")?
                .to_owned();
            (Hook::Api { secret }, format!("{base}/hooks/api/{id}"))
        }
        "WhatsApp" => {
            let number = fakes.whatsapp.add_number("+7 495 000-11-22", "Магазин");
            let path = add_via_form(
                base,
                cookie,
                &[
                    ("kind", "7"),
                    ("wa_phone_number_id", &number.phone_number_id),
                    ("wa_waba_id", &number.waba_id),
                    ("wa_access_token", &number.access_token),
                    ("wa_app_secret", &number.app_secret),
                    ("name", ""),
                ],
            )
            .await?;
            let html = page(base, cookie, &path).await?;
            let url = setup_value(&html, "sources.wa_callback_url")?;
            let verify = setup_value(&html, "sources.wa_verify_token")?;
            fakes
                .whatsapp
                .subscribe(&number.phone_number_id, &url, &verify)
                .await
                .map_err(|e| anyhow::anyhow!("Meta's handshake failed: {e}"))?;
            (
                Hook::WhatsApp {
                    app_secret: number.app_secret.clone(),
                    pnid: number.phone_number_id.clone(),
                    waba: number.waba_id.clone(),
                },
                url,
            )
        }
        "SMS" => {
            let key = fakes.sms.add_account("ООО Магазин", "7701234567", 500.0);
            let path = add_via_form(
                base,
                cookie,
                &[
                    ("kind", "8"),
                    ("sms_api_key", &key),
                    ("sms_sender", "Magazin"),
                    ("name", ""),
                ],
            )
            .await?;
            let html = page(base, cookie, &path).await?;
            let status = setup_value(&html, "sources.sms_status_url")?;
            let inbound = setup_value(&html, "sources.sms_inbound_url")?;
            fakes.sms.set_callbacks(&key, Some(&status), Some(&inbound));
            (Hook::Sms, inbound)
        }
        other => bail!("unknown kind {other}"),
    })
}

/// The value of `attr` in the tag that contains `marker`.
fn attr_of(html: &str, marker: &str, attr: &str) -> Option<String> {
    let i = html.find(marker)?;
    let tag_start = html[..i].rfind('<').unwrap_or(0);
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let a = format!("{attr}=\"");
    let v = &tag[tag.find(&a)? + a.len()..];
    Some(v[..v.find('"')?].to_owned())
}

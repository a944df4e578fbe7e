//! A web page listing the mail an [`SmtpCapture`](crate::smtp::SmtpCapture) caught, newest
//! first, with each message's links clickable — so a demo visitor can read the invitation or
//! password-reset mail Chatter sent, and open its link.

use crate::server::{escape_html, PageServer};
use crate::smtp::MailReader;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

/// The running page. Dropping it stops the server.
pub struct MailPage {
    server: PageServer,
}

impl MailPage {
    /// Listens on `127.0.0.1:0`.
    pub async fn start(mail: MailReader) -> std::io::Result<MailPage> {
        let app = Router::new().route("/", get(page)).with_state(mail);
        let server = PageServer::start(app, "the mail page stopped").await?;
        Ok(MailPage { server })
    }

    pub fn url(&self) -> String {
        format!("{}/", self.server.base_url)
    }
}

async fn page(State(mail): State<MailReader>) -> Html<String> {
    let mut items = String::new();
    for m in mail.messages().iter().rev() {
        let mut body = escape_html(&m.body);
        for link in m.links() {
            let shown = escape_html(&link);
            body = body.replace(&shown, &format!("<a href=\"{shown}\">{shown}</a>"));
        }
        items.push_str(&format!(
            "<article><h2>{}</h2><p><b>Кому:</b> {}</p><pre style=\"white-space:pre-wrap\">{}</pre></article><hr>\n",
            escape_html(&m.subject),
            escape_html(&m.to.join(", ")),
            body
        ));
    }
    if items.is_empty() {
        items.push_str("<p>Писем пока нет. Пригласите сотрудника или запросите сброс пароля.</p>");
    }
    Html(format!(
        "<!doctype html><html lang=\"ru\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"10\"><title>Почта демо</title></head>\
         <body style=\"font-family:sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem\">\
         <h1>Почта, отправленная Чаттером (демо)</h1>{items}</body></html>"
    ))
}

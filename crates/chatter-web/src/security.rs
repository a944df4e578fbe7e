//! Security headers on every response: the Content-Security-Policy (no inline script or style;
//! the Telegram Login Widget's origins only on the pages that embed it; a sandbox for customer
//! files), `nosniff`, the referrer policy, no framing, HSTS only where the browser came over
//! HTTPS (see [`hsts_applies`]), and `Cache-Control: no-store` on every private answer (`/app…`, `/api/v1…`) so that Back
//! after signing out shows nothing. Also the check that keeps redirects on our own origin.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of every customer file: nothing in it runs or loads, even opened on its own.
pub const FILE_CSP: &str = "sandbox; default-src 'none'";

/// Where the Telegram Login Widget's script comes from; a rendered page containing it gets
/// [`EmbedsTelegramWidget`] (see `ui::render`).
pub const TELEGRAM_WIDGET_SRC: &str = "https://telegram.org/js/telegram-widget.js";

/// A response extension: the page embeds the Telegram Login Widget, so its script origin and
/// its iframe's origin are allowed on this page only.
#[derive(Clone, Copy, Debug)]
pub struct EmbedsTelegramWidget;

/// The page policy. `form_target`: one more origin forms may lead to (amoCRM's consent page,
/// reached by a redirect after posting «Connect amoCRM»).
pub fn page_policy(form_target: Option<&str>, telegram: bool, swagger: bool) -> String {
    let (script, frame) = if telegram {
        ("'self' https://telegram.org", "https://oauth.telegram.org")
    } else {
        ("'self'", "'none'")
    };
    // Swagger UI (vendored, `/api/docs`) adds <style> elements from its script.
    let style = if swagger {
        "'self' 'unsafe-inline'"
    } else {
        "'self'"
    };
    let form = match form_target {
        Some(o) => format!("'self' {o}"),
        None => "'self'".to_string(),
    };
    format!(
        "default-src 'self'; script-src {script}; style-src {style}; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; object-src 'none'; frame-src {frame}; \
         frame-ancestors 'none'; base-uri 'self'; form-action {form}"
    )
}

/// Private answers: pages under `/app` and the REST API.
pub fn is_private(path: &str) -> bool {
    path == "/app" || path.starts_with("/app/") || path == "/api/v1" || path.starts_with("/api/v1/")
}

/// The middleware: adds the headers to whatever the inner layers answered. A handler that set
/// its own Content-Security-Policy (customer files) keeps it.
pub async fn headers(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let hsts = hsts_applies(&st, &req);
    let mut resp = next.run(req).await;
    let telegram = resp.extensions().get::<EmbedsTelegramWidget>().is_some();
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        let swagger = path == "/api/docs" || path.starts_with("/api/docs/");
        let amo = chatter_core::crm::consent_origin(&st.core);
        let policy = page_policy(amo.as_deref(), telegram, swagger);
        if let Ok(v) = HeaderValue::from_str(&policy) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    let fixed: [(HeaderName, &'static str); 3] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if is_private(&path) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// HSTS is sent when the browser's connection is HTTPS: one Chatter serves itself (`tls.*`),
/// or one a TLS-terminating proxy served — the request came from a trusted proxy
/// (`trusted_proxies`) to an `https://` public address, and the proxy did not say the client
/// used plain HTTP (`X-Forwarded-Proto: http`). A plain request straight to the port (a health
/// check, a mistaken `https://` public URL without a proxy) gets none.
pub fn hsts_applies(st: &AppState, req: &Request) -> bool {
    if req
        .extensions()
        .get::<crate::front::ConnTls>()
        .is_some_and(|t| t.0)
    {
        return true;
    }
    if !st.core.config.public_url.starts_with("https://") {
        return false;
    }
    let from_proxy = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| {
            let ip = c.0.ip().to_canonical();
            st.cfg.trusted_proxies.iter().any(|p| p.contains(ip))
        });
    let said_http = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("http"));
    from_proxy && !said_http
}

/// `to` when it is a path on this site (`/…`), else `None`. Refused: anything not starting
/// with one `/` (`//evil`, absolute URLs), a backslash (browsers read `/\evil` as `//evil`),
/// and control characters (browsers drop tabs and line breaks from URLs, so `/\t/evil` would
/// become `//evil`; and they cannot go in a `Location` header).
pub fn local_path(to: &str) -> Option<&str> {
    let ok = to.starts_with('/')
        && !to.starts_with("//")
        && !to.chars().any(|c| c == '\\' || c.is_control());
    ok.then_some(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_pass() {
        for good in [
            "/",
            "/app",
            "/app/inbox?f=1&x=/y",
            "/a//b",
            "/app/inbox?q=a b",
        ] {
            assert_eq!(local_path(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/\n/evil.example",
            "/x\r\nSet-Cookie: a=b",
            "app",
            " /app",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }
}

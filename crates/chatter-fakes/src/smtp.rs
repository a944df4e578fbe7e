//! SMTP capture server: a real (if trusting) SMTP listener on loopback that records every message
//! it is handed, so tests and the demo can read the mail the product sends with lettre.
//!
//! It speaks plain SMTP without TLS, accepts any `AUTH PLAIN`/`AUTH LOGIN` credentials, and
//! decodes what lettre produces: quoted-printable and base64 bodies, multipart messages, and
//! RFC 2047 encoded subjects (lettre encodes non-ASCII text such as Russian that way).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// One message as received: the envelope, the raw DATA and its decoded subject and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedMail {
    /// Envelope sender (`MAIL FROM`), empty for the null sender `<>`.
    pub from: String,
    /// Envelope recipients (`RCPT TO`), in the order given.
    pub to: Vec<String>,
    /// The message as transmitted after `DATA`, dot-unstuffed, CRLF line endings kept.
    pub raw: String,
    /// The decoded `Subject` header (empty if absent).
    pub subject: String,
    /// The decoded text: the `text/plain` part (else the first `text/html` part), with line
    /// endings normalized to `\n` and trailing line breaks removed.
    pub body: String,
}

impl CapturedMail {
    fn parse(from: String, to: Vec<String>, raw: String) -> Self {
        let (head, body) = split_head(&raw);
        let headers = parse_headers(head);
        let subject = header(&headers, "subject")
            .map(decode_encoded_words)
            .unwrap_or_default();
        let body = find_text(&headers, body, 0)
            .map(|(_, text)| text)
            .unwrap_or_default();
        Self {
            from,
            to,
            raw,
            subject,
            body,
        }
    }

    /// The http(s) URLs in the body, in order of appearance, without duplicates.
    ///
    /// A URL ends at whitespace, a quote or an angle bracket; trailing sentence punctuation is
    /// dropped and `&amp;` (from HTML bodies) becomes `&`.
    pub fn links(&self) -> Vec<String> {
        let mut links: Vec<String> = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find("http") {
            let candidate = &rest[start..];
            if !(candidate.starts_with("http://") || candidate.starts_with("https://")) {
                rest = &candidate[4..];
                continue;
            }
            let end = candidate
                .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '`'))
                .unwrap_or(candidate.len());
            let url = candidate[..end]
                .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}'])
                .replace("&amp;", "&");
            let has_host = url
                .split_once("://")
                .is_some_and(|(_, host)| !host.is_empty());
            if has_host && !links.contains(&url) {
                links.push(url);
            }
            rest = &candidate[end..];
        }
        links
    }
}

/// A running SMTP capture server on `127.0.0.1`. Dropping it stops the server and closes every
/// open session.
pub struct SmtpCapture {
    port: u16,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    mailbox: Mutex<Mailbox>,
    arrived: Notify,
}

#[derive(Default)]
struct Mailbox {
    mails: Vec<CapturedMail>,
    /// Parallel to `mails`: already handed out by `wait_for`.
    claimed: Vec<bool>,
}

impl State {
    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        // A panic while holding the lock cannot leave the vectors half-updated in a way that
        // matters to a test, so a poisoned lock is still usable.
        self.mailbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn deliver(&self, mail: CapturedMail) {
        tracing::debug!(to = ?mail.to, subject = %mail.subject, "smtp capture: message received");
        let mut mailbox = self.mailbox();
        mailbox.mails.push(mail);
        mailbox.claimed.push(false);
        drop(mailbox);
        self.arrived.notify_waiters();
    }

    fn claim(&self, to: &str) -> Option<CapturedMail> {
        let mut mailbox = self.mailbox();
        let Mailbox { mails, claimed } = &mut *mailbox;
        let index = mails.iter().zip(claimed.iter()).position(|(mail, taken)| {
            !taken && mail.to.iter().any(|rcpt| rcpt.eq_ignore_ascii_case(to))
        })?;
        claimed[index] = true;
        Some(mails[index].clone())
    }
}

impl std::fmt::Debug for SmtpCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpCapture")
            .field("port", &self.port)
            .field("messages", &self.state.mailbox().mails.len())
            .finish()
    }
}

impl SmtpCapture {
    /// Binds `127.0.0.1:0` and starts accepting SMTP sessions.
    pub async fn start() -> io::Result<SmtpCapture> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(SmtpCapture {
            port,
            state,
            accept,
        })
    }

    /// The port the server listens on (host is always `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<CapturedMail> {
        self.state.mailbox().mails.clone()
    }

    /// A handle that reads the messages from elsewhere (the demo's mail page).
    pub fn reader(&self) -> MailReader {
        MailReader(Arc::clone(&self.state))
    }

    /// Waits up to `timeout` for the oldest message addressed to `to` (envelope recipient, ASCII
    /// case-insensitive) that no earlier `wait_for` has returned.
    pub async fn wait_for(&self, to: &str, timeout: Duration) -> Option<CapturedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so a message delivered in between still wakes us.
            let arrived = self.state.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(mail) = self.state.claim(to) {
                return Some(mail);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

/// Reads what an [`SmtpCapture`] received, from any task.
#[derive(Clone)]
pub struct MailReader(Arc<State>);

impl MailReader {
    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<CapturedMail> {
        self.0.mailbox().mails.clone()
    }
}

impl Drop for SmtpCapture {
    fn drop(&mut self) {
        // The session tasks live in the accept task's JoinSet, so they are aborted with it.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    sessions.spawn(session(stream, Arc::clone(&state)));
                }
                Err(err) => {
                    tracing::warn!(%err, "smtp capture: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

async fn session(stream: TcpStream, state: Arc<State>) {
    let (read, write) = stream.into_split();
    if let Err(err) = converse(BufReader::new(read), write, &state).await {
        tracing::debug!(%err, "smtp capture: session ended with an error");
    }
}

/// The envelope of the transaction in progress.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

async fn converse<R, W>(mut reader: R, mut writer: W, state: &State) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer
        .write_all(b"220 localhost ESMTP chatter-fakes capture\r\n")
        .await?;
    let mut envelope = Envelope::default();
    loop {
        let Some(line) = read_line(&mut reader).await? else {
            return Ok(());
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb, arg.trim()),
            None => (line.as_str(), ""),
        };
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                envelope = Envelope::default();
                format!(
                    "250-localhost greets {arg}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
                     250 AUTH PLAIN LOGIN\r\n"
                )
            }
            "HELO" => {
                envelope = Envelope::default();
                "250 localhost\r\n".into()
            }
            "AUTH" => authenticate(&mut reader, &mut writer, arg).await?,
            "MAIL" => match path_after(arg, "FROM:") {
                Some(from) => {
                    envelope = Envelope {
                        from: Some(from),
                        to: Vec::new(),
                    };
                    "250 2.1.0 OK\r\n".into()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into(),
            },
            "RCPT" => match (&envelope.from, path_after(arg, "TO:")) {
                (None, _) => "503 5.5.1 MAIL first\r\n".into(),
                (Some(_), Some(to)) if !to.is_empty() => {
                    envelope.to.push(to);
                    "250 2.1.5 OK\r\n".into()
                }
                (Some(_), _) => "501 5.5.4 syntax: RCPT TO:<address>\r\n".into(),
            },
            "DATA" => {
                if envelope.from.is_none() || envelope.to.is_empty() {
                    "503 5.5.1 MAIL and RCPT first\r\n".into()
                } else {
                    writer
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let Some(raw) = read_data(&mut reader).await? else {
                        return Ok(());
                    };
                    let Envelope { from, to } = std::mem::take(&mut envelope);
                    state.deliver(CapturedMail::parse(from.unwrap_or_default(), to, raw));
                    "250 2.0.0 OK queued\r\n".into()
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                writer.write_all(b"221 2.0.0 Bye\r\n").await?;
                writer.flush().await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognized\r\n".into(),
        };
        writer.write_all(reply.as_bytes()).await?;
        writer.flush().await?;
    }
}

/// Reads one line without its line ending; `None` at end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&line);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// Reads the DATA section up to the lone `.` line, undoing dot-stuffing; `None` if the client
/// hung up before the terminator.
async fn read_data<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<String>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" || line == b"." {
            return Ok(Some(String::from_utf8_lossy(&data).into_owned()));
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}

/// Runs an `AUTH` exchange, accepting any credentials; returns the final reply.
async fn authenticate<R, W>(reader: &mut R, writer: &mut W, arg: &str) -> io::Result<String>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    const OK: &str = "235 2.7.0 Authentication successful\r\n";
    const CANCELLED: &str = "501 5.7.0 Authentication cancelled\r\n";
    let (mechanism, initial) = match arg.split_once(' ') {
        Some((mechanism, initial)) => (mechanism, Some(initial.trim())),
        None => (arg, None),
    };
    // Each prompt the client must answer, in order; an initial response answers the first.
    let prompts: &[&str] = match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => &["334 \r\n"],
        // base64 of "Username:" and "Password:".
        "LOGIN" => &["334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n"],
        _ => return Ok("504 5.5.4 Unrecognized authentication mechanism\r\n".into()),
    };
    let skip = usize::from(initial.is_some_and(|i| !i.is_empty() && i != "="));
    for prompt in &prompts[skip..] {
        writer.write_all(prompt.as_bytes()).await?;
        writer.flush().await?;
        match read_line(reader).await? {
            None => return Ok(CANCELLED.into()),
            Some(answer) if answer.trim() == "*" => return Ok(CANCELLED.into()),
            Some(_) => {}
        }
    }
    Ok(OK.into())
}

/// Parses `FROM:<addr> PARAMS` / `TO:<addr>` (keyword case-insensitive, `<>` optional).
fn path_after(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let address = match rest.strip_prefix('<') {
        Some(inner) => &inner[..inner.find('>')?],
        None => rest.split_whitespace().next().unwrap_or(""),
    };
    Some(address.trim().to_string())
}

// ---- message decoding -------------------------------------------------------------------------

type Headers = Vec<(String, String)>;

/// Splits a message or MIME part at the first empty line into header block and body.
fn split_head(raw: &str) -> (&str, &str) {
    let mut pos = 0;
    for line in raw.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            return (&raw[..pos], &raw[pos + line.len()..]);
        }
        pos += line.len();
    }
    (raw, "")
}

/// Parses a header block, unfolding continuation lines (only the line break is removed).
fn parse_headers(head: &str) -> Headers {
    let mut headers: Headers = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    headers
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// `type/subtype; key=value; key="quoted; value"` → lowercase mime type and parameters (keys
/// lowercase, values unquoted).
fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => pieces.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    pieces.push(current);
    let mime = pieces[0].trim().to_ascii_lowercase();
    let params = pieces[1..]
        .iter()
        .filter_map(|piece| piece.split_once('='))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (mime, params)
}

/// The text of a message or part: `(is_plain, text)`. Prefers `text/plain` anywhere in a
/// multipart tree, else the first `text/html`; attachments are skipped.
fn find_text(headers: &Headers, body: &str, depth: u8) -> Option<(bool, String)> {
    let (mime, params) =
        parse_content_type(header(headers, "content-type").unwrap_or("text/plain"));
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    if mime.starts_with("multipart/") {
        // A bound on nesting keeps a hostile message from recursing without end.
        if depth > 8 {
            return None;
        }
        let boundary = param("boundary")?;
        let mut html = None;
        for part in multipart_parts(body, boundary) {
            let (head, part_body) = split_head(part);
            let part_headers = parse_headers(head);
            let attachment = header(&part_headers, "content-disposition").is_some_and(|d| {
                d.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("attachment")
            });
            if attachment {
                continue;
            }
            match find_text(&part_headers, part_body, depth + 1) {
                Some((true, text)) => return Some((true, text)),
                Some((false, text)) if html.is_none() => html = Some(text),
                _ => {}
            }
        }
        return html.map(|text| (false, text));
    }
    if mime != "text/plain" && mime != "text/html" {
        return None;
    }
    let encoding = header(headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body.as_bytes(), false),
        "base64" => decode_base64(body),
        _ => body.as_bytes().to_vec(),
    };
    let text = bytes_to_text(&bytes, param("charset").unwrap_or("utf-8"));
    let text = text.replace("\r\n", "\n");
    Some((
        mime == "text/plain",
        text.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

/// The parts of a multipart body between `--boundary` lines, up to `--boundary--`.
fn multipart_parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let closing = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == delimiter || trimmed == closing {
            if let Some(begin) = start {
                // The line break before a delimiter belongs to the delimiter.
                let part = &body[begin..pos];
                let part = part
                    .strip_suffix("\r\n")
                    .or_else(|| part.strip_suffix('\n'))
                    .unwrap_or(part);
                parts.push(part);
            }
            if trimmed == closing {
                return parts;
            }
            start = Some(pos + line.len());
        }
        pos += line.len();
    }
    parts
}

/// Quoted-printable (RFC 2045) or, with `underscore_is_space`, the RFC 2047 "Q" encoding.
/// Malformed escapes are kept literally.
fn decode_quoted_printable(input: &[u8], underscore_is_space: bool) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'=' {
            // Soft line break: "=" at the end of a line (optionally followed by spaces).
            let after = &input[i + 1..];
            let spaces = after
                .iter()
                .take_while(|c| matches!(c, b' ' | b'\t'))
                .count();
            let after_spaces = &after[spaces..];
            if after_spaces.starts_with(b"\r\n") {
                i += 1 + spaces + 2;
                continue;
            }
            if after_spaces.starts_with(b"\n") {
                i += 1 + spaces + 1;
                continue;
            }
            if let (Some(&h), Some(&l)) = (input.get(i + 1), input.get(i + 2)) {
                if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                    // Two hex digits are at most 0xFF, so this fits a byte.
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(if underscore_is_space && b == b'_' {
            b' '
        } else {
            b
        });
        i += 1;
    }
    out
}

fn decode_base64(input: &str) -> Vec<u8> {
    let compact: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(&compact)
        .or_else(|_| STANDARD_NO_PAD.decode(compact.trim_end_matches('=')))
        .unwrap_or_else(|_| input.as_bytes().to_vec())
}

/// UTF-8 (and ASCII) decode lossily; Latin-1 maps bytes to code points; anything else is
/// treated as UTF-8, which is all the product sends.
fn bytes_to_text(bytes: &[u8], charset: &str) -> String {
    let charset = charset.trim().trim_matches('"').to_ascii_lowercase();
    if matches!(charset.as_str(), "iso-8859-1" | "latin1" | "latin-1") {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Decodes RFC 2047 encoded words in a header value. Whitespace between adjacent encoded words
/// is dropped, and the bytes of adjacent words in one charset are joined before decoding, since
/// an encoder may split a multi-byte character across words.
fn decode_encoded_words(value: &str) -> String {
    fn flush(out: &mut String, pending: &mut Option<(String, Vec<u8>)>) {
        if let Some((charset, bytes)) = pending.take() {
            out.push_str(&bytes_to_text(&bytes, &charset));
        }
    }
    let mut out = String::new();
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut after_word = false;
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match parse_encoded_word(candidate) {
            Some((charset, bytes, len)) => {
                let gap_is_blank = before.chars().all(char::is_whitespace);
                if !(after_word && gap_is_blank) {
                    flush(&mut out, &mut pending);
                    out.push_str(before);
                }
                match &mut pending {
                    Some((open, buffer)) if open.eq_ignore_ascii_case(&charset) => {
                        buffer.extend_from_slice(&bytes);
                    }
                    _ => {
                        flush(&mut out, &mut pending);
                        pending = Some((charset, bytes));
                    }
                }
                after_word = true;
                rest = &candidate[len..];
            }
            None => {
                flush(&mut out, &mut pending);
                out.push_str(before);
                out.push_str("=?");
                after_word = false;
                rest = &candidate[2..];
            }
        }
    }
    flush(&mut out, &mut pending);
    out.push_str(rest);
    out
}

/// Parses `=?charset?B|Q?text?=` at the start of `s`: `(charset, bytes, length consumed)`.
fn parse_encoded_word(s: &str) -> Option<(String, Vec<u8>, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, after_charset) = inner.split_once('?')?;
    let (encoding, after_encoding) = after_charset.split_once('?')?;
    let end = after_encoding.find("?=")?;
    let text = &after_encoding[..end];
    let blank = |t: &str| t.is_empty() || t.contains(char::is_whitespace);
    if blank(charset) || text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => decode_base64(text),
        "Q" | "q" => decode_quoted_printable(text.as_bytes(), true),
        _ => return None,
    };
    // RFC 2231 allows a language suffix: `utf-8*ru`.
    let charset = charset.split('*').next().unwrap_or(charset).to_string();
    // `after_encoding` is a suffix of `s`, so this is the length up to and including `?=`.
    let consumed = s.len() - after_encoding.len() + end + 2;
    Some((charset, bytes, consumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(raw: &str) -> CapturedMail {
        CapturedMail::parse("a@x".into(), vec!["b@x".into()], raw.into())
    }

    #[test]
    fn decodes_encoded_word_subjects() {
        assert_eq!(
            decode_encoded_words("=?utf-8?b?0J/RgNC40LLQtdGC?= =?UTF-8?B?LCDQvNC40YAh?="),
            "Привет, мир!"
        );
        assert_eq!(
            decode_encoded_words("Re: =?utf-8?q?caf=C3=A9_ouvert?= today"),
            "Re: café ouvert today"
        );
        // A two-byte character split across two words still decodes.
        assert_eq!(
            decode_encoded_words("=?utf-8?q?=D0?=\r\n =?utf-8?q?=AF?="),
            "Я"
        );
        assert_eq!(
            decode_encoded_words("plain =? not a word"),
            "plain =? not a word"
        );
    }

    #[test]
    fn picks_plain_text_from_multipart_and_extracts_links() {
        let raw = "Subject: hi\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
                   --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
                   <a href=\"https://x.test/a?b=1&amp;c=2\">go</a>\r\n\
                   --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                   =D0=A1=D1=81=D1=8B=D0=BB=D0=BA=D0=B0: https://x.test/confirm?t=3D1.\r\n\
                   --b1--\r\n";
        let mail = mail(raw);
        assert_eq!(mail.subject, "hi");
        assert_eq!(mail.body, "Ссылка: https://x.test/confirm?t=1.");
        assert_eq!(mail.links(), vec!["https://x.test/confirm?t=1"]);
    }

    #[test]
    fn html_only_links_are_unescaped() {
        let raw = "Content-Type: text/html\r\n\r\n<a href=\"https://x.test/a?b=1&amp;c=2\">\
                   https://x.test/a?b=1&amp;c=2</a> and (http://y.test/p)\r\n";
        assert_eq!(
            mail(raw).links(),
            vec!["https://x.test/a?b=1&c=2", "http://y.test/p"]
        );
    }
}

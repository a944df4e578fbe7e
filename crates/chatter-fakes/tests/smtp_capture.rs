//! The SMTP capture server receives what lettre sends and decodes it as a reader would see it.

use chatter_fakes::SmtpCapture;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

fn transport(port: u16) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .build()
}

fn mailbox(s: &str) -> Mailbox {
    s.parse().expect("valid mailbox")
}

#[tokio::test]
async fn russian_subject_and_quoted_printable_body_decode() {
    let smtp = SmtpCapture::start().await.expect("start capture");
    let body = "Здравствуйте, Иван!\n\nПодтвердите почту: https://chatter.test/confirm?token=abc&next=/inbox\n\n\
                .строка с точкой в начале\n";
    let message = Message::builder()
        .from(mailbox("Chatter <noreply@chatter.test>"))
        .to(mailbox("Иван Петров <ivan@example.com>"))
        .subject("Подтвердите адрес электронной почты — очень длинная тема, чтобы её пришлось переносить")
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(
                    Body::new_with_encoding(body.to_string(), ContentTransferEncoding::QuotedPrintable)
                        .expect("quoted-printable body"),
                ),
        )
        .expect("message");
    transport(smtp.port()).send(message).await.expect("send");

    let mail = smtp
        .wait_for("ivan@example.com", WAIT)
        .await
        .expect("mail arrives");
    assert!(
        mail.raw
            .contains("Content-Transfer-Encoding: quoted-printable"),
        "{}",
        mail.raw
    );
    assert!(
        mail.raw.contains("=?utf-8?"),
        "subject is RFC 2047 encoded: {}",
        mail.raw
    );
    assert_eq!(mail.from, "noreply@chatter.test");
    assert_eq!(mail.to, vec!["ivan@example.com"]);
    assert_eq!(
        mail.subject,
        "Подтвердите адрес электронной почты — очень длинная тема, чтобы её пришлось переносить"
    );
    assert_eq!(mail.body, body.trim_end());
    assert_eq!(
        mail.links(),
        vec!["https://chatter.test/confirm?token=abc&next=/inbox"]
    );
}

#[tokio::test]
async fn base64_body_and_plain_ascii_message_decode() {
    let smtp = SmtpCapture::start().await.expect("start capture");
    let t = transport(smtp.port());

    let base64 = Message::builder()
        .from(mailbox("noreply@chatter.test"))
        .to(mailbox("olga@example.com"))
        .subject("Новый лид")
        .singlepart(
            SinglePart::builder().header(ContentType::TEXT_PLAIN).body(
                Body::new_with_encoding(
                    "Новое сообщение от клиента".to_string(),
                    ContentTransferEncoding::Base64,
                )
                .expect("base64 body"),
            ),
        )
        .expect("message");
    t.send(base64).await.expect("send base64");

    let plain = Message::builder()
        .from(mailbox("noreply@chatter.test"))
        .to(mailbox("ops@example.com"))
        .cc(mailbox("olga@example.com"))
        .subject("Weekly report")
        .header(ContentType::TEXT_PLAIN)
        .body("Hello.\r\n.\r\nA line that is only a dot, above.\r\n".to_string())
        .expect("message");
    t.send(plain).await.expect("send plain");

    let first = smtp
        .wait_for("olga@example.com", WAIT)
        .await
        .expect("base64 mail");
    assert!(
        first.raw.contains("Content-Transfer-Encoding: base64"),
        "{}",
        first.raw
    );
    assert_eq!(first.subject, "Новый лид");
    assert_eq!(first.body, "Новое сообщение от клиента");

    // The second mail to olga is the Cc of the plain one; wait_for does not return the first again.
    let second = smtp
        .wait_for("OLGA@example.com", WAIT)
        .await
        .expect("plain mail");
    assert_eq!(second.subject, "Weekly report");
    assert_eq!(second.to, vec!["ops@example.com", "olga@example.com"]);
    assert_eq!(second.body, "Hello.\n.\nA line that is only a dot, above.");
    assert!(second.links().is_empty());

    assert!(smtp
        .wait_for("olga@example.com", Duration::from_millis(200))
        .await
        .is_none());
    assert_eq!(smtp.messages().len(), 2);
}

#[tokio::test]
async fn multipart_html_and_text_prefers_text_and_auth_is_accepted() {
    let smtp = SmtpCapture::start().await.expect("start capture");
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.port())
        .credentials(Credentials::new("user".into(), "secret".into()))
        .build();
    let message = Message::builder()
        .from(mailbox("noreply@chatter.test"))
        .to(mailbox("anna@example.com"))
        .subject("Сброс пароля")
        .multipart(MultiPart::alternative_plain_html(
            "Сбросить пароль: https://chatter.test/reset/XYZ".to_string(),
            "<p><a href=\"https://chatter.test/reset/XYZ\">Сбросить пароль</a></p>".to_string(),
        ))
        .expect("message");
    t.send(message).await.expect("send with auth");
    let mail = smtp.wait_for("anna@example.com", WAIT).await.expect("mail");
    assert_eq!(mail.subject, "Сброс пароля");
    assert_eq!(mail.body, "Сбросить пароль: https://chatter.test/reset/XYZ");
    assert_eq!(mail.links(), vec!["https://chatter.test/reset/XYZ"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_are_all_captured_and_wait_for_wakes_up() {
    let smtp = SmtpCapture::start().await.expect("start capture");
    let port = smtp.port();
    let sends: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                let to = if i == 5 {
                    "late@example.com"
                } else {
                    "many@example.com"
                };
                let message = Message::builder()
                    .from(mailbox("noreply@chatter.test"))
                    .to(mailbox(to))
                    .subject(format!("Письмо {i}"))
                    .header(ContentType::TEXT_PLAIN)
                    .body(format!("body {i}"))
                    .expect("message");
                transport(port).send(message).await.expect("send");
            })
        })
        .collect();
    // Waiting starts before (or while) the mail is sent: the Notify must wake it.
    let mail = smtp.wait_for("late@example.com", WAIT).await;
    assert_eq!(mail.expect("woken by delivery").subject, "Письмо 5");
    for send in sends {
        send.await.expect("send task");
    }
    let mut subjects: Vec<_> = smtp.messages().into_iter().map(|m| m.subject).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        (0..6).map(|i| format!("Письмо {i}")).collect::<Vec<_>>()
    );
}

/// Speaks raw SMTP: several messages on one connection, RSET, NOOP, AUTH LOGIN, dot-stuffing,
/// unknown commands and out-of-order commands.
#[tokio::test]
async fn raw_dialogue_follows_the_protocol() {
    let smtp = SmtpCapture::start().await.expect("start capture");
    let stream = TcpStream::connect(("127.0.0.1", smtp.port()))
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);

    async fn line(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut l = String::new();
        read.read_line(&mut l).await.expect("read reply");
        l
    }
    async fn say(
        write: &mut tokio::net::tcp::OwnedWriteHalf,
        read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        text: &str,
    ) -> String {
        write.write_all(text.as_bytes()).await.expect("write");
        line(read).await
    }

    assert!(line(&mut read).await.starts_with("220 "));
    write.write_all(b"EHLO tester\r\n").await.expect("write");
    let mut ehlo = Vec::new();
    loop {
        let l = line(&mut read).await;
        let last = l.starts_with("250 ");
        ehlo.push(l);
        if last {
            break;
        }
    }
    let ehlo = ehlo.concat();
    for ext in ["8BITMIME", "SMTPUTF8", "AUTH PLAIN LOGIN"] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    assert!(say(&mut write, &mut read, "RCPT TO:<x@y>\r\n")
        .await
        .starts_with("503"));
    assert!(say(&mut write, &mut read, "DATA\r\n")
        .await
        .starts_with("503"));
    assert!(say(&mut write, &mut read, "STARTTLS\r\n")
        .await
        .starts_with("502"));
    assert!(say(&mut write, &mut read, "AUTH LOGIN\r\n")
        .await
        .starts_with("334 VXNlcm5hbWU6"));
    assert!(say(&mut write, &mut read, "dXNlcg==\r\n")
        .await
        .starts_with("334 UGFzc3dvcmQ6"));
    assert!(say(&mut write, &mut read, "cGFzcw==\r\n")
        .await
        .starts_with("235"));
    assert!(
        say(&mut write, &mut read, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n")
            .await
            .starts_with("235")
    );
    assert!(say(&mut write, &mut read, "NOOP\r\n")
        .await
        .starts_with("250"));

    // An abandoned transaction: RSET forgets the recipient.
    assert!(say(&mut write, &mut read, "MAIL FROM:<a@x.test>\r\n")
        .await
        .starts_with("250"));
    assert!(say(&mut write, &mut read, "RCPT TO:<dropped@x.test>\r\n")
        .await
        .starts_with("250"));
    assert!(say(&mut write, &mut read, "RSET\r\n")
        .await
        .starts_with("250"));
    assert!(say(&mut write, &mut read, "DATA\r\n")
        .await
        .starts_with("503"));

    for n in 1..=2 {
        let from = "mail from:<a@x.test> BODY=8BITMIME\r\n";
        assert!(say(&mut write, &mut read, from).await.starts_with("250"));
        assert!(say(&mut write, &mut read, "rcpt to:<b@x.test>\r\n")
            .await
            .starts_with("250"));
        assert!(say(&mut write, &mut read, "DATA\r\n")
            .await
            .starts_with("354"));
        let data = format!("Subject: n{n}\r\n\r\n..leading dot\r\nline\r\n.\r\n");
        assert!(say(&mut write, &mut read, &data).await.starts_with("250"));
    }
    assert!(say(&mut write, &mut read, "QUIT\r\n")
        .await
        .starts_with("221"));

    let all = smtp.messages();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].subject, "n1");
    assert_eq!(all[1].subject, "n2");
    assert_eq!(all[0].to, vec!["b@x.test"]);
    assert_eq!(all[0].body, ".leading dot\nline");
    assert_eq!(all[0].raw, "Subject: n1\r\n\r\n.leading dot\r\nline\r\n");
}

#[tokio::test]
async fn dropping_the_capture_stops_the_server() {
    let smtp = SmtpCapture::start().await.expect("start capture");
    let port = smtp.port();
    drop(smtp);
    // Give the runtime a moment to run the abort.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
}

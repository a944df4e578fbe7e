//! Files managers attach in the reply box: refused before anything is stored when empty, an
//! executable or over the limit of the conversation's kind (`Kind::files`), otherwise kept in
//! the blob store and stored as a pending outgoing message with the attachment, whose
//! `SendMessage` job uploads it through the kind's connector (`Connector::send_file`).

use super::reply::{store_reply, Special};
use super::*;
use chatter_channels::{FileRules, MB};

/// A file as a person handed it in, its bytes already bounded by the kind's
/// `FileRules::max_bytes` while they were read (`file_rules`).
pub struct Upload {
    /// The name the browser or the integrator gave; only its last path segment is kept.
    pub file_name: String,
    /// The type the sender declared, if any (never trusted for pictures).
    pub mime_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// What the reply box of `conversation_id` takes as a file: its kind's rules, or a refusal on
/// the field `file` when the kind cannot send files (`err.file_kind_unsupported`).
pub async fn file_rules(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
) -> Result<FileRules> {
    actor.require(Permission::Reply)?;
    let row = get_conversation(core, actor, conversation_id).await?;
    chatter_channels::kind_of(row.source_kind)
        .and_then(|k| k.files())
        .ok_or_else(|| CoreError::field("file", "err.file_kind_unsupported"))
}

/// The refusal of a file over `rules.max_bytes`: `err.file_too_large`, naming the limit in MB.
pub fn file_too_large(rules: &FileRules) -> CoreError {
    CoreError::Invalid(vec![FieldError {
        field: "file",
        key: "err.file_too_large",
        limit: Some(usize::try_from(rules.max_bytes / MB).unwrap_or(usize::MAX)),
    }])
}

/// Whether a refusal is `file_too_large` (answered 413 by the API).
pub fn is_too_large(e: &CoreError) -> bool {
    matches!(e, CoreError::Invalid(f) if f.iter().any(|f| f.key == "err.file_too_large"))
}

/// Names a customer's system would run: Windows and Unix programs, installers, scripts.
const EXECUTABLE_EXTENSIONS: &[&str] = &[
    "exe", "bat", "cmd", "com", "scr", "pif", "cpl", "msi", "msp", "dll", "sys", "sh", "bash",
    "csh", "ksh", "zsh", "ps1", "psm1", "vbs", "vbe", "wsf", "wsh", "hta", "jar", "apk", "xapk",
    "appimage", "deb", "rpm", "run", "app", "dmg", "pkg", "lnk", "reg",
];

/// Whether the file is a program, by its name or by its first bytes (a Windows `MZ` header,
/// ELF, Mach-O, a `#!` script), whatever its name says.
pub fn is_executable(file_name: &str, bytes: &[u8]) -> bool {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let magic: [&[u8]; 8] = [
        b"MZ",
        b"\x7fELF",
        b"#!",
        &[0xfe, 0xed, 0xfa, 0xce],
        &[0xfe, 0xed, 0xfa, 0xcf],
        &[0xce, 0xfa, 0xed, 0xfe],
        &[0xcf, 0xfa, 0xed, 0xfe],
        &[0xca, 0xfe, 0xba, 0xbe],
    ];
    EXECUTABLE_EXTENSIONS.contains(&ext.as_str()) || magic.iter().any(|m| bytes.starts_with(m))
}

/// The name kept for a file: its last path segment without control characters, at most 200
/// characters (the extension kept); `file` when nothing is left.
pub(super) fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = chatter_domain::text::strip_controls(last)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let clean = clean.trim().trim_start_matches('.');
    if clean.is_empty() {
        return "file".into();
    }
    if clean.chars().count() <= 200 {
        return clean.to_owned();
    }
    let (stem, ext) = clean.rsplit_once('.').unwrap_or((clean, ""));
    let ext: String = ext.chars().take(10).collect();
    let stem: String = stem.chars().take(200 - ext.chars().count() - 1).collect();
    format!("{stem}.{ext}")
}

/// The type a file is sent as: what its bytes are for pictures, else by its extension for the
/// common office types, else what the sender declared when it is a plain `type/subtype`.
pub(super) fn mime_of(file_name: &str, declared: Option<&str>, bytes: &[u8]) -> String {
    if let Some(t) = crate::blobs::picture_type(bytes) {
        return t.to_owned();
    }
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let by_ext = match ext.as_str() {
        "pdf" => Some("application/pdf"),
        "txt" => Some("text/plain"),
        "csv" => Some("text/csv"),
        "svg" => Some("image/svg+xml"),
        "doc" => Some("application/msword"),
        "docx" => Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        "xls" => Some("application/vnd.ms-excel"),
        "xlsx" => Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        "zip" => Some("application/zip"),
        "mp4" => Some("video/mp4"),
        "mp3" => Some("audio/mpeg"),
        _ => None,
    };
    if let Some(t) = by_ext {
        return t.to_owned();
    }
    let plain = |t: &&str| {
        let mut halves = t.split('/');
        let ok = |h: Option<&str>| {
            h.is_some_and(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            })
        };
        ok(halves.next()) && ok(halves.next()) && halves.next().is_none()
    };
    declared.map(str::trim).filter(plain).map_or_else(
        || "application/octet-stream".to_owned(),
        str::to_ascii_lowercase,
    )
}

/// A manager's file, with the typed `text` as its caption (at most `limits::CAPTION`
/// characters), answering `reply_to` where the messenger can. Refused before anything is
/// stored, on the field `file`: a kind that cannot send files, an empty file, one over the
/// kind's limit (`file_too_large`), a program (`err.file_executable`), anything but a picture
/// of the types a kind that takes only pictures takes (`err.file_images_only`, Avito). A
/// picture within the kind's `max_image_bytes` goes as a picture, anything else (an SVG too)
/// as a document.
pub async fn reply_file(
    core: &Core,
    actor: &Actor,
    conversation_id: ConversationId,
    upload: Upload,
    text: &str,
    reply_to: Option<MessageId>,
) -> Result<message::Model> {
    let rules = file_rules(core, actor, conversation_id).await?;
    let name = clean_name(&upload.file_name);
    let bytes = upload.bytes;
    if bytes.is_empty() {
        return Err(CoreError::field("file", "err.file_empty"));
    }
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > rules.max_bytes {
        return Err(file_too_large(&rules));
    }
    if is_executable(&name, &bytes) {
        return Err(CoreError::field("file", "err.file_executable"));
    }
    // By the bytes: a HEIC named `.jpg` is a HEIC, a PDF named `.png` no picture.
    let picture = crate::blobs::picture_type(&bytes);
    let raster = crate::blobs::raster_type(&bytes).map(str::to_owned);
    if !rules.takes(picture, size) {
        return Err(CoreError::Invalid(vec![FieldError {
            field: "file",
            key: "err.file_images_only",
            limit: Some(usize::try_from(rules.max_image_bytes / MB).unwrap_or(usize::MAX)),
        }]));
    }
    let caption = optional_text("text", text, limits::CAPTION)
        .map_err(|e| CoreError::Invalid(vec![e]))?
        .unwrap_or_default();
    // A picture browsers show goes as a picture; a BMP or HEIC only to a kind that takes it
    // as one (Avito), as a document elsewhere.
    let as_picture = raster.is_some()
        || rules
            .only_images
            .is_some_and(|types| picture.is_some_and(|p| types.contains(&p)));
    let kind = match as_picture && size <= rules.max_image_bytes {
        true => "image",
        false => "document",
    };
    let mime = mime_of(&name, upload.mime_type.as_deref(), &bytes);
    let blob = crate::blobs::put(&core.blobs, &bytes)
        .await
        .map_err(|e| CoreError::Internal(format!("cannot store the file: {e}")))?;
    let a = StoredAttachment {
        kind: kind.to_owned(),
        file_ref: format!("blob:{blob}"),
        file_name: Some(name),
        mime_type: Some(mime),
        size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
        blob: Some(blob),
        raster,
    };
    store_reply(
        core,
        actor,
        conversation_id,
        &caption,
        reply_to,
        Special::File(a),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_known_by_name_and_by_their_first_bytes() {
        for name in ["setup.exe", "run.BAT", "x.sh", "a.msi", "app.apk"] {
            assert!(is_executable(name, b"%PDF-1.4"), "{name}");
        }
        assert!(is_executable("photo.jpg", b"MZ\x90\0"));
        assert!(is_executable("price.pdf", b"\x7fELF\x02\x01"));
        assert!(!is_executable("price.pdf", b"%PDF-1.4"));
        assert!(!is_executable(
            "logo.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"
        ));
    }

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("C:\\Users\\me\\Прайс.pdf"), "Прайс.pdf");
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("a\u{0}b\n.txt"), "ab.txt");
        assert_eq!(clean_name(" "), "file");
        let long = format!("{}.pdf", "я".repeat(300));
        let kept = clean_name(&long);
        assert_eq!(kept.chars().count(), 200);
        assert!(kept.ends_with(".pdf"));
    }

    #[test]
    fn pictures_are_typed_by_their_bytes_and_svg_never_as_a_picture() {
        assert_eq!(
            mime_of("x.pdf", Some("application/pdf"), b"\x89PNG\r\n\x1a\n"),
            "image/png"
        );
        assert_eq!(
            mime_of("logo.svg", Some("image/png"), b"<svg/>"),
            "image/svg+xml"
        );
        assert_eq!(
            mime_of("a.bin", Some("text/html; x"), b"x"),
            "application/octet-stream"
        );
        assert_eq!(
            mime_of("a.odt", Some("Application/X-Y"), b"x"),
            "application/x-y"
        );
    }
}

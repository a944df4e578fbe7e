//! Translations about files a messenger takes only as pictures (Avito): (key, Russian, English).

pub const ENTRIES: &[(&str, &str, &str)] = &[
    ("err.file_images_only", "Этот мессенджер принимает только фотографии JPEG, PNG, GIF, BMP или HEIC до {n} МБ. Документ так не отправить — пришлите ссылку на него текстом.", "This messenger takes only JPEG, PNG, GIF, BMP or HEIC pictures up to {n} MB. A document cannot go this way: send a link to it as text."),
    ("inbox.attach_images_only", "Сюда можно отправить только фотографии JPEG, PNG, GIF, BMP или HEIC до {n} МБ — документы и другие файлы мессенджер не принимает.", "Only JPEG, PNG, GIF, BMP or HEIC pictures up to {n} MB can be sent here: the messenger does not take documents or other files."),
];

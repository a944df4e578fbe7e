//! Translations of internal notes, mentions and notifications: (key, Russian, English).

pub const ENTRIES: &[(&str, &str, &str)] = &[
    ("note.tab_reply", "Ответ клиенту", "Reply"),
    ("note.tab_note", "Заметка", "Note"),
    (
        "note.label",
        "Заметка — видит только команда",
        "Note — only the team sees it",
    ),
    (
        "note.placeholder",
        "Заметка для команды; @ — упомянуть коллегу",
        "A note for the team; @ mentions a teammate",
    ),
    ("note.add", "Сохранить заметку", "Save note"),
    ("note.mentions", "Упомянуть коллегу", "Mention a teammate"),
    (
        "err.note_empty",
        "Заметка пустая: напишите хоть слово.",
        "The note is empty: write at least a word.",
    ),
    (
        "err.not_a_member",
        "Такого участника нет в компании.",
        "No such member in this company.",
    ),
    (
        "err.ids_or_all",
        "Укажите уведомления (ids) или все (all).",
        "Name the notifications (ids) or all of them (all).",
    ),
    ("notify.title", "Уведомления", "Notifications"),
    (
        "notify.new_conversation",
        "Новый разговор",
        "New conversation",
    ),
    ("notify.mention", "упоминает вас", "mentioned you"),
    (
        "notify.assigned",
        "назначает вам разговор",
        "assigned you a conversation",
    ),
    ("notify.empty", "Уведомлений нет.", "No notifications."),
    ("notify.all", "Все уведомления", "All notifications"),
    (
        "notify.mark_all_read",
        "Отметить все прочитанными",
        "Mark all read",
    ),
    ("notify.unread", "новое", "new"),
    ("notify.settings", "Уведомления", "Notifications"),
    (
        "notify.browser",
        "Уведомления браузера и звук, когда вкладка в фоне",
        "Browser notifications and a sound when the tab is in the background",
    ),
    (
        "notify.browser_help",
        "Браузер спросит разрешение, когда вы включите.",
        "The browser asks for permission when you turn this on.",
    ),
    (
        "notify.browser_denied",
        "Браузер запретил уведомления для этого сайта: разрешите их в настройках браузера.",
        "The browser blocks notifications for this site: allow them in its settings.",
    ),
    (
        "notify.digest",
        "Письмо раз в день с разговорами без ответа",
        "A daily e-mail with unanswered conversations",
    ),
    ("notify.save", "Сохранить", "Save"),
    (
        "audit.a.note.add",
        "Заметка в разговоре",
        "Note in a conversation",
    ),
    (
        "audit.a.profile.notifications",
        "Настройки уведомлений",
        "Notification settings",
    ),
];

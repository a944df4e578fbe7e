//! The translation table of the amoCRM path's safeguards (issue 15): the deal marker that keeps
//! a retried batch from doubling deals, late delivery statuses and who is responsible.
//! (key, Russian, English), as in `i18n_table`.

pub const ENTRIES: &[(&str, &str, &str)] = &[
    (
        "crm.f_marker",
        "Метка Chatter (защита от дублей сделок) → поле сделки",
        "Chatter marker (keeps deals from doubling) → deal field",
    ),
    ("crm.one_responsible", "Один ответственный", "One responsible person"),
    (
        "crm.one_responsible_help",
        "Ответственный за сделку в amoCRM и ответственный за диалог в Chatter — один человек: назначение с любой стороны переносится на другую. Сотрудники сопоставляются по e-mail.",
        "The deal's responsible in amoCRM and the conversation's assignee in Chatter are one person: an assignment on either side is carried to the other. Members are matched by e-mail.",
    ),
    ("crm.responsible_lead", "Какая сторона главная", "Which side leads"),
    ("crm.lead_off", "Не синхронизировать", "Do not keep in step"),
    (
        "crm.lead_chatter",
        "Chatter: новая сделка получает ответственного диалога",
        "Chatter: a new deal takes the conversation's assignee",
    ),
    (
        "crm.lead_amocrm",
        "amoCRM: ответственный новой сделки становится ответственным диалога",
        "amoCRM: a new deal's responsible becomes the conversation's assignee",
    ),
    (
        "err.crm_responsible_lead",
        "Выберите один из вариантов",
        "Choose one of the options",
    ),
    // Sending the conversations that were there before amoCRM (item 11).
    ("crm.import.title", "Разговоры до подключения amoCRM", "Conversations from before amoCRM"),
    (
        "crm.import.lead",
        "Клиенты, которые написали до подключения amoCRM, получат сделку только со своим следующим сообщением. Отправьте их открытые разговоры в amoCRM сейчас — со всей перепиской: сделки создаются пачками, сообщения попадают в чат сделки по порядку.",
        "Customers who wrote before amoCRM was connected get a deal only with their next message. Send their open conversations to amoCRM now, with the whole correspondence: deals are made in batches and the messages go into the deal's chat in order.",
    ),
    ("crm.import.days", "За сколько последних дней (1–90)", "How many recent days (1–90)"),
    ("crm.import.count", "Посчитать", "Count"),
    ("crm.import.found_before", "За последние", "In the last"),
    ("crm.import.found_days", "дн.", "days"),
    ("crm.import.conversations", "открытых разговоров", "open conversations"),
    ("crm.import.messages", "сообщений", "messages"),
    ("crm.import.start", "Отправить в amoCRM", "Send to amoCRM"),
    ("crm.import.running", "Отправляем в amoCRM…", "Sending to amoCRM…"),
    ("crm.import.done", "Отправка в amoCRM закончена.", "Sending to amoCRM has finished."),
    ("crm.import.started", "Начата", "Started"),
    ("crm.import.conversations_n", "Разговоров", "Conversations"),
    ("crm.import.of", "из", "of"),
    ("crm.import.sent", "Сообщений принято amoCRM", "Messages accepted by amoCRM"),
    ("crm.import.failed", "Не приняты amoCRM", "Refused by amoCRM"),
    (
        "crm.import.refresh",
        "Страница обновляется сама каждые 5 секунд. Новые сообщения клиентов тем временем тоже уходят в amoCRM.",
        "The page refreshes itself every 5 seconds. Customers' new messages keep going to amoCRM meanwhile.",
    ),
    (
        "crm.import.days_range",
        "Укажите число дней от 1 до 90.",
        "Give a number of days from 1 to 90.",
    ),
    (
        "crm.import.nothing",
        "За этот период нет открытых разговоров, которых ещё нет в amoCRM: отправлять нечего. Выберите период длиннее или проверьте «Входящие».",
        "There are no open conversations in this period that amoCRM does not have yet: nothing to send. Choose a longer period or look at the inbox.",
    ),
    (
        "flash.crm_import_started",
        "Разговоры отправляются в amoCRM — ход отправки ниже.",
        "The conversations are being sent to amoCRM; the progress is below.",
    ),
];

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
];

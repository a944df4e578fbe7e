//! The translation table of the SMS gateway choice (SMSC.ru, SMS.ru, SMS Aero beside Sipout):
//! (key, Russian, English), as in `i18n_table`.

pub const ENTRIES: &[(&str, &str, &str)] = &[
    ("sources.sms_gateways_help", "Выберите SMS-шлюз и введите данные из его личного кабинета. Sipout — API-ключ (lk.sipout.net); SMSC.ru — логин и пароль; SMS.ru — api_id (раздел «Программистам»); SMS Aero — e-mail аккаунта и API-ключ (раздел «Настройки → API»). Имя отправителя — зарегистрированное у операторов, до 11 латинских букв и цифр; пусто — отправитель по умолчанию. Мы проверим данные запросом баланса.", "Choose the SMS gateway and enter what its cabinet shows. Sipout: the API key (lk.sipout.net); SMSC.ru: login and password; SMS.ru: the api_id (the “Programmers” section); SMS Aero: the account's e-mail and API key (“Settings → API”). The sender name is the one registered with operators, up to 11 Latin letters and digits; empty: the default sender. We check the credentials by reading the balance."),
    ("sources.sms_gateway", "SMS-шлюз", "SMS gateway"),
    ("sources.sms_gateway_hint", "Входящие SMS принимает только Sipout; SMSC.ru, SMS.ru и SMS Aero присылают отчёты о доставке.", "Only Sipout passes incoming SMS on; SMSC.ru, SMS.ru and SMS Aero send delivery reports."),
    ("sources.sms_login", "Логин или e-mail (SMSC.ru, SMS Aero)", "Login or e-mail (SMSC.ru, SMS Aero)"),
    ("sources.sms_login_hint", "SMSC.ru — логин кабинета; SMS Aero — e-mail аккаунта. Для Sipout и SMS.ru оставьте пустым.", "SMSC.ru: the cabinet login; SMS Aero: the account e-mail. Leave empty for Sipout and SMS.ru."),
    ("sources.sms_secret", "API-ключ или пароль", "API key or password"),
    ("sources.sms_secret_hint", "Sipout — API-ключ; SMSC.ru — пароль; SMS.ru — api_id; SMS Aero — API-ключ. Хранится зашифрованным и больше не показывается.", "Sipout: the API key; SMSC.ru: the password; SMS.ru: the api_id; SMS Aero: the API key. Stored encrypted and never shown again."),
    ("err.sms_gateway_unknown", "Выберите шлюз из списка.", "Choose a gateway from the list."),
    ("err.smsc_password_format", "Введите пароль от кабинета SMSC.ru.", "Enter the password of the SMSC.ru cabinet."),
    ("err.smsc_login_format", "Введите логин SMSC.ru, без пробелов.", "Enter the SMSC.ru login, without spaces."),
    ("err.smsc_rejected", "SMSC.ru не принял логин и пароль (ошибка авторизации или IP не разрешён в настройках кабинета).", "SMSC.ru refused the login and password (authorisation error, or this IP is not allowed in the cabinet's settings)."),
    ("err.smsru_key_format", "Это не похоже на api_id SMS.ru: вставьте его целиком, без пробелов.", "This does not look like an SMS.ru api_id: paste it whole, without spaces."),
    ("err.smsru_rejected", "SMS.ru ответил «Неправильный api_id». Скопируйте его заново из кабинета SMS.ru.", "SMS.ru answered “wrong api_id”. Copy it again from the SMS.ru cabinet."),
    ("err.smsaero_key_format", "API-ключ SMS Aero — от 16 до 64 символов без пробелов.", "An SMS Aero API key is 16 to 64 characters without spaces."),
    ("err.smsaero_email_format", "Введите e-mail аккаунта SMS Aero.", "Enter the SMS Aero account's e-mail."),
    ("err.smsaero_rejected", "SMS Aero ответил «Authorization failed»: проверьте e-mail и API-ключ.", "SMS Aero answered “Authorization failed”: check the e-mail and the API key."),
];

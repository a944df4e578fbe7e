//! The demo company's reply templates on the first run (Automation → Templates), so that `/` in
//! the reply box opens a list a person can try: a greeting, the price list with the PDF, and
//! delivery terms, with variables and their fallbacks. A reused data directory keeps what was set
//! there (none are added once any exists).

use chatter_core::inbox::templates::{self, FileChange, Scope, TemplateInput};
use chatter_core::inbox::Upload;
use chatter_core::{Actor, Core};

/// A small but real PDF (one empty page), sent as the price list's file.
const PRICE_LIST_PDF: &[u8] = b"%PDF-1.4
1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj
2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj
3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj
trailer<</Root 1 0 R>>
%%EOF
";

/// A template to seed: category, title, text and its file (name, bytes).
type Seed = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static [u8])>,
);

pub(super) async fn seed_templates(core: &Core, actor: &Actor) -> anyhow::Result<()> {
    if !templates::list_templates(core, actor, None)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let items: [Seed; 3] = [
        (
            "Приветствие",
            "Здравствуйте",
            "Здравствуйте, {client_name|добрый день}! Меня зовут {manager_name|менеджер}, я из «{company_name}». Чем могу помочь?",
            None,
        ),
        (
            "Продажи",
            "Прайс-лист",
            "{client_name|Здравствуйте}, отправляю наш прайс-лист. Если нужна скидка на объём — напишите, посчитаю.",
            Some(("Прайс-лист.pdf", PRICE_LIST_PDF)),
        ),
        (
            "Продажи",
            "Доставка",
            "Доставляем по Москве на следующий день, по России — СДЭК, 2–5 дней. Стоимость посчитаю по адресу, {client_name|пришлите} его, пожалуйста.",
            None,
        ),
    ];
    for (category, title, body, file) in items {
        let file = match file {
            Some((name, bytes)) => FileChange::Set(Upload {
                file_name: name.into(),
                mime_type: Some("application/pdf".into()),
                bytes: bytes.to_vec(),
            }),
            None => FileChange::Keep,
        };
        templates::create_template(
            core,
            actor,
            TemplateInput {
                scope: Scope::Company,
                category: category.into(),
                title: title.into(),
                body: body.into(),
                file,
            },
        )
        .await?;
    }
    Ok(())
}

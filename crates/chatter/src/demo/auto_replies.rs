//! The demo company's auto-replies on the first run (Automation → Auto-replies): a greeting for
//! a new customer, an out-of-hours answer and "no manager answered in 5 minutes", so a person
//! clicking through the demo sees them fire on the simulated customers. A reused data directory
//! keeps what was set there.

use chatter_core::automation::replies;
use chatter_core::{Actor, Core};
use chatter_domain::auto_reply::{Action, AutoReply, TextMatch, Trigger};

fn rule(name: &str, trigger: Trigger, text: &str) -> AutoReply {
    AutoReply {
        name: name.into(),
        enabled: true,
        sources: vec![],
        trigger,
        conditions: TextMatch::default(),
        actions: vec![Action::reply(text)],
        once_per_minutes: None,
        once_ever: false,
    }
}

pub(super) async fn seed_auto_replies(core: &Core, actor: &Actor) -> anyhow::Result<()> {
    if !replies::list(core, actor).await?.is_empty() {
        return Ok(());
    }
    for r in [
        rule(
            "Нерабочее время",
            Trigger::OutOfHours,
            "Здравствуйте! Сейчас мы не работаем: пн–пт с 9 до 18 по Москве. Ответим в начале рабочего дня.",
        ),
        rule(
            "Приветствие",
            Trigger::FirstMessage,
            "Здравствуйте! Спасибо, что написали. Менеджер ответит в течение нескольких минут.",
        ),
        rule(
            "Нет ответа 5 минут",
            Trigger::NoAnswer {
                minutes: 5,
                working_hours_only: false,
            },
            "Извините за ожидание — все менеджеры заняты. Мы видим ваше сообщение и скоро ответим.",
        ),
    ] {
        replies::create(core, actor, r).await?;
    }
    Ok(())
}

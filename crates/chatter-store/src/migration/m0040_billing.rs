//! Plans and billing, part one (issue 16): the plans and their prices as data (`plans`, seeded
//! with Basic, Professional and Enterprise, edited by operators), each company's subscription
//! (`subscriptions`: plan, state, period, packs, overage, which warnings were mailed), the
//! jobs held while a company may not send (`billing_holds`, woken when the limit is lifted), and
//! an index on `messages (company_id, sent_at)` for metering what was sent in a period. Every
//! company already here gets the 14-day trial from the moment it migrates. Only adds.

use super::cols::{big_null, ms, ms_null, text, uuid, uuid_null};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// The trial's length, as `chatter_core::billing::TRIAL_DAYS`.
const TRIAL_DAYS: i64 = 14;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let a = Alias::new;
        let big = |n: &str| {
            ColumnDef::new(Alias::new(n))
                .big_integer()
                .not_null()
                .to_owned()
        };
        m.create_table(
            Table::create()
                .table(a("plans"))
                .col(uuid("id").primary_key())
                .col(text("code").unique_key())
                .col(text("name"))
                .col(big_null("messages_per_month"))
                .col(big_null("users"))
                .col(big_null("sources"))
                .col(big("price_month"))
                .col(big("price_year"))
                .col(big("pack_messages"))
                .col(big("pack_price"))
                .col(big("position"))
                .col(ms("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("subscriptions"))
                .col(uuid("company_id").primary_key())
                .col(uuid_null("plan_id"))
                .col(text("state"))
                .col(ms("period_start"))
                .col(ms("period_end"))
                .col(
                    ColumnDef::new(a("overage_allowed"))
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(
                    ColumnDef::new(a("extra_messages"))
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(ms_null("warned_80"))
                .col(ms_null("warned_100"))
                .col(big_null("trial_notice"))
                .col(ms("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("subscriptions"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("billing_holds"))
                .col(uuid("job_id").primary_key())
                .col(uuid("company_id"))
                .col(ms("held_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from(a("billing_holds"), a("company_id"))
                        .to(a("companies"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_billing_holds_company")
                .table(a("billing_holds"))
                .col(a("company_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_messages_company_sent")
                .table(a("messages"))
                .col(a("company_id"))
                .col(a("sent_at"))
                .to_owned(),
        )
        .await?;
        // Migrations run outside the product's clock: the trial starts when the database migrates.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let c = m.get_connection();
        let b = c.get_database_backend();
        // Prices in kopecks; a year costs ten months.
        let plans: [(
            &str,
            &str,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            i64,
            i64,
            i64,
        ); 3] = [
            (
                "basic",
                "Basic",
                Some(1_000),
                Some(3),
                Some(2),
                99_000,
                500,
                39_000,
            ),
            (
                "professional",
                "Professional",
                Some(5_000),
                Some(10),
                Some(5),
                199_000,
                1_000,
                59_000,
            ),
            ("enterprise", "Enterprise", None, None, None, 499_000, 0, 0),
        ];
        for (i, (code, name, messages, users, sources, month, pack, pack_price)) in
            plans.into_iter().enumerate()
        {
            c.execute(crate::stmt(
                b,
                "INSERT INTO plans (id, code, name, messages_per_month, users, sources, \
                 price_month, price_year, pack_messages, pack_price, position, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                vec![
                    uuid::Uuid::now_v7().into(),
                    code.into(),
                    name.into(),
                    messages.into(),
                    users.into(),
                    sources.into(),
                    month.into(),
                    (month * 10).into(),
                    pack.into(),
                    pack_price.into(),
                    (i as i64).into(),
                    now.into(),
                ],
            ))
            .await?;
        }
        c.execute(crate::stmt(
            b,
            "INSERT INTO subscriptions (company_id, plan_id, state, period_start, period_end, \
             overage_allowed, extra_messages, updated_at) \
             SELECT id, NULL, 'trial', $1, $2, $3, 0, $1 FROM companies",
            vec![now.into(), (now + TRIAL_DAYS * DAY_MS).into(), false.into()],
        ))
        .await?;
        Ok(())
    }
}

//! Companies, people, sign-in, audit, API keys, sources, jobs, leases, backups.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn uuid(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).uuid().not_null().to_owned()
}
fn text(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).text().not_null().to_owned()
}
fn text_null(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).text().null().to_owned()
}
fn ms(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().to_owned()
}
fn ms_null(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().null().to_owned()
}
fn fk(
    from: (impl IntoIden + 'static, impl IntoIden + 'static),
    to: (impl IntoIden + 'static, impl IntoIden + 'static),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Companies::Table)
                .col(uuid(Companies::Id).primary_key())
                .col(text(Companies::Name))
                .col(text(Companies::Slug).unique_key())
                .col(text(Companies::Timezone))
                .col(ms(Companies::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(uuid(Users::Id).primary_key())
                .col(text(Users::Email).unique_key())
                .col(text(Users::Name))
                .col(text_null(Users::PasswordHash))
                .col(
                    ColumnDef::new(Users::TelegramId)
                        .big_integer()
                        .null()
                        .unique_key(),
                )
                .col(text_null(Users::TotpSecret))
                .col(
                    ColumnDef::new(Users::TotpEnabled)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ms_null(Users::TotpLastStep))
                .col(text(Users::Locale))
                .col(ms(Users::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Memberships::Table)
                .col(uuid(Memberships::CompanyId))
                .col(uuid(Memberships::UserId))
                .col(text(Memberships::Role))
                .col(ms(Memberships::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(Memberships::CompanyId)
                        .col(Memberships::UserId),
                )
                .foreign_key(&mut fk(
                    (Memberships::Table, Memberships::CompanyId),
                    (Companies::Table, Companies::Id),
                ))
                .foreign_key(&mut fk(
                    (Memberships::Table, Memberships::UserId),
                    (Users::Table, Users::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_memberships_user")
                .table(Memberships::Table)
                .col(Memberships::UserId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .col(text(Sessions::IdHash).primary_key())
                .col(uuid(Sessions::UserId))
                .col(ColumnDef::new(Sessions::CompanyId).uuid().null())
                .col(
                    ColumnDef::new(Sessions::Pending2fa)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(text(Sessions::Csrf))
                .col(text(Sessions::Ip))
                .col(text(Sessions::UserAgent))
                .col(ms(Sessions::CreatedAt))
                .col(ms(Sessions::LastSeenAt))
                .col(ms(Sessions::ExpiresAt))
                .foreign_key(&mut fk(
                    (Sessions::Table, Sessions::UserId),
                    (Users::Table, Users::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_sessions_user")
                .table(Sessions::Table)
                .col(Sessions::UserId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RecoveryCodes::Table)
                .col(text(RecoveryCodes::CodeHash).primary_key())
                .col(uuid(RecoveryCodes::UserId))
                .col(ms_null(RecoveryCodes::UsedAt))
                .foreign_key(&mut fk(
                    (RecoveryCodes::Table, RecoveryCodes::UserId),
                    (Users::Table, Users::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PasswordResets::Table)
                .col(text(PasswordResets::TokenHash).primary_key())
                .col(uuid(PasswordResets::UserId))
                .col(ms(PasswordResets::CreatedAt))
                .col(ms(PasswordResets::ExpiresAt))
                .col(ms_null(PasswordResets::UsedAt))
                .foreign_key(&mut fk(
                    (PasswordResets::Table, PasswordResets::UserId),
                    (Users::Table, Users::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Invites::Table)
                .col(uuid(Invites::Id).primary_key())
                .col(uuid(Invites::CompanyId))
                .col(text(Invites::Email))
                .col(text(Invites::Role))
                .col(text(Invites::TokenHash).unique_key())
                .col(uuid(Invites::InvitedBy))
                .col(ms(Invites::CreatedAt))
                .col(ms(Invites::ExpiresAt))
                .col(ms_null(Invites::AcceptedAt))
                .col(ms_null(Invites::RevokedAt))
                .foreign_key(&mut fk(
                    (Invites::Table, Invites::CompanyId),
                    (Companies::Table, Companies::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(uuid(AuditLog::Id).primary_key())
                .col(ColumnDef::new(AuditLog::CompanyId).uuid().null())
                .col(ColumnDef::new(AuditLog::UserId).uuid().null())
                .col(text(AuditLog::Actor))
                .col(text(AuditLog::Action))
                .col(text(AuditLog::Target))
                .col(text(AuditLog::Ip))
                .col(text(AuditLog::UserAgent))
                .col(text(AuditLog::Details))
                .col(ms(AuditLog::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_audit_company_time")
                .table(AuditLog::Table)
                .col(AuditLog::CompanyId)
                .col(AuditLog::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(uuid(ApiKeys::Id).primary_key())
                .col(uuid(ApiKeys::CompanyId))
                .col(text(ApiKeys::Name))
                .col(text(ApiKeys::Prefix))
                .col(text(ApiKeys::KeyHash).unique_key())
                .col(ColumnDef::new(ApiKeys::CreatedBy).uuid().null())
                .col(ms(ApiKeys::CreatedAt))
                .col(ms_null(ApiKeys::LastUsedAt))
                .col(ms_null(ApiKeys::RevokedAt))
                .foreign_key(&mut fk(
                    (ApiKeys::Table, ApiKeys::CompanyId),
                    (Companies::Table, Companies::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Sources::Table)
                .col(uuid(Sources::Id).primary_key())
                .col(uuid(Sources::CompanyId))
                .col(ColumnDef::new(Sources::Kind).integer().not_null())
                .col(text(Sources::Name))
                .col(text_null(Sources::Secret))
                .col(text(Sources::Settings))
                .col(text(Sources::Status))
                .col(text_null(Sources::LastError))
                .col(ms(Sources::CreatedAt))
                .col(ms(Sources::UpdatedAt))
                .foreign_key(&mut fk(
                    (Sources::Table, Sources::CompanyId),
                    (Companies::Table, Companies::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(uuid(Jobs::Id).primary_key())
                .col(ColumnDef::new(Jobs::CompanyId).uuid().null())
                .col(text(Jobs::Kind))
                .col(text(Jobs::Payload))
                .col(text(Jobs::Status))
                .col(
                    ColumnDef::new(Jobs::Attempts)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(ColumnDef::new(Jobs::MaxAttempts).integer().not_null())
                .col(ms(Jobs::RunAt))
                .col(ms_null(Jobs::LeaseUntil))
                .col(text_null(Jobs::LockedBy))
                .col(text_null(Jobs::DedupKey).unique_key())
                .col(text_null(Jobs::LastError))
                .col(ms(Jobs::CreatedAt))
                .col(ms(Jobs::UpdatedAt))
                .col(ms_null(Jobs::FinishedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_jobs_due")
                .table(Jobs::Table)
                .col(Jobs::Status)
                .col(Jobs::RunAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Leases::Table)
                .col(text(Leases::Name).primary_key())
                .col(text(Leases::Holder))
                .col(ms(Leases::ExpiresAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SignInThrottle::Table)
                .col(text(SignInThrottle::Key).primary_key())
                .col(
                    ColumnDef::new(SignInThrottle::Failures)
                        .integer()
                        .not_null(),
                )
                .col(ms(SignInThrottle::WindowStart))
                .col(ms(SignInThrottle::LockedUntil))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Backups::Table)
                .col(uuid(Backups::Id).primary_key())
                .col(text(Backups::Path))
                .col(ms(Backups::SizeBytes))
                .col(text(Backups::Trigger))
                .col(text(Backups::Status))
                .col(text_null(Backups::Error))
                .col(ms(Backups::CreatedAt))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Companies {
    Table,
    Id,
    Name,
    Slug,
    Timezone,
    CreatedAt,
}
#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    PasswordHash,
    TelegramId,
    TotpSecret,
    TotpEnabled,
    TotpLastStep,
    Locale,
    CreatedAt,
}
#[derive(DeriveIden)]
enum Memberships {
    Table,
    CompanyId,
    UserId,
    Role,
    CreatedAt,
}
#[derive(DeriveIden)]
enum Sessions {
    Table,
    IdHash,
    UserId,
    CompanyId,
    #[sea_orm(iden = "pending_2fa")]
    Pending2fa,
    Csrf,
    Ip,
    UserAgent,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
}
#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    CodeHash,
    UserId,
    UsedAt,
}
#[derive(DeriveIden)]
enum PasswordResets {
    Table,
    TokenHash,
    UserId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}
#[derive(DeriveIden)]
enum Invites {
    Table,
    Id,
    CompanyId,
    Email,
    Role,
    TokenHash,
    InvitedBy,
    CreatedAt,
    ExpiresAt,
    AcceptedAt,
    RevokedAt,
}
#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    CompanyId,
    UserId,
    Actor,
    Action,
    Target,
    Ip,
    UserAgent,
    Details,
    CreatedAt,
}
#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    CompanyId,
    Name,
    Prefix,
    KeyHash,
    CreatedBy,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}
#[derive(DeriveIden)]
enum Sources {
    Table,
    Id,
    CompanyId,
    Kind,
    Name,
    Secret,
    Settings,
    Status,
    LastError,
    CreatedAt,
    UpdatedAt,
}
#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    CompanyId,
    Kind,
    Payload,
    Status,
    Attempts,
    MaxAttempts,
    RunAt,
    LeaseUntil,
    LockedBy,
    DedupKey,
    LastError,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}
#[derive(DeriveIden)]
enum Leases {
    Table,
    Name,
    Holder,
    ExpiresAt,
}
#[derive(DeriveIden)]
enum SignInThrottle {
    Table,
    Key,
    Failures,
    WindowStart,
    LockedUntil,
}
#[derive(DeriveIden)]
enum Backups {
    Table,
    Id,
    Path,
    SizeBytes,
    Trigger,
    Status,
    Error,
    CreatedAt,
}

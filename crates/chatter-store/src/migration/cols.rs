//! Column definitions the migrations share, by name: the same types on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

fn col(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
}

pub fn uuid(name: &str) -> ColumnDef {
    col(name).uuid().not_null().to_owned()
}

pub fn uuid_null(name: &str) -> ColumnDef {
    col(name).uuid().null().to_owned()
}

pub fn text(name: &str) -> ColumnDef {
    col(name).text().not_null().to_owned()
}

pub fn text_null(name: &str) -> ColumnDef {
    col(name).text().null().to_owned()
}

/// A time in unix milliseconds.
pub fn ms(name: &str) -> ColumnDef {
    col(name).big_integer().not_null().to_owned()
}

pub fn ms_null(name: &str) -> ColumnDef {
    col(name).big_integer().null().to_owned()
}

pub fn big_null(name: &str) -> ColumnDef {
    col(name).big_integer().null().to_owned()
}

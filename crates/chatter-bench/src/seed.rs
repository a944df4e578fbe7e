//! The rows the data benches (`search`, `figures`) write straight into a server's database,
//! past the ingest path: an API source, a customer (contact and conversation) and the
//! messages of their dialogue. One place, so both benches store rows of the same shape as
//! the product does.

use chatter_domain::{ConversationStatus, Direction, MessageStatus, SourceKind};
use chatter_store::entity::{contact, conversation, message, source};
use sea_orm::Set;
use uuid::Uuid;

/// Where the rows belong.
#[derive(Clone, Copy)]
pub struct Owner {
    pub company: Uuid,
    pub source: Uuid,
}

/// A connected API source of `company`.
pub fn source(
    id: Uuid,
    company: Uuid,
    name: String,
    created_at: i64,
    now: i64,
) -> source::ActiveModel {
    source::ActiveModel {
        id: Set(id.into()),
        company_id: Set(company.into()),
        kind: Set(SourceKind::Api),
        name: Set(name),
        secret: Set(None),
        settings: Set("{}".into()),
        status: Set("connected".into()),
        last_error: Set(None),
        created_at: Set(created_at),
        updated_at: Set(now),
        cursor: Set(None),
        last_inbound_at: Set(None),
        last_ok_at: Set(None),
    }
}

/// A customer who first wrote at `at`; `key` is both their and their chat's external id.
pub struct Customer<'a> {
    pub contact: Uuid,
    pub conversation: Uuid,
    pub key: &'a str,
    pub name: &'a str,
    pub phone: Option<String>,
    pub at: i64,
}

pub fn contact(o: Owner, c: &Customer) -> contact::ActiveModel {
    contact::ActiveModel {
        id: Set(c.contact.into()),
        company_id: Set(o.company.into()),
        source_id: Set(o.source.into()),
        external_id: Set(c.key.to_owned()),
        name: Set(c.name.to_owned()),
        username: Set(None),
        phone: Set(c.phone.clone()),
        merged_into: Set(None),
        email: Set(None),
        edited_at: Set(None),
        created_at: Set(c.at),
        updated_at: Set(c.at),
    }
}

/// The customer's conversation, whose newest message is `last` (text, time).
pub fn conversation(
    o: Owner,
    c: &Customer,
    status: ConversationStatus,
    last: (String, i64),
) -> conversation::ActiveModel {
    conversation::ActiveModel {
        id: Set(c.conversation.into()),
        company_id: Set(o.company.into()),
        source_id: Set(o.source.into()),
        contact_id: Set(c.contact.into()),
        external_chat_id: Set(c.key.to_owned()),
        chat_kind: Set("private".into()),
        title: Set(None),
        status: Set(status),
        assignee_id: Set(None),
        unread: Set(0),
        blocked: Set(false),
        last_text: Set(last.0.chars().take(140).collect()),
        last_message_at: Set(last.1),
        created_at: Set(c.at),
        updated_at: Set(last.1),
    }
}

/// One message of a dialogue: the customer's (`inbound`, stored as received) or an answer
/// (stored as sent), written by `author` when a member wrote it.
pub struct Line<'a> {
    pub id: Uuid,
    pub external_id: String,
    pub text: String,
    pub inbound: bool,
    pub sender_name: &'a str,
    pub author: Option<Uuid>,
    pub at: i64,
}

pub fn message(o: Owner, c: &Customer, l: Line) -> message::ActiveModel {
    message::ActiveModel {
        id: Set(l.id.into()),
        company_id: Set(o.company.into()),
        conversation_id: Set(c.conversation.into()),
        source_id: Set(o.source.into()),
        direction: Set(if l.inbound {
            Direction::In
        } else {
            Direction::Out
        }),
        external_id: Set(Some(l.external_id)),
        text: Set(Some(l.text)),
        attachments: Set("[]".into()),
        extra: Set(None),
        sender_name: Set(l.sender_name.to_owned()),
        author_id: Set(l.author),
        reply_to_id: Set(None),
        reply_to_external_id: Set(None),
        status: Set(if l.inbound {
            MessageStatus::Received
        } else {
            MessageStatus::Sent
        }),
        error: Set(None),
        sent_parts: Set("[]".into()),
        created_at: Set(l.at),
        sent_at: Set((!l.inbound).then_some(l.at)),
        edited_at: Set(None),
    }
}

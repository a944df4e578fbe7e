//! The entities of the tables once reached only by hand-written SQL match the migrated columns
//! (every field written and read back unchanged, on the backend the environment selects), and
//! the state enums read the stored texts and refuse unknown ones.

use chatter_domain::{ConversationStatus, Direction, JobState, MessageStatus};
use chatter_store::entity::{
    acme_account, acme_challenge, api_webhook_cursor, api_webhook_mark, crm_contact,
    crm_conversation, crm_message, crm_outbox, crm_setting, crm_turn, instance_fact, lease, node,
    routing_rule, tls_certificate,
};
use chatter_store::sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, TryGetable,
};
use chatter_store::stmt;
use chatter_testkit::db::TestDb;
use std::fmt::Debug;
use uuid::Uuid;

/// Inserts `model` with every field set and finds it again among the table's rows.
async fn round_trip<E>(db: &DatabaseConnection, model: E::Model)
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel> + Clone + PartialEq + Debug,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Send,
{
    E::insert(model.clone().into_active_model())
        .exec_without_returning(db)
        .await
        .unwrap_or_else(|e| panic!("insert {model:?}: {e}"));
    let rows = E::find().all(db).await.expect("read back");
    assert!(rows.contains(&model), "{model:?} not in {rows:?}");
}

#[tokio::test]
async fn the_hand_sql_tables_have_entities_matching_their_columns() {
    let t = TestDb::new().await;
    let db = &t.db;
    let (company, other) = (Uuid::now_v7(), Uuid::now_v7());
    round_trip::<tls_certificate::Entity>(
        db,
        tls_certificate::Model {
            name: "a.example,b.example".into(),
            cert_pem: Some("-----BEGIN CERTIFICATE-----".into()),
            key_pem: Some("sealed".into()),
            not_before: Some(1_700_000_000_000),
            not_after: Some(1_707_776_000_000),
            serial: Some("0a1b".into()),
            issued_at: Some(1_700_000_000_500),
            issued_by_node: Some("node-1".into()),
            attempted_at: Some(1_700_000_000_400),
            error: None,
            next_attempt_at: 1_705_000_000_000,
            failures: 2,
            updated_at: 1_700_000_000_600,
        },
    )
    .await;
    round_trip::<acme_account::Entity>(
        db,
        acme_account::Model {
            directory: "https://acme.test/directory".into(),
            email: "ops@example.test".into(),
            credentials: "sealed".into(),
            created_at: 1,
        },
    )
    .await;
    round_trip::<acme_challenge::Entity>(
        db,
        acme_challenge::Model {
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
            expires_at: 2,
        },
    )
    .await;
    round_trip::<api_webhook_mark::Entity>(
        db,
        api_webhook_mark::Model {
            subject_id: other,
            state: "open|".into(),
            updated_at: 3,
        },
    )
    .await;
    round_trip::<api_webhook_cursor::Entity>(
        db,
        api_webhook_cursor::Model {
            name: "webhooks".into(),
            last_event_id: 41,
            candidate_max: Some(44),
            pending_max: None,
            pending_xmax: Some(9_000_000_000),
            updated_at: 4,
        },
    )
    .await;
    round_trip::<node::Entity>(
        db,
        node::Model {
            name: "node-1".into(),
            version: "0.1.0".into(),
            role: "both".into(),
            started_at: 5,
            heartbeat_at: 6,
        },
    )
    .await;
    round_trip::<instance_fact::Entity>(
        db,
        instance_fact::Model {
            name: "a_fact".into(),
            value: "42".into(),
            created_at: 7,
        },
    )
    .await;
    round_trip::<lease::Entity>(
        db,
        lease::Model {
            name: "poller:x".into(),
            holder: "node-1".into(),
            expires_at: 8,
        },
    )
    .await;
    round_trip::<crm_setting::Entity>(
        db,
        crm_setting::Model {
            company_id: company,
            scope: "default".into(),
            settings: "{}".into(),
            updated_at: 9,
        },
    )
    .await;
    round_trip::<routing_rule::Entity>(
        db,
        routing_rule::Model {
            company_id: company,
            rules: "[]".into(),
            updated_at: 10,
        },
    )
    .await;
    round_trip::<crm_turn::Entity>(
        db,
        crm_turn::Model {
            company_id: company,
            list_key: "1,2".into(),
            turn: 3,
        },
    )
    .await;
    round_trip::<crm_contact::Entity>(
        db,
        crm_contact::Model {
            contact_id: other,
            company_id: company,
            remote_id: 7_000_000_001,
            created_at: 11,
        },
    )
    .await;
    round_trip::<crm_conversation::Entity>(
        db,
        crm_conversation::Model {
            conversation_id: other,
            company_id: company,
            deal_id: Some(12),
            remote_contact_id: Some(7_000_000_001),
            chat_ref: Some("chat-1".into()),
            chat_linked: true,
            rule_id: Some("r1".into()),
            rule_name: Some("Ночью".into()),
            decision: Some("{}".into()),
            responsible_user_id: None,
            created_at: 13,
            updated_at: 14,
        },
    )
    .await;
    round_trip::<crm_message::Entity>(
        db,
        crm_message::Model {
            message_id: other,
            company_id: company,
            kind: "note".into(),
            remote_id: "n-1".into(),
            created_at: 15,
        },
    )
    .await;
    round_trip::<crm_outbox::Entity>(
        db,
        crm_outbox::Model {
            id: 1,
            company_id: company,
            conversation_id: other,
            message_id: None,
            kind: "message".into(),
            payload: "{}".into(),
            status: "pending".into(),
            attempts: 0,
            last_error: None,
            next_at: 16,
            created_at: 17,
            import_id: Some(Uuid::now_v7()),
        },
    )
    .await;
}

/// Reads the text `value` as a column named `state` and converts it to `T`.
async fn read_as<T: TryGetable>(db: &DatabaseConnection, value: &str) -> Option<T> {
    let row = db
        .query_one(stmt(
            db.get_database_backend(),
            "SELECT CAST($1 AS TEXT) AS state",
            vec![value.into()],
        ))
        .await
        .expect("query")
        .expect("a row");
    row.try_get::<T>("", "state").ok()
}

#[tokio::test]
async fn stored_state_texts_read_as_enums_and_unknown_ones_are_errors() {
    let t = TestDb::new().await;
    let db = &t.db;
    assert_eq!(read_as::<Direction>(db, "out").await, Some(Direction::Out));
    assert_eq!(
        read_as::<MessageStatus>(db, "delivered").await,
        Some(MessageStatus::Delivered)
    );
    assert_eq!(
        read_as::<ConversationStatus>(db, "closed").await,
        Some(ConversationStatus::Closed)
    );
    assert_eq!(read_as::<JobState>(db, "dead").await, Some(JobState::Dead));
    assert_eq!(read_as::<Direction>(db, "sideways").await, None);
    assert_eq!(read_as::<MessageStatus>(db, "sending").await, None);
    assert_eq!(read_as::<ConversationStatus>(db, "Open").await, None);
}

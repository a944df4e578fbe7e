//! Instance operations belong to the operator: company owners no longer see or make backups of
//! the whole database, nor other companies' failed jobs; the operator area (`/app/operator`)
//! shows them to operators only (404 to everyone else), manual backups are pruned like daily
//! ones, and a failed job of any company can be retried there.

use crate::messages::{eventually, PW};
use chatter_core::accounts::operators;
use chatter_store::entity::{backup, job};
use chatter_store::jobs::{self, NewJob};
use chatter_testkit::{csrf_of, Session, TestApp};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

#[tokio::test]
async fn only_operators_see_backups_and_failed_jobs_and_manual_backups_are_pruned() {
    let app = TestApp::new().await;
    let owner = Session::sign_up(&app, "Альфа", "Анна", "owner@alpha.test", PW).await;
    let ops = Session::sign_up(&app, "Хостинг", "Олег", "ops@host.test", PW).await;

    // A job of the owner's company that failed for good.
    let company = chatter_store::entity::company::Entity::find()
        .filter(chatter_store::entity::company::Column::Name.eq("Альфа"))
        .one(&app.core.db)
        .await
        .expect("lookup")
        .expect("company")
        .id;
    let dead = jobs::enqueue(
        &app.core.db,
        NewJob::new(
            "test.no_such_handler",
            serde_json::json!({}),
            app.core.now(),
        )
        .company(company)
        .max_attempts(1),
        app.core.now(),
    )
    .await
    .expect("enqueue")
    .expect("a job");
    eventually("the job dies", || async {
        job::Entity::find_by_id(dead)
            .one(&app.core.db)
            .await
            .expect("lookup")
            .is_some_and(|j| j.status == jobs::DEAD)
    })
    .await;

    // The owner's Settings has neither backups nor the job list; the old routes are gone.
    let settings = owner.html("/app/settings").await;
    assert!(!settings.contains("id=\"backups\""), "{settings}");
    assert!(!settings.contains("backup-now"), "{settings}");
    assert!(!settings.contains("id=\"dead-jobs\""), "{settings}");
    assert!(!settings.contains("/app/operator"), "{settings}");
    let csrf = csrf_of(&settings);
    for path in [
        "/app/settings/backups".to_string(),
        format!("/app/settings/jobs/{dead}/retry"),
    ] {
        let r = owner.post_with(&path, &csrf, &[]).await;
        assert!(
            r.status() == 404 || r.status() == 405,
            "{path}: {}",
            r.status()
        );
    }
    // Nobody but an operator finds the operator area.
    for who in [&owner, &ops, &Session::new(&app)] {
        assert_eq!(who.get("/app/operator").await.status(), 404);
        let csrf = csrf_of(&who.html("/sign-in").await);
        let csrf = if csrf.is_empty() {
            csrf_of(&who.html("/app/settings").await)
        } else {
            csrf
        };
        assert_eq!(
            who.post_with("/app/operator/backups", &csrf, &[])
                .await
                .status(),
            404
        );
    }
    assert_eq!(
        backup::Entity::find().count(&app.core.db).await.expect("n"),
        0
    );

    // The instance's operator (named from the command line) gets the area.
    operators::add(&app.core, "ops@host.test")
        .await
        .expect("operator added");
    let settings = ops.html("/app/settings").await;
    assert!(
        settings.contains("href=\"/app/operator\""),
        "a link from Settings"
    );
    let page = ops.html("/app/operator").await;
    assert!(page.contains("id=\"backup-now\""), "{page}");
    // The nodes alive on this database, with their version: this test's server is one.
    let node = chatter_core::jobs::worker::node_name();
    assert!(
        page.contains(&format!("class=\"node\" data-name=\"{node}\""))
            && page.contains(env!("CARGO_PKG_VERSION")),
        "the node list names this node and its version: {page}"
    );
    assert!(
        page.contains(&format!("id=\"job-{dead}\"")),
        "every company's dead jobs: {page}"
    );

    // Manual backups keep the same retention as the daily ones.
    let keep = app.core.config.backup_keep;
    for _ in 0..keep + 2 {
        let r = ops
            .post_from("/app/operator", "/app/operator/backups", &[])
            .await;
        assert_eq!(r.status(), 303);
        assert_eq!(
            crate::messages::location(&r),
            "/app/operator?ok=backup_done#backups"
        );
    }
    let manual = backup::Entity::find()
        .filter(backup::Column::Trigger.eq("manual"))
        .all(&app.core.db)
        .await
        .expect("backups");
    assert_eq!(manual.len(), keep, "pruned to backup_keep");
    let files = std::fs::read_dir(chatter_core::backup::backup_dir(&app.core.config.data_dir))
        .map(|d| d.count())
        .unwrap_or(0);
    // PostgreSQL dumps are files too; a failed dump (no pg_dump) leaves none.
    assert!(files <= keep, "old backup files are deleted: {files}");
    let page = ops.html("/app/operator").await;
    assert_eq!(page.matches("class=\"backup\"").count(), keep, "{page}");

    // Retrying the dead job from the operator area queues it again (and it dies again).
    let r = ops
        .post_from(
            "/app/operator",
            &format!("/app/operator/jobs/{dead}/retry"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let retried = chatter_store::entity::audit::Entity::find()
        .filter(chatter_store::entity::audit::Column::Action.eq("job.retry"))
        .count(&app.core.db)
        .await
        .expect("audit");
    assert_eq!(retried, 1);

    // Taken away again: 404.
    operators::remove(&app.core, "ops@host.test")
        .await
        .expect("removed");
    assert_eq!(ops.get("/app/operator").await.status(), 404);
    app.stop().await;
}

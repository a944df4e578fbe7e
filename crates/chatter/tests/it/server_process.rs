//! One `chatter serve` process of the real binary over a data directory and database that
//! outlive it, for the tests that SIGKILL it and start it again.

use chatter_testkit::TestDb;
use sea_orm::{ConnectionTrait, Statement};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    pub db: TestDb,
    pub port: u16,
    /// What points the program at the fakes (besides the database and data directory).
    env: Vec<(&'static str, String)>,
    child: Option<Child>,
}

impl Server {
    /// A free port and the program's environment, made from its URL; not started yet.
    pub fn new(db: TestDb, env: impl FnOnce(&str) -> Vec<(&'static str, String)>) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let env = env(&format!("http://127.0.0.1:{port}"));
        Server {
            db,
            port,
            env,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the program (again) on the same port, data directory and database.
    pub async fn spawn(&mut self) {
        let dir = self.db.data_dir().to_path_buf();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("log file");
        let mut c = Command::new(env!("CARGO_BIN_EXE_chatter"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CHATTER_") {
                c.env_remove(k);
            }
        }
        c.env_remove("DATABASE_URL").env_remove("TEST_DATABASE_URL");
        if self.db.is_postgres() {
            c.env("DATABASE_URL", &self.db.url);
        }
        c.env("CHATTER_LOG", "warn")
            // Jobs a killed node held come back after this lease, not the default minute.
            .env("CHATTER_WORKER__LEASE_SECS", "5");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.child = Some(c.spawn().expect("start chatter"));
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.url())).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("chatter exited ({status}):\n{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chatter did not come up:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.db.data_dir().join("server.log")).unwrap_or_default()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .db
            .query_one(Statement::from_string(
                self.db.db.get_database_backend(),
                sql.to_string(),
            ))
            .await
            .expect("count")
            .expect("row");
        row.try_get_by_index::<i64>(0).expect("n")
    }

    pub async fn strings(&self, sql: &str) -> Vec<String> {
        self.db
            .db
            .query_all(Statement::from_string(
                self.db.db.get_database_backend(),
                sql.to_string(),
            ))
            .await
            .expect("query")
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).expect("text"))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

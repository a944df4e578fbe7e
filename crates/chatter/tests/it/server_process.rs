//! One `chatter serve` process of the real binary over a data directory and database that
//! outlive it, for the tests that SIGKILL it and start it again; several of them may share one
//! database as the nodes of one installation.

use chatter_testkit::TestDb;
use sea_orm::{ConnectionTrait, Statement};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub struct Server {
    pub db: Arc<TestDb>,
    pub port: u16,
    /// This node's data directory (the database's own for a single node).
    dir: PathBuf,
    /// What points the program at the fakes (besides the database and data directory).
    env: Vec<(&'static str, String)>,
    child: Option<Child>,
}

impl Server {
    /// A free port and the program's environment, made from its URL; not started yet.
    pub fn new(db: TestDb, env: impl FnOnce(&str) -> Vec<(&'static str, String)>) -> Server {
        let db = Arc::new(db);
        let dir = db.data_dir().to_path_buf();
        Self::with_dir(db, dir, env)
    }

    /// Another node on the same database, with its own data directory `name` (give every node
    /// the same `CHATTER_MASTER_KEY`: a node with another key refuses to start).
    pub fn sharing(
        db: &Arc<TestDb>,
        name: &str,
        env: impl FnOnce(&str) -> Vec<(&'static str, String)>,
    ) -> Server {
        let dir = db.data_dir().join(name);
        std::fs::create_dir_all(&dir).expect("node data directory");
        Self::with_dir(db.clone(), dir, env)
    }

    fn with_dir(
        db: Arc<TestDb>,
        dir: PathBuf,
        env: impl FnOnce(&str) -> Vec<(&'static str, String)>,
    ) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let env = env(&format!("http://127.0.0.1:{port}"));
        Server {
            db,
            port,
            dir,
            env,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the program (again) on the same port, data directory and database, and waits
    /// until it answers `/readyz` (listening starts before migrations; ready means migrated).
    pub async fn spawn(&mut self) {
        self.start();
        self.wait_for("/readyz", 60).await;
    }

    /// Starts the program without waiting for it.
    pub fn start(&mut self) {
        self.child = Some(self.command(&["serve", "--bind", &format!("127.0.0.1:{}", self.port)]));
    }

    /// Starts `chatter <args> --data-dir <this node's>` with this node's environment and log.
    pub fn command(&self, args: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
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
            // Jobs a killed node held come back after this lease, not the default.
            .env("CHATTER_WORKER__LEASE_SECS", "5");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(args)
            .arg("--data-dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        c.spawn().expect("start chatter")
    }

    /// Waits until `path` answers 200; panics with the log if the program exits or `secs` pass.
    pub async fn wait_for(&mut self, path: &str, secs: u64) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(r) = http.get(format!("{}{path}", self.url())).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.exited() {
                panic!("chatter exited ({status}):\n{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chatter did not answer {path}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status, if the program has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id of the running program.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (up to `secs`) for the program to finish its requests and jobs
    /// and exit; panics with the log unless it exits cleanly in time.
    pub async fn terminate(&mut self, secs: u64) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "SIGTERM not sent");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(status) = c.try_wait().expect("wait for chatter") {
                break status;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "chatter did not stop within {secs} s of SIGTERM:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            status.success(),
            "chatter exited with {status} after SIGTERM:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
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

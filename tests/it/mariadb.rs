//! `mysql://` checks against a throwaway MariaDB server (Debian's `mariadb-server`), started in
//! a temp dir on a free port.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{free_port, wait_for, Medic};

struct MariaDb {
    /// Holds the data directory until the server is gone.
    _dir: tempfile::TempDir,
    port: u16,
    server: Child,
}

impl MariaDb {
    async fn start() -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("medic-mariadb")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let user = if crate::support::is_root() {
            "root"
        } else {
            ""
        };
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if !user.is_empty() {
            install.arg(format!("--user={user}"));
        }
        let out = install
            .output()
            .expect("mariadb-install-db (Debian package mariadb-server) must be installed: scripts/test.sh installs it");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let socket = dir.path().join("sock");
        let mut server = Command::new("mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !user.is_empty() {
            server.arg(format!("--user={user}"));
        }
        let server = server.spawn().expect("mariadbd");
        let db = MariaDb {
            _dir: dir,
            port,
            server,
        };
        let options = sqlx::mysql::MySqlConnectOptions::new()
            .socket(&socket)
            .username("root");
        let pool = wait_for(
            "MariaDB to accept connections",
            Duration::from_secs(60),
            || {
                let options = options.clone();
                async move { sqlx::MySqlPool::connect_with(options).await.ok() }
            },
        )
        .await;
        for statement in [
            "CREATE USER 'medic'@'%' IDENTIFIED BY 'maria-pw-77aa'",
            "GRANT ALL ON *.* TO 'medic'@'%'",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
        db
    }

    fn url(&self, password: &str) -> String {
        format!("mysql://medic:{password}@127.0.0.1:{}/mysql", self.port)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[tokio::test]
async fn mysql_checks_against_a_real_mariadb() {
    let db = MariaDb::start().await;
    let medic = Medic::start(&format!(
        "defaults: {{interval: 200ms}}\nchecks:\n  - name: maria\n    database: {{url: '{}', query: 'SELECT 1'}}\n  - name: denied\n    database: {{url: '{}'}}\n",
        db.url("maria-pw-77aa"),
        db.url("wrong-maria-pw")
    ))
    .await;
    let v = medic.wait_status("maria", "healthy").await;
    assert_eq!(v["metadata"]["driver"], "mysql");
    assert_eq!(v["metadata"]["rows"], 1);
    let v = medic.wait_status("denied", "critical").await;
    assert!(
        v["message"].as_str().unwrap().contains("Access denied"),
        "{v}"
    );
    let everything = format!(
        "{}{}{}",
        medic.get("/api/v1/checks/denied").await.1,
        medic.metrics().await,
        medic.logs()
    );
    assert!(!everything.contains("maria-pw-77aa") && !everything.contains("wrong-maria-pw"));
}

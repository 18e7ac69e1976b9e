//! A private Postgres cluster for tests: `initdb` into a temporary directory,
//! a free port on 127.0.0.1, its socket in that directory, trust auth for the
//! `warden` role; run as the `postgres` user when the tests run as root
//! (Postgres refuses to), and stopped when dropped. The set-up installs
//! Debian's `postgresql`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The newest installed server's programs (`/usr/lib/postgresql/<n>/bin`).
fn server_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("no Postgres server under /usr/lib/postgresql: scripts/setup installs Debian's postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a server program, as `postgres` when we are root.
fn run(program: &Path, args: &[&str]) -> Output {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.crt`), a server certificate it signed for 127.0.0.1 and
/// localhost (`server.crt`, `server.key`, the key the server's user's alone),
/// and another CA that signed nothing here (`other-ca.crt`).
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("the certificates' directory");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-subj",
                &format!("/CN=warden test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("server.ext");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    if is_root() {
        let owned = Command::new("chown").arg("postgres").arg(&key).status().expect("chown");
        assert!(owned.success(), "chown postgres server.key");
    }
}

impl PgCluster {
    /// A fresh cluster, started and answering.
    pub fn start() -> PgCluster {
        Self::launch(false)
    }

    /// A fresh cluster that also takes TLS connections, with a certificate
    /// signed by the CA in [`PgCluster::tls_file`]`("ca.crt")`.
    pub fn start_tls() -> PgCluster {
        Self::launch(true)
    }

    /// A file of the TLS set-up: `ca.crt`, `other-ca.crt`, `server.crt`.
    pub fn tls_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("tls").join(name)
    }

    fn launch(tls: bool) -> PgCluster {
        let bin = server_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        // The server's user must reach its directory and own its data.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let data_arg = data.to_str().expect("a UTF-8 path");
        let init = run(
            &bin.join("initdb"),
            &[
                "-D",
                data_arg,
                "-U",
                "warden",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            dir.path().display()
        );
        if tls {
            let certs = dir.path().join("tls");
            make_certificates(&certs);
            options += &format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certs.join("server.crt").display(),
                certs.join("server.key").display()
            );
        }
        let log = data.join("server.log");
        let log_arg = log.to_str().expect("a UTF-8 path");
        let started = run(
            &bin.join("pg_ctl"),
            &["-D", data_arg, "-l", log_arg, "-o", &options, "-w", "start"],
        );
        assert!(
            started.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        PgCluster { dir, bin, port }
    }

    /// A connection URL for database `db` as `warden`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://warden@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with `psql` in database `postgres`; its output, unaligned.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in("postgres", sql)
    }

    /// Runs SQL with `psql` in database `db`; its output, unaligned.
    pub fn psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(db),
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        if let Some(data) = data.to_str() {
            run(&self.bin.join("pg_ctl"), &["-D", data, "-m", "immediate", "stop"]);
        }
    }
}

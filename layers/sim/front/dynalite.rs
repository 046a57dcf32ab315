//! Starting dynalite, the in-memory DynamoDB-compatible store the front forwards admitted
//! DynamoDB calls to.
//!
//! dynalite is a Node.js program from npm; `scripts/dynalite` installs it into
//! `target/node/` (or `$DYNALITE_DIR`). [`Dynalite::start`] runs it on a free loopback port
//! and waits until it answers; dropping the handle kills it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to tell a user whose machine has no dynalite yet.
pub const INSTALL_HINT: &str = "dynalite is not installed: run scripts/dynalite (it installs dynalite from npm into target/node, or into $DYNALITE_DIR)";

/// The environment variable naming the directory dynalite is installed in (as
/// `scripts/dynalite` uses it).
pub const DIR_ENV: &str = "DYNALITE_DIR";

/// How long dynalite may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with a fresh port, should another process take the chosen one first.
const PORT_ATTEMPTS: usize = 3;

/// The dynalite entry script (`node_modules/dynalite/cli.js`) inside an install directory.
fn script_in(dir: &Path) -> PathBuf {
    dir.join("node_modules").join("dynalite").join("cli.js")
}

/// A running dynalite process on loopback, killed when dropped.
#[derive(Debug)]
pub struct Dynalite {
    child: Child,
    addr: SocketAddr,
}

impl Dynalite {
    /// Finds dynalite's entry script: in `$DYNALITE_DIR` if set, else in `<root>/target/node`
    /// (where `scripts/dynalite` installs it). The error says to run `scripts/dynalite`.
    pub fn locate(root: &Path) -> io::Result<PathBuf> {
        let dir = match std::env::var_os(DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => root.join("target").join("node"),
        };
        let script = script_in(&dir);
        if script.is_file() {
            Ok(script)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{INSTALL_HINT} (looked for {})", script.display()),
            ))
        }
    }

    /// Starts `node <script> --port <free port> --host 127.0.0.1` (in memory, tables active at
    /// once) and waits until the port answers.
    pub fn start(script: &Path) -> io::Result<Dynalite> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(script) {
                Ok(dynalite) => return Ok(dynalite),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("dynalite did not start")))
    }

    fn try_start(script: &Path) -> io::Result<Dynalite> {
        // dynalite takes `--port 0` as "the default port", so pick a free one here; another
        // process may take it in between, hence the attempts in `start`.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let child = Command::new("node")
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("could not run `node` for dynalite ({error}); install Node.js (apt-get install -y nodejs npm)"),
                )
            })?;
        let mut dynalite = Dynalite { child, addr };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(dynalite);
            }
            if let Some(status) = dynalite.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "dynalite exited before answering on {addr} ({status})"
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("dynalite did not answer on {addr} within {READY_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The address dynalite listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

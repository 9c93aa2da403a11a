//! The local AWS emulator, for `cargo xtask demo` and the tests: a `moto[server]` on a free
//! loopback port, started per process and stopped when dropped, and the workspace paths it
//! lives at. Its own crate (std and serde_json only) so that the CLI does not depend on the
//! test crate; the Python side is next to this file.
//!
//! [`Moto::start`] runs plain moto; [`Moto::start_extended`] runs the project's emulator
//! (`tests/emulator/server.py`): moto plus instance refreshes with a time model, Lambda
//! invocations that run the uploaded `bootstrap`, and Step Functions executions.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the emulator may take to answer its first request.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How many ports [`Moto::spawn_on_free_port`] tries.
const PORT_ATTEMPTS: usize = 5;

/// The workspace root: the parent of the running package's directory (each package is one
/// level down). Cargo sets
/// `CARGO_MANIFEST_DIR` when it runs a binary or a test, so that value wins over the one
/// compiled in: with a target directory shared between clones, cargo reuses a binary built
/// in another clone (same sources, older mtimes), whose compiled-in path points there.
pub fn workspace_root() -> PathBuf {
    let is_root = |dir: &Path| dir.join("Cargo.toml").is_file() && dir.join("envs").is_dir();
    std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|dir| Path::new(&dir).parent().map(Path::to_path_buf))
        .filter(|dir| is_root(dir))
        .unwrap_or_else(|| {
            // This crate lives at tests/emulator.
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .nth(2)
                .expect("tests/emulator lives in the workspace")
                .to_path_buf()
        })
}

/// The `moto_server` installed by `cargo xtask test` into `.venv`.
pub fn moto_server_path() -> PathBuf {
    std::env::var_os("ASG_REFRESH_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/moto_server"))
}

/// The Python interpreter of `.venv` (the one that has the pinned moto).
pub fn venv_python_path() -> PathBuf {
    std::env::var_os("ASG_REFRESH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

/// Plain `cargo test` in a fresh clone has no `.venv` yet: a test that needs the emulator then
/// ends its whole test binary successfully with one line on stderr naming `cargo xtask test`
/// (which installs the emulator and runs every test), instead of failing. `cargo xtask test`
/// sets `ASG_REFRESH_REQUIRE_EMULATOR`, under which a missing emulator is a failure.
fn skip_without_emulator(path: &Path) {
    if path.exists() || std::env::var_os("ASG_REFRESH_REQUIRE_EMULATOR").is_some() {
        return;
    }
    let binary = std::env::args()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // Cargo names test binaries `<name>-<hash>`.
    let binary = binary
        .rsplit_once('-')
        .map_or(binary.as_str(), |(name, _)| name);
    // Straight to the file descriptor: the test harness captures `eprintln!`.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {binary}: its tests need the local AWS emulator ({} is missing); `cargo xtask test` installs it and runs them",
        path.display()
    );
    std::process::exit(0);
}

/// The extended emulator's launcher.
pub fn emulator_server_path() -> PathBuf {
    workspace_root().join("tests/emulator/server.py")
}

/// The extended emulator: [`Moto::start_extended`].
pub type Emulator = Moto;

/// A running moto server on 127.0.0.1.
pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// The extended emulator's scratch directory (unpacked Lambda code, Lambda logs).
    work_dir: Option<PathBuf>,
}

impl Moto {
    /// Starts moto on a free loopback port and waits (bounded) until it answers.
    pub fn start() -> Self {
        let server = moto_server_path();
        skip_without_emulator(&server);
        assert!(
            server.exists(),
            "{} is missing: run `cargo xtask test`, which installs the pinned emulator into .venv",
            server.display()
        );
        Self::spawn_on_free_port(&server, |port| {
            let mut command = Command::new(&server);
            command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            command
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the project's extended emulator (`tests/emulator/server.py` under the
    /// `.venv` Python) on a free loopback port and waits (bounded) until it answers.
    pub fn start_extended() -> Self {
        skip_without_emulator(&venv_python_path());
        Self::try_start_extended().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Moto::start_extended`], failing with a message instead of panicking.
    pub fn try_start_extended() -> Result<Self, String> {
        let python = venv_python_path();
        if !python.exists() {
            return Err(format!(
                "{} is missing: run `cargo xtask test`, which installs the pinned emulator into .venv",
                python.display()
            ));
        }
        let script = emulator_server_path();
        let work_dir =
            |port: u16| std::env::temp_dir().join(format!("asg-refresh-emulator-{port}"));
        let mut moto = Self::spawn_on_free_port(&script, |port| {
            let mut command = Command::new(&python);
            command
                .arg(&script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .env("ASG_REFRESH_EMULATOR_WORK_DIR", work_dir(port));
            command
        })?;
        moto.work_dir = Some(work_dir(moto.port));
        Ok(moto)
    }

    /// The extended emulator's Lambda output (every bootstrap's stdout and stderr), for
    /// failure messages.
    pub fn lambda_logs(&self) -> String {
        let Some(dir) = &self.work_dir else {
            return String::new();
        };
        let mut out = String::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                out.push_str(&format!(
                    "== {}\n{}\n",
                    path.display(),
                    std::fs::read_to_string(&path).unwrap_or_default()
                ));
            }
        }
        out
    }

    /// Starts `command_for(port)` on a [`free_port`] and waits until it answers. A port can
    /// still be taken between the pick and the emulator's bind (CI once lost a test to
    /// "Address already in use"), so that failure picks another port, a bounded number of
    /// times; every other failure is returned as it is.
    fn spawn_on_free_port(
        what: &Path,
        command_for: impl Fn(u16) -> Command,
    ) -> Result<Self, String> {
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match Self::try_spawn(command_for(port), port, what) {
                Err(e) if e.contains("Address already in use") => taken.push(port),
                other => return other,
            }
        }
        Err(format!(
            "{} could not bind any of the {PORT_ATTEMPTS} free ports it was given ({taken:?}): \
             each was taken before it started",
            what.display()
        ))
    }

    fn try_spawn(mut command: Command, port: u16, what: &Path) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        let log = std::env::temp_dir().join(format!("asg-refresh-moto-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = command
            .env("MOTO_ALLOW_NONEXISTENT_REGION", "true")
            .env("PYTHONUNBUFFERED", "1")
            // Its own process group, so that dropping it also stops the Lambda
            // processes the extended emulator starts.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .map_err(|e| format!("log handle: {e}"))?,
            )
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", what.display()))?;
        let mut moto = Self {
            child,
            port,
            log,
            work_dir: None,
        };
        moto.wait_ready()?;
        Ok(moto)
    }

    /// The extended emulator's log of instance refresh starts and ends:
    /// `{"now": t, "events": [{"event": "start"|"end"|"cancel"|"rollback", "asg", "refresh_id", "t", ...}]}`,
    /// `t` in the server's monotonic seconds.
    pub fn refresh_log(&self) -> serde_json::Value {
        self.get_json("/emulator/refresh-log")
    }

    /// Empties the refresh log.
    pub fn clear_refresh_log(&self) {
        self.send("DELETE", "/emulator/refresh-log", "");
    }

    /// The calls the extended emulator refused for lack of IAM permission:
    /// `{"denials": [{"caller", "operation", "action", "resource", "message"}]}`.
    pub fn iam_denials(&self) -> serde_json::Value {
        self.get_json("/emulator/iam-denials")
    }

    /// Sets the extended emulator's fault rules (see tests/emulator/faults.py), e.g.
    /// `{"rules": [{"service": "dynamodb", "operations": ["Query"], "rate": 0.3}], "seed": 1}`.
    pub fn set_faults(&self, rules: &serde_json::Value) {
        self.send("POST", "/emulator/faults", &rules.to_string());
    }

    /// The fault rules and how many requests each operation saw and had failed:
    /// `{"rules": [...], "seen": {"dynamodb:Query": n}, "injected": {"dynamodb:Query": n}}`.
    pub fn faults(&self) -> serde_json::Value {
        self.get_json("/emulator/faults")
    }

    /// Sets how the extended emulator delivers instance-refresh events to EventBridge rules'
    /// Lambda targets (tests/emulator/refresh_events.py), e.g.
    /// `{"delay_ms": 200, "jitter_ms": 100, "loss": 0.2, "duplicate": 0.0, "seed": 7}`; omitted
    /// keys take their defaults (no delay, no loss, no duplicates, seed 0).
    pub fn set_events(&self, settings: &serde_json::Value) {
        self.send("POST", "/emulator/events", &settings.to_string());
    }

    /// The events' settings, counters and log: `{"settings", "emitted", "by_detail_type",
    /// "by_rule": {rule: {"matched", "dropped", "duplicated", "delivered", "denied",
    /// "no_function", "invocations", "errors"}}, "pending", "log": [{"id", "detail-type", "asg",
    /// "refresh_id", "t", "wall", "deliveries": [{"rule", "target", "outcome", "due", "invoked",
    /// "done", "attempts", "errored"}]}], "now"}` (times in the server's monotonic seconds).
    pub fn events(&self) -> serde_json::Value {
        self.get_json("/emulator/events")
    }

    /// Empties the events' counters and log (the settings stay).
    pub fn clear_events(&self) {
        self.send("DELETE", "/emulator/events", "");
    }

    /// What the emulator has served since the start or the last [`Moto::clear_stats`]:
    /// `{"calls": {"service:Operation": n}, "by_caller": {"<role>/<function>" | "deployer":
    /// {"service:Operation": n}}, "by_asg": {"DescribeInstanceRefreshes": {asg: n}, ...},
    /// "lambda_invocations": {function: n}, "lambda_seconds": {function: s}, "events": {the
    /// counters of [`Moto::events`] without the log}, "executions": {"<root execution arn>":
    /// {"events", "transitions", "children": [{"index", "events", "transitions"}]}}}`.
    /// `transitions` counts `*StateEntered` history events; a Distributed Map child's counts
    /// are its own history's.
    pub fn stats(&self) -> serde_json::Value {
        self.get_json("/emulator/stats")
    }

    /// Zeroes every counter of [`Moto::stats`] (and the events' log).
    pub fn clear_stats(&self) {
        self.send("DELETE", "/emulator/stats", "");
    }

    /// GETs one of the extended emulator's own routes and parses its JSON answer.
    fn get_json(&self, path: &str) -> serde_json::Value {
        let body = self
            .request("GET", path, "")
            .unwrap_or_else(|e| panic!("GET {path}: {e:?}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
    }

    /// Sends `body` to one of the extended emulator's own routes; its answer must be a success.
    fn send(&self, method: &str, path: &str, body: &str) {
        self.request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the emulator exited early ({status}); its log:\n{}",
                    self.read_log()
                ));
            }
            if self.request("GET", "/moto-api/", "").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the emulator did not answer within {START_DEADLINE:?}; its log:\n{}",
            self.read_log()
        ))
    }

    /// Clears every emulated resource.
    pub fn reset(&self) {
        self.request("POST", "/moto-api/reset", "")
            .expect("moto reset");
    }

    /// Sends one plain HTTP/1.1 request to the emulator and returns the body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> std::io::Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        if !head.starts_with("HTTP/1.1 2") && !head.starts_with("HTTP/1.0 2") {
            return Err(std::io::Error::other(format!("{method} {path}: {head}")));
        }
        Ok(body.to_string())
    }

    pub fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The whole process group: the server and any Lambda bootstrap it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        if let Some(dir) = &self.work_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A port nothing listens on right now, picked at random below the range the kernel draws
/// outgoing connections' local ports from (`ip_local_port_range`). A port from the kernel's
/// own pick (`bind :0`) lies inside that range, where any client socket opened before the
/// emulator binds it can take it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low = outgoing_ports_from();
    if low > OWN_PORTS_FROM + 1_000 {
        let span = u64::from(low - OWN_PORTS_FROM);
        for attempt in 0..64_u64 {
            let mut random = std::collections::hash_map::RandomState::new().build_hasher();
            random.write_u64(attempt);
            let port = OWN_PORTS_FROM + (random.finish() % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The lowest port [`free_port`] picks: above the registered ports most services use.
const OWN_PORTS_FROM: u16 = 10_000;

/// The lowest of the kernel's local ports for outgoing connections, Linux's default when it
/// cannot be read.
fn outgoing_ports_from() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn free_port_is_below_the_outgoing_range_and_bindable() {
        let low = outgoing_ports_from();
        let port = free_port();
        // A machine whose outgoing range starts low leaves no room below it: the kernel picks.
        if low > OWN_PORTS_FROM + 1_000 {
            assert!(
                (OWN_PORTS_FROM..low).contains(&port),
                "{port} not in {OWN_PORTS_FROM}..{low}"
            );
        }
        TcpListener::bind(("127.0.0.1", port)).expect("the port it gave is free");
    }

    #[test]
    fn a_port_taken_before_the_bind_is_retried_on_another_then_given_up() {
        let ports = RefCell::new(Vec::new());
        let error = Moto::spawn_on_free_port(Path::new("sh"), |port| {
            ports.borrow_mut().push(port);
            shell("echo 'OSError: [Errno 98] Address already in use'; exit 1")
        })
        .err()
        .expect("every port was taken");
        let ports = ports.into_inner();
        assert_eq!(ports.len(), PORT_ATTEMPTS);
        assert!(error.contains(&format!("{ports:?}")), "{error}");
        assert!(
            error.contains("each was taken before it started"),
            "{error}"
        );
    }

    #[test]
    fn any_other_early_exit_is_returned_at_once() {
        let calls = Cell::new(0);
        let error = Moto::spawn_on_free_port(Path::new("sh"), |_| {
            calls.set(calls.get() + 1);
            match calls.get() {
                1 => shell("echo 'Address already in use'; exit 1"),
                _ => shell("echo 'ModuleNotFoundError: moto'; exit 1"),
            }
        })
        .err()
        .expect("the emulator cannot start");
        assert_eq!(
            calls.get(),
            2,
            "one retry for the taken port, none for the rest"
        );
        assert!(error.contains("ModuleNotFoundError: moto"), "{error}");
    }
}

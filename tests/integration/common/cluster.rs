//! A Ballista cluster of real processes on 127.0.0.1: one `tidemark scheduler` and N
//! `tidemark executor`s, started the way the README tells a user to, with the loopback S3
//! server's credentials in their environment (`AWS_*`). Killing an executor kills its process.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::{S3Server, ACCESS_KEY, SECRET_KEY};

pub(crate) struct ProcessCluster {
    pub port: u16,
    scheduler: Child,
    executors: Vec<Option<Child>>,
    _work: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

fn with_store_environment(command: &mut Command, server: Option<&S3Server>) {
    command.env_remove("RUST_LOG");
    if let Some(server) = server {
        command
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &server.endpoint)
            .env("AWS_ALLOW_HTTP", "true");
    }
}

impl ProcessCluster {
    /// Starts a scheduler and `executors` executors with `slots` task slots each, and waits
    /// until every executor has registered.
    pub(crate) fn start(executors: usize, slots: usize, server: Option<&S3Server>) -> ProcessCluster {
        let binary = env!("CARGO_BIN_EXE_tidemark");
        let work = tempfile::Builder::new()
            .prefix("tidemark-cluster-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let folder = work.path().to_path_buf();
        let log = |name: &str| std::fs::File::create(folder.join(name)).expect("log file");
        let mut scheduler = Command::new(binary);
        scheduler
            .args(["scheduler", "--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
            .args(["--bind-port", &port.to_string()])
            // A killed executor is noticed within seconds, not the default 3 minutes.
            .args([
                "--executor-timeout-seconds",
                "10",
                "--expire-dead-executor-interval-seconds",
                "2",
            ])
            .stdout(log("scheduler.log"))
            .stderr(Stdio::inherit());
        with_store_environment(&mut scheduler, server);
        let scheduler = scheduler.spawn().expect("start tidemark scheduler");
        let mut cluster = ProcessCluster {
            port,
            scheduler,
            executors: Vec::new(),
            _work: work,
        };
        for index in 0..executors {
            let work_dir = folder.join(format!("executor-{index}"));
            let mut executor = Command::new(binary);
            executor
                .args([
                    "executor",
                    "--scheduler-host",
                    "127.0.0.1",
                    "--scheduler-port",
                    &port.to_string(),
                ])
                .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
                .args([
                    "--bind-port",
                    &free_port().to_string(),
                    "--bind-grpc-port",
                    &free_port().to_string(),
                ])
                .args(["--concurrent-tasks", &slots.to_string()])
                .arg("--work-dir")
                .arg(&work_dir)
                .stdout(log(&format!("executor-{index}.log")))
                .stderr(Stdio::inherit());
            with_store_environment(&mut executor, server);
            cluster
                .executors
                .push(Some(executor.spawn().expect("start tidemark executor")));
        }
        cluster.wait_for_executors(executors);
        cluster
    }

    /// The URL a `type: ballista` target gives as `url:`.
    pub(crate) fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.port)
    }

    fn wait_for_executors(&mut self, expected: usize) {
        let runtime = super::s3::runtime();
        let url = format!("http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.scheduler.try_wait() {
                panic!("tidemark scheduler exited with {status}");
            }
            match runtime.block_on(tidemark::execute::cluster::executor_count(&url)) {
                Ok(count) if count >= expected => return,
                Ok(count) => last = format!("{count} of {expected} executors registered"),
                Err(error) => last = error.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not come up within 60 s: {last}");
    }

    /// Kills executor `index`'s process (SIGKILL): its tasks die mid-flight and its Flight
    /// server stops serving shuffle data.
    pub(crate) fn kill_executor(&mut self, index: usize) {
        if let Some(mut child) = self.executors.get_mut(index).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for index in 0..self.executors.len() {
            self.kill_executor(index);
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

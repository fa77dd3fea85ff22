//! Test harness: a real `wkube up` in a temp dir on a free loopback port, driven by the real
//! `kubectl` and by the `kube` Rust client.
#![allow(dead_code)]

pub mod cgroups;
pub mod oci;
pub mod registry;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `wkube up`; killed when dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub url: String,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl Cluster {
    /// An API-only cluster: no node agent, so no pod runs and no image is ever pulled.
    pub fn start() -> Cluster {
        Self::start_with(&["--no-agent"])
    }

    /// Starts with extra `wkube up` flags.
    pub fn start_with(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        Self::start_on(dir, data_dir, extra)
    }

    /// Starts on a given data dir (e.g. one restored from a snapshot).
    pub fn start_on(dir: tempfile::TempDir, data_dir: PathBuf, extra: &[&str]) -> Cluster {
        let extra_args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, url) = spawn(&data_dir, &extra_args);
        Cluster {
            dir,
            data_dir,
            url,
            child: Some(child),
            extra_args,
        }
    }

    /// Runs `wkube` with arguments (e.g. `snapshot save`), returning its output.
    pub fn wkube(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_wkube"))
            .args(args)
            .env("HOME", self.dir.path())
            .output()
            .expect("run wkube")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// Kills the server with SIGKILL (no clean shutdown), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let status = c.wait().expect("wait for wkube");
            assert!(status.success(), "wkube exited with {status}");
        }
    }

    /// Starts the server again on the same data dir.
    pub fn restart(&mut self) {
        self.kill();
        let (child, url) = spawn(&self.data_dir, &self.extra_args);
        self.child = Some(child);
        self.url = url;
    }

    /// Runs the default kubectl (1.32) against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&kubectl_path(), args, None)
    }

    /// Runs kubectl with input on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.kubectl_with(&kubectl_path(), args, Some(stdin))
    }

    pub fn kubectl_with(&self, kubectl: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(kubectl);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .env_remove("KUBE_EDITOR")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); install kubectl (the README's test command does)",
                kubectl.display()
            )
        });
        if let Some(input) = stdin {
            use std::io::Write as _;
            let mut s = child.stdin.take().expect("stdin");
            s.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_ok(args, &out)
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert_ok(args, &out)
    }

    /// A `kube` client authenticated as the admin (bearer token from the kubeconfig).
    pub async fn client(&self) -> kube::Client {
        self.client_for_context("wkube").await
    }

    pub async fn client_for_context(&self, context: &str) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let opts = kube::config::KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("client")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn assert_ok(args: &[&str], out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// The kubectl the tests use by default (1.32 on the build machines).
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("WKUBE_TEST_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// Another kubectl minor version, as installed beside the default one.
pub fn kubectl_version(minor: u32) -> PathBuf {
    let p = PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"));
    assert!(
        p.exists(),
        "kubectl 1.{minor} is missing at {}: the tests need the kubectl versions of the google-cloud-cli kubectl package",
        p.display()
    );
    p
}

fn spawn(data_dir: &Path, extra: &[String]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env(
            "WKUBE_LOG",
            std::env::var("WKUBE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wkube up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut url = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(u) = line.strip_prefix("wkube: API server listening on ") {
                url = Some(u.trim().to_string());
            }
            if line.starts_with("wkube: ready") {
                let _ = tx.send(url.clone());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(url)) => (child, url),
        other => {
            let _ = child.kill();
            panic!("wkube up did not become ready: {other:?}");
        }
    }
}

/// Polls until `f` returns Some, or panics after `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs one of the project's wasm build scripts (incremental) and returns the directory it
/// printed, where the built modules are.
fn built_by(script: &str, what: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed (it needs `rustup target add wasm32-wasip1 wasm32-wasip2` and clang + wasi-libc; the README's test command installs them) while building {what}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds the example workloads (examples/build.sh) and returns their directory.
pub fn wasm_examples() -> PathBuf {
    built_by(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/build.sh"),
        "the example workloads",
    )
}

/// Builds the example admission policies (plugins/build.sh) and returns their directory.
pub fn wasm_plugins() -> PathBuf {
    built_by(
        concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/build.sh"),
        "the example policies",
    )
}

impl Cluster {
    /// Imports the example workloads into the cluster's own node as
    /// `wkube.local/hello-rust:v1`, `wkube.local/hello-component:v1` and `wkube.local/hello-c:v1`.
    pub fn import_examples(&self) {
        let dir = wasm_examples();
        let data = self.data_dir.to_string_lossy().to_string();
        for (file, name) in [
            ("hello-rust.wasm", "wkube.local/hello-rust:v1"),
            ("hello-component.wasm", "wkube.local/hello-component:v1"),
            ("hello-c.wasm", "wkube.local/hello-c:v1"),
        ] {
            let path = dir.join(file).to_string_lossy().to_string();
            let out = self.wkube(&[
                "image",
                "import",
                &path,
                "--name",
                name,
                "--data-dir",
                &data,
            ]);
            assert!(
                out.status.success(),
                "import {file}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A `wkube agent` process joined to a cluster; killed when dropped.
pub struct Agent {
    child: Child,
    pub name: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Cluster {
    /// Starts `wkube agent` for a new node with extra flags (e.g. `--memory 2Gi`).
    pub fn join_agent(&self, name: &str, extra: &[&str]) -> Agent {
        let pki = self.data_dir.join("pki");
        let token = std::fs::read_to_string(pki.join("node.token")).expect("node token");
        let child = Command::new(env!("CARGO_BIN_EXE_wkube"))
            .args([
                "agent",
                "--server",
                &self.url,
                "--token",
                token.trim(),
                "--ca-cert",
            ])
            .arg(pki.join("ca.crt"))
            .args(["--node-name", name, "--agent-data-dir"])
            .arg(self.dir.path().join(format!("agent-{name}")))
            .args(extra)
            .env(
                "WKUBE_LOG",
                std::env::var("WKUBE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wkube agent");
        Agent {
            child,
            name: name.to_string(),
        }
    }
}

impl Cluster {
    /// Imports the example workloads (as [`Cluster::import_examples`] names them) into the store
    /// of the agent `join_agent(name, ..)` starts; call it before joining the agent.
    pub fn import_examples_for_agent(&self, name: &str) {
        let dir = wasm_examples();
        let agent_dir = self.dir.path().join(format!("agent-{name}"));
        let agent_dir = agent_dir.to_string_lossy().to_string();
        for (file, image) in [
            ("hello-rust.wasm", "wkube.local/hello-rust:v1"),
            ("hello-component.wasm", "wkube.local/hello-component:v1"),
            ("hello-c.wasm", "wkube.local/hello-c:v1"),
        ] {
            let path = dir.join(file).to_string_lossy().to_string();
            let out = self.wkube(&[
                "image",
                "import",
                &path,
                "--name",
                image,
                "--agent-data-dir",
                &agent_dir,
            ]);
            assert!(
                out.status.success(),
                "import {file} for {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

//! The real `asyncapi-guard serve` on ephemeral ports, a test PKI, and an HTTPS client that
//! verifies the server certificate, as the API server does.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A CA and what it signs.
pub struct Ca {
    pub pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM and DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn server(&self, common_name: &str) -> Leaf {
        self.leaf(
            common_name,
            vec!["localhost".into(), "127.0.0.1".into()],
            false,
        )
    }

    pub fn client(&self, common_name: &str) -> Leaf {
        self.leaf(common_name, vec![], true)
    }

    fn leaf(&self, common_name: &str, names: Vec<String>, client: bool) -> Leaf {
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if client {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// A directory laid out as Kubernetes mounts a Secret: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<version>`, updated by swapping the `..data` symlink.
pub struct SecretVolume {
    pub dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    pub fn new(dir: &Path, files: &[(&str, &str)]) -> SecretVolume {
        std::fs::create_dir_all(dir).unwrap();
        let mut volume = SecretVolume {
            dir: dir.to_owned(),
            version: 0,
        };
        volume.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        volume
    }

    /// Writes a new version beside the old one, then swaps `..data` atomically (rename).
    pub fn update(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let version = format!("..2026_11_22_{:04}", self.version);
        std::fs::create_dir(self.dir.join(&version)).unwrap();
        for (name, content) in files {
            std::fs::write(self.dir.join(&version).join(name), content).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The running server.
pub struct Server {
    pub child: Child,
    pub admission: SocketAddr,
    pub metrics: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary with `args` (plus ephemeral ports) and waits until it listens.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// As [`Server::start`], with environment variables (`KUBECONFIG`).
    pub fn start_with_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Server {
        let mut command = Command::new(super::binary());
        command.envs(env.iter().copied());
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]);
        for (flag, default) in [("--shutdown-delay", "0s"), ("--reload-interval", "1s")] {
            if !args.contains(&flag) {
                command.args([flag, default]);
            }
        }
        let mut child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listening = logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("\"listening\""))
                .cloned();
            if let Some(line) = listening {
                let json: serde_json::Value = serde_json::from_str(&line).unwrap();
                let admission = json["admission"].as_str().unwrap().parse().unwrap();
                let metrics = json["metrics"].as_str().unwrap().parse().unwrap();
                return Server {
                    child,
                    admission,
                    metrics,
                    logs,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("server exited with {status}: {:?}", logs.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {:?}",
                logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line contains `text`.
    pub fn wait_for_log(&self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.logs().iter().any(|l| l.contains(text)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn terminate(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    pub async fn metrics_text(&self) -> String {
        let (status, body) = plain_get(self.metrics, "/metrics").await;
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the test client talks TLS.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    /// Trusts `roots`; presents `identity` when given.
    pub fn new(roots: &[&CertificateDer<'static>], identity: Option<&Leaf>) -> Client {
        Client::with_versions(
            roots,
            identity,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    pub fn with_versions(
        roots: &[&CertificateDer<'static>],
        identity: Option<&Leaf>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Client {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add((*root).clone()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store);
        let config = match identity {
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![leaf.der.clone()],
                    PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Client {
            config: Arc::new(config),
        }
    }

    /// Opens a verified TLS connection to `localhost` at `addr`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// One request on a new connection: status, body, and the certificate the server showed.
    pub async fn post(
        &self,
        addr: SocketAddr,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>, CertificateDer<'static>), String> {
        let tls = self
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned())
            .ok_or("no peer certificate")?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let request = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, bytes.to_vec(), peer))
    }

    pub async fn review(&self, addr: SocketAddr, query: &str, body: Vec<u8>) -> serde_json::Value {
        let (status, bytes, _) = self
            .post(addr, &format!("/validate{query}"), "application/json", body)
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// GET over plain HTTP (the metrics port).
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

/// A CA, a server certificate from it in a Secret-volume layout, and a client trusting it.
pub struct Pki {
    pub ca: Ca,
    pub volume: SecretVolume,
    pub client: Client,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let leaf = ca.server("localhost");
        let volume = SecretVolume::new(
            &dir.path().join("tls"),
            &[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)],
        );
        let client = Client::new(&[&ca.der], None);
        Pki {
            ca,
            volume,
            client,
            dir,
        }
    }

    /// The server with this PKI's certificate and `extra` flags.
    pub fn start_server(&self, extra: &[&str]) -> Server {
        self.start_server_with_env(extra, &[])
    }

    /// The server with this PKI's certificate, `extra` flags and environment variables.
    pub fn start_server_with_env(
        &self,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Server {
        let mut args = self.tls_args();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Server::start_with_env(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
    }

    /// Waits until `/readyz` answers 200, or fails the test after `within`.
    pub async fn wait_until_ready(server: &Server, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = plain_get(server.metrics, "/readyz").await;
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready after {within:?}: {} {:?}",
                String::from_utf8_lossy(&body),
                server.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn tls_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.volume.path("tls.crt").display().to_string(),
            "--tls-key".into(),
            self.volume.path("tls.key").display().to_string(),
        ]
    }
}

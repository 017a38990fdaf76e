//! The static file server component (sites/fileserver, spin.toml's `ember-demo` and `ember-docs`)
//! under upstream `wasmtime serve`, one preopen per mount as `spin up --direct-mounts` gives it,
//! and the same mounts served by Ember's host natively from a manifest naming the component (by
//! the component's own rules): files, directory indexes, content types, `HEAD`, `304`, and nothing
//! outside its directories; `spin-path-info` on the component.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{agent_config, repo_root, scratch_dir, Server};

/// The component, as the host's build script builds it.
fn component() -> PathBuf {
    repo_root().join("target/wasm/wasm32-wasip2/release/ember_fileserver.wasm")
}

/// Which host serves the mounts.
#[derive(Debug, Clone, Copy)]
enum Host {
    /// The component under `wasmtime serve`, at `/`.
    Component,
    /// Ember, from a manifest routing `/site/...` to the component.
    Ember,
}

/// Both hosts, for the tests whose answers must not depend on which one serves.
const HOSTS: [Host; 2] = [Host::Component, Host::Ember];

/// A server of the file server's mounts, killed when dropped.
struct FileServer {
    server: Server,
    /// The route the mounts are served under.
    prefix: &'static str,
}

impl FileServer {
    /// Starts `host` on a free loopback port with each `(host directory, guest path)` mounted.
    fn start(host: Host, mounts: &[(&Path, &str)]) -> FileServer {
        match host {
            Host::Component => FileServer {
                server: Server::wasmtime_serve_with(&component(), mounts),
                prefix: "",
            },
            Host::Ember => {
                let manifest = scratch_dir("fileserver-manifest").join("spin.toml");
                std::fs::write(&manifest, site_manifest(mounts)).unwrap();
                FileServer {
                    server: Server::start(&["--manifest", manifest.to_str().unwrap()]),
                    prefix: "/site",
                }
            }
        }
    }

    /// `method path` with extra headers.
    fn fetch(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Fetched {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}{path}", self.server.base, self.prefix));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let agent: ureq::Agent = agent_config().build().into();
        let mut response = agent
            .run(request.body(()).unwrap())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.server.logs()));
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .unwrap();
        Fetched {
            status: response.status().as_u16(),
            headers,
            body,
        }
    }

    /// `GET path`.
    fn get(&self, path: &str) -> Fetched {
        self.fetch("GET", path, &[])
    }
}

/// A manifest with the function at `/...` and the file server at `/site/...` with `mounts`.
fn site_manifest(mounts: &[(&Path, &str)]) -> String {
    let root = repo_root();
    let files: Vec<String> = mounts
        .iter()
        .map(|(dir, guest)| {
            format!(
                "{{ source = {:?}, destination = {guest:?} }}",
                dir.display().to_string()
            )
        })
        .collect();
    format!(
        r#"spin_manifest_version = 2

[application]
name = "sites"

[[trigger.http]]
route = "/..."
component = "ember-function"

[component.ember-function]
source = {function:?}
files = [{{ source = {models:?}, destination = "/models" }}]

[component.ember-function.tool.ember]
wasi_nn_source = {function:?}

[[trigger.http]]
route = "/site/..."
component = "site"

[component.site]
source = {component:?}
files = [{files}]
"#,
        function = root
            .join("target/wasm/wasm32-wasip2/release/ember_function.wasm")
            .display()
            .to_string(),
        models = root.join("models").display().to_string(),
        component = component().display().to_string(),
        files = files.join(", "),
    )
}

/// A reply: status, lowercase header names → values, and the raw body.
struct Fetched {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Fetched {
    /// Asserts a `200` with exactly `file`'s bytes, its length and `content_type`.
    fn assert_file(&self, file: &Path, content_type: &str) {
        let expected = std::fs::read(file).unwrap();
        assert_eq!(self.status, 200, "{}: {}", file.display(), self.text());
        assert_eq!(
            self.headers["content-type"],
            content_type,
            "{}",
            file.display()
        );
        assert_eq!(self.headers["content-length"], expected.len().to_string());
        assert_eq!(self.headers["cache-control"], "no-cache");
        assert!(
            self.body == expected,
            "{}: the bytes differ",
            file.display()
        );
    }

    /// Asserts the JSON error envelope with `status` and `code`, naming nothing on the host.
    fn assert_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.text());
        assert_eq!(self.headers["content-type"], "application/json", "{what}");
        let error: Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(error["error"]["code"], code, "{what}: {error}");
        assert!(error["error"]["message"].is_string(), "{what}: {error}");
        assert!(
            !self.text().contains(&*repo_root().to_string_lossy()),
            "{what}"
        );
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `browser/demo` at `/`, the models at `/models`, and a scratch `/pkg` holding a `.wasm` (the
/// component itself), a directory with an index, and a symlink out of the tree.
fn serve_demo(host: Host) -> (FileServer, PathBuf) {
    eprintln!("serving on {host:?}");
    let pkg = scratch_dir("fileserver-pkg");
    std::fs::copy(component(), pkg.join("app.wasm")).unwrap();
    std::fs::create_dir(pkg.join("guide")).unwrap();
    std::fs::write(pkg.join("guide/index.html"), "<h1>guide</h1>").unwrap();
    std::os::unix::fs::symlink(repo_root().join("Cargo.toml"), pkg.join("leak.toml")).unwrap();
    let root = repo_root();
    let server = FileServer::start(
        host,
        &[
            (&root.join("browser/demo"), "/"),
            (&root.join("models"), "/models"),
            (&pkg, "/pkg"),
        ],
    );
    (server, pkg)
}

#[test]
fn files_come_with_their_type_length_and_bytes_from_the_mount_they_fall_under() {
    for host in HOSTS {
        let (server, pkg) = serve_demo(host);
        let root = repo_root();
        let demo = root.join("browser/demo");
        let html = "text/html; charset=utf-8";
        server.get("/").assert_file(&demo.join("index.html"), html);
        server
            .get("/index.html?v=2")
            .assert_file(&demo.join("index.html"), html);
        server
            .get("/demo.js")
            .assert_file(&demo.join("demo.js"), "text/javascript; charset=utf-8");
        server
            .get("/demo.css")
            .assert_file(&demo.join("demo.css"), "text/css; charset=utf-8");
        server
            .get("/models/digits/1/model.json")
            .assert_file(&root.join("models/digits/1/model.json"), "application/json");
        // A 20 MB model, streamed.
        let model = root.join("models/efficientnet-lite0/1/model.onnx");
        server
            .get("/models/efficientnet-lite0/1/model.onnx")
            .assert_file(&model, "application/octet-stream");
        server
            .get("/pkg/app.wasm")
            .assert_file(&pkg.join("app.wasm"), "application/wasm");
        // A directory serves its index.html, with or without the trailing slash.
        for path in ["/pkg/guide", "/pkg/guide/", "/pkg/./guide//"] {
            server
                .get(path)
                .assert_file(&pkg.join("guide/index.html"), html);
        }
        // Percent-encoded names are decoded.
        server
            .get("/%64emo.js")
            .assert_file(&demo.join("demo.js"), "text/javascript; charset=utf-8");
    }
}

#[test]
fn missing_files_and_paths_out_of_the_mounts_are_not_found() {
    for host in HOSTS {
        let (server, _pkg) = serve_demo(host);
        for path in [
            "/missing.html",
            "/models/",
            "/models/digits/9/model.onnx",
            "/pkg/leak.toml",
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E%2FCargo.toml",
            "/models/..%2f..%2fCargo.toml",
            "/models/%2e%2e/%2e%2e/Cargo.toml",
            "/..%5cCargo.toml",
            "/index.html%00.png",
            "/%ff",
        ] {
            server.get(path).assert_error(404, "not_found", path);
        }
    }
}

#[test]
fn only_get_and_head_are_served_and_head_sends_no_body() {
    for host in HOSTS {
        let (server, _pkg) = serve_demo(host);
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let reply = server.fetch(method, "/index.html", &[]);
            reply.assert_error(405, "method_not_allowed", method);
            assert_eq!(reply.headers["allow"], "GET, HEAD");
        }
        let model = repo_root().join("models/efficientnet-lite0/1/model.onnx");
        let head = server.fetch("HEAD", "/models/efficientnet-lite0/1/model.onnx", &[]);
        assert_eq!(head.status, 200);
        assert_eq!(
            head.headers["content-length"],
            std::fs::metadata(&model).unwrap().len().to_string()
        );
        assert_eq!(head.headers["content-type"], "application/octet-stream");
        assert!(head.body.is_empty());
        let get = server.get("/models/efficientnet-lite0/1/model.onnx");
        assert_eq!(head.headers["etag"], get.headers["etag"]);
    }
}

#[test]
fn a_matching_if_none_match_gets_304() {
    for host in HOSTS {
        let (server, _pkg) = serve_demo(host);
        let first = server.get("/demo.js");
        let etag = first.headers.get("etag").cloned().unwrap_or_else(|| {
            panic!(
                "{host:?}: GET /demo.js answered {} without an etag: {}\n{}",
                first.status,
                first.text(),
                server.server.logs()
            )
        });
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        for tags in [
            etag.clone(),
            format!("\"other\", W/{etag}"),
            "*".to_string(),
        ] {
            let again = server.fetch("GET", "/demo.js", &[("if-none-match", &tags)]);
            assert_eq!(again.status, 304, "{tags}");
            assert!(again.body.is_empty());
            assert_eq!(again.headers["etag"], etag);
        }
        let stale = server.fetch("GET", "/demo.js", &[("if-none-match", "\"0-0-0\"")]);
        assert_eq!(stale.status, 200);
        // Another file has another tag.
        assert_ne!(server.get("/demo.css").headers["etag"], etag);
    }
}

#[test]
fn spin_path_info_names_the_file_under_the_route() {
    let (server, _pkg) = serve_demo(Host::Component);
    let demo = repo_root().join("browser/demo");
    let css = server.fetch("GET", "/demo/demo.css", &[("spin-path-info", "/demo.css")]);
    css.assert_file(&demo.join("demo.css"), "text/css; charset=utf-8");
    let index = server.fetch("GET", "/demo/", &[("spin-path-info", "/")]);
    index.assert_file(&demo.join("index.html"), "text/html; charset=utf-8");
    let model = server.fetch(
        "GET",
        "/demo/models/digits/1/model.json",
        &[("spin-path-info", "/models/digits/1/model.json")],
    );
    model.assert_file(
        &repo_root().join("models/digits/1/model.json"),
        "application/json",
    );
    let escape = server.fetch(
        "GET",
        "/demo/x",
        &[("spin-path-info", "/%2e%2e/Cargo.toml")],
    );
    escape.assert_error(404, "not_found", "spin-path-info /%2e%2e/Cargo.toml");
}

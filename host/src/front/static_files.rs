//! Static files from a manifest's file-server components (Spin's `spin_static_fs.wasm`, Ember's
//! `ember_fileserver.wasm`, e.g. the browser demo at `/demo/...`): Ember serves their `files`
//! mounts natively instead of running the file server, by the file server's own rules
//! ([`ember_fileserver::site`]: percent-decoded segments, nothing that could leave a mount, the
//! longest mount destination wins, content types, entity tags), so a site answers the same on
//! Ember as under Spin. The route prefix is stripped, a directory answers with its `index.html`,
//! and a symbolic link is never followed.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use ember_fileserver::site;
use hyper::header::{HeaderMap, HeaderValue};

use crate::manifest::SpinRoute;
use crate::runtime::error_response;
use ember_contract::{ApiError, Code};

/// The file a directory serves.
const INDEX: &str = "index.html";

/// A file-server component: its route and its `(host directory, destination)` mounts.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticSite {
    /// Component id.
    pub id: String,
    /// The HTTP route to it.
    pub route: SpinRoute,
    /// `files` mounts: host directory (resolved against the manifest) and destination path.
    pub mounts: Vec<(PathBuf, String)>,
}

/// A regular file a request names, read, with what its headers say.
struct Found {
    bytes: Vec<u8>,
    content_type: String,
    etag: String,
}

impl StaticSite {
    /// Answers a `GET`/`HEAD` of `path` (already matched by [`StaticSite::route`]); a matching
    /// `if-none-match` among `headers` gets `304`.
    pub async fn serve(
        &self,
        method: &hyper::Method,
        path: &str,
        headers: &HeaderMap,
    ) -> hyper::Response<Bytes> {
        if method != hyper::Method::GET && method != hyper::Method::HEAD {
            let mut refused = error_response(&ApiError::new(
                Code::MethodNotAllowed,
                format!("{method} is not allowed; use GET"),
            ));
            refused
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return refused;
        }
        let rest = match &self.route {
            SpinRoute::Prefix(prefix) => {
                let rest = &path[prefix.len()..];
                if rest.is_empty() {
                    // Relative links in index.html resolve against the directory: `/demo` → `/demo/`.
                    return hyper::Response::builder()
                        .status(308)
                        .header(hyper::header::LOCATION, format!("{path}/"))
                        .body(Bytes::new())
                        .expect("static response parts are valid");
                }
                rest
            }
            SpinRoute::Exact(_) => path.rsplit('/').next().unwrap_or_default(),
        };
        let Some(found) = self.find(rest).await else {
            return error_response(&ApiError::new(
                Code::NotFound,
                format!("no file at '{rest}'"),
            ));
        };
        let unchanged = headers
            .get(hyper::header::IF_NONE_MATCH)
            .and_then(|tags| tags.to_str().ok())
            .is_some_and(|tags| site::is_unchanged(tags, &found.etag));
        let reply = hyper::Response::builder()
            .header(hyper::header::ETAG, &found.etag)
            .header(hyper::header::CACHE_CONTROL, "no-cache");
        let reply = if unchanged {
            reply.status(304).body(Bytes::new())
        } else {
            reply
                .header(hyper::header::CONTENT_TYPE, found.content_type)
                .body(Bytes::from(found.bytes))
        };
        reply.expect("static response parts are valid")
    }

    /// The regular file `rest` (a path below the route) names under the mount whose destination
    /// matches most of it — a directory's `index.html` — if no symbolic link leads to it.
    async fn find(&self, rest: &str) -> Option<Found> {
        let segments = site::segments(rest)?;
        let destinations: Vec<&str> = self.mounts.iter().map(|(_, d)| d.as_str()).collect();
        let (mount, below) = site::mount(&destinations, &segments)?;
        let root = &self.mounts[mount].0;
        let mut file = below.iter().fold(root.clone(), |path, s| path.join(s));
        let mut name = below.last().map_or(INDEX, String::as_str);
        let mut metadata = tokio::fs::symlink_metadata(&file).await.ok()?;
        if metadata.is_dir() {
            file.push(INDEX);
            name = INDEX;
            metadata = tokio::fs::symlink_metadata(&file).await.ok()?;
        }
        if !metadata.is_file() || !within(root, &file).await {
            return None;
        }
        let modified = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map(|since| (since.as_secs(), since.subsec_nanos()));
        let bytes = tokio::fs::read(&file).await.ok()?;
        Some(Found {
            etag: site::etag(metadata.len(), modified),
            content_type: site::content_type(name),
            bytes,
        })
    }
}

/// Whether `file`, with every link on its way resolved, still lies under `root`'s own resolution
/// (a directory below the mount may be a symbolic link out of it).
async fn within(root: &Path, file: &Path) -> bool {
    match (
        tokio::fs::canonicalize(root).await,
        tokio::fs::canonicalize(file).await,
    ) {
        (Ok(root), Ok(file)) => file.starts_with(root),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(root: &Path) -> StaticSite {
        StaticSite {
            id: "demo".into(),
            route: SpinRoute::Prefix("/demo".into()),
            mounts: vec![
                (root.join("page"), "/".into()),
                (root.join("pkg"), "/pkg".into()),
            ],
        }
    }

    #[tokio::test]
    async fn serves_index_pages_mount_files_and_nothing_outside_them() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        for (file, text) in [
            ("page/index.html", "<h1>demo"),
            ("pkg/a.js", "export {}"),
            ("secret", "x"),
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::os::unix::fs::symlink(root.join("secret"), root.join("pkg/leak.js")).unwrap();
        std::os::unix::fs::symlink(root, root.join("pkg/up")).unwrap();
        let site = site(root);
        let get = |path: &'static str, headers: HeaderMap| {
            let site = site.clone();
            async move { site.serve(&hyper::Method::GET, path, &headers).await }
        };
        let index = get("/demo/", HeaderMap::new()).await;
        assert_eq!(index.status(), 200);
        assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(index.body().as_ref(), b"<h1>demo");
        let script = get("/demo/pkg/a%2Ejs", HeaderMap::new()).await;
        assert_eq!(
            script.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        let mut conditional = HeaderMap::new();
        conditional.insert(
            hyper::header::IF_NONE_MATCH,
            script.headers()["etag"].clone(),
        );
        assert_eq!(get("/demo/pkg/a.js", conditional).await.status(), 304);
        assert_eq!(get("/demo", HeaderMap::new()).await.status(), 308);
        for outside in [
            "/demo/../secret",
            "/demo/pkg/../../secret",
            "/demo/%2e%2e/secret",
            "/demo/pkg/leak.js",
            "/demo/pkg/up/secret",
            "/demo/missing.js",
        ] {
            assert_eq!(
                get(outside, HeaderMap::new()).await.status(),
                404,
                "{outside}"
            );
        }
        let post = site
            .serve(&hyper::Method::POST, "/demo/", &HeaderMap::new())
            .await;
        assert_eq!(post.status(), 405);
    }
}

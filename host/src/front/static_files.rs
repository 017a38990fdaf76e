//! Static files from a manifest's file-server components (Spin's `spin_static_fs.wasm`, e.g. the
//! browser demo at `/demo/...`): Ember serves their `files` mounts natively instead of running
//! the file server, with the file server's rules: the route prefix is stripped, the longest
//! mount destination wins, a directory answers with its `index.html`.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use crate::manifest::SpinRoute;
use crate::runtime::error_response;
use ember_contract::{ApiError, Code};

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

impl StaticSite {
    /// Answers a `GET`/`HEAD` of `path` (already matched by [`StaticSite::route`]).
    pub async fn serve(&self, method: &hyper::Method, path: &str) -> hyper::Response<Bytes> {
        if method != hyper::Method::GET && method != hyper::Method::HEAD {
            let mut refused = error_response(&ApiError::new(
                Code::MethodNotAllowed,
                format!("{method} is not allowed; use GET"),
            ));
            refused.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            return refused;
        }
        let SpinRoute::Prefix(prefix) = &self.route else {
            return self.read(path.rsplit('/').next().unwrap_or_default()).await;
        };
        let rest = &path[prefix.len()..];
        if rest.is_empty() {
            // Relative links in index.html resolve against the directory, so `/demo` → `/demo/`.
            return hyper::Response::builder()
                .status(308)
                .header(hyper::header::LOCATION, format!("{path}/"))
                .body(Bytes::new())
                .expect("static response parts are valid");
        }
        self.read(rest).await
    }

    /// The file at `rest` (a path below the route), looked up in the best mount.
    async fn read(&self, rest: &str) -> hyper::Response<Bytes> {
        let rest = format!("/{}", rest.trim_start_matches('/'));
        let Some(file) = self.locate(&rest) else {
            return not_found(&rest);
        };
        let file = if file.is_dir() {
            file.join("index.html")
        } else {
            file
        };
        match tokio::fs::read(&file).await {
            Ok(bytes) => hyper::Response::builder()
                .header(
                    hyper::header::CONTENT_TYPE,
                    mime_guess::from_path(&file)
                        .first_or_octet_stream()
                        .essence_str(),
                )
                .header(hyper::header::CACHE_CONTROL, "no-cache")
                .body(Bytes::from(bytes))
                .expect("static response parts are valid"),
            Err(_) => not_found(&rest),
        }
    }

    /// The host path for a request path: the mount with the longest matching destination, and
    /// only plain path segments below it (no `..`).
    fn locate(&self, rest: &str) -> Option<PathBuf> {
        let (dir, below) = self
            .mounts
            .iter()
            .filter_map(|(dir, destination)| {
                let destination = destination.trim_end_matches('/');
                let below = rest.strip_prefix(destination)?;
                (below.is_empty() || below.starts_with('/')).then_some((
                    dir,
                    destination.len(),
                    below,
                ))
            })
            .max_by_key(|(_, len, _)| *len)
            .map(|(dir, _, below)| (dir, below))?;
        let below = Path::new(below.trim_start_matches('/'));
        below
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
            .then(|| dir.join(below))
    }
}

fn not_found(path: &str) -> hyper::Response<Bytes> {
    error_response(&ApiError::new(
        Code::NotFound,
        format!("no file at '{path}'"),
    ))
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
        let site = site(root);
        let get = |path: &'static str| {
            let site = site.clone();
            async move { site.serve(&hyper::Method::GET, path).await }
        };
        let index = get("/demo/").await;
        assert_eq!(index.status(), 200);
        assert_eq!(index.headers()["content-type"], "text/html");
        assert_eq!(index.body().as_ref(), b"<h1>demo");
        let script = get("/demo/pkg/a.js").await;
        assert_eq!(script.headers()["content-type"], "text/javascript");
        assert_eq!(get("/demo").await.status(), 308);
        assert_eq!(get("/demo/../secret").await.status(), 404);
        assert_eq!(get("/demo/pkg/../../secret").await.status(), 404);
        assert_eq!(get("/demo/missing.js").await.status(), 404);
        let post = site.serve(&hyper::Method::POST, "/demo/").await;
        assert_eq!(post.status(), 405);
    }
}

//! What a request names: its path's segments (percent-decoded, with anything that could leave a
//! directory refused), the mount they fall under, and the file's content type and entity tag.

/// The segments of a request path, percent-decoded (the query dropped; empty and `.` segments
/// skipped), or `None` where the path is not UTF-8 or could leave its directory: a `..` segment,
/// a backslash or a NUL, encoded or not.
pub fn segments(path: &str) -> Option<Vec<String>> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = String::from_utf8(percent_decode(path)).ok()?;
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            named => segments.push(named.to_string()),
        }
    }
    Some(segments)
}

/// `%XX` escapes decoded; a `%` without two hex digits after it is kept as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match (bytes[at], hex(at + 1), hex(at + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                at += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    decoded
}

/// The mount that serves `segments` — of `mounts` (preopens' guest paths such as `/` or `/pkg`),
/// the one with the longest prefix of them — as its index, with the segments left under it.
pub fn mount<'a>(mounts: &[&str], segments: &'a [String]) -> Option<(usize, &'a [String])> {
    mounts
        .iter()
        .enumerate()
        .filter_map(|(index, mount)| {
            let prefix: Vec<&str> = mount
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .collect();
            let under =
                prefix.len() <= segments.len() && prefix.iter().zip(segments).all(|(p, s)| p == s);
            under.then_some((index, prefix.len()))
        })
        .max_by_key(|&(_, depth)| depth)
        .map(|(index, depth)| (index, &segments[depth..]))
}

/// The `content-type` of a file named `name`, from its extension (text types in UTF-8).
pub fn content_type(name: &str) -> String {
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    let mime = match extension.as_str() {
        "js" | "mjs" => "text/javascript",
        other => mime_guess::from_ext(other)
            .first_raw()
            .unwrap_or("application/octet-stream"),
    };
    if mime.starts_with("text/") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

/// A strong entity tag from a file's size and modification time (seconds, nanoseconds).
pub fn etag(size: u64, modified: Option<(u64, u32)>) -> String {
    let (seconds, nanoseconds) = modified.unwrap_or_default();
    format!("\"{size:x}-{seconds:x}-{nanoseconds:x}\"")
}

/// Whether an `if-none-match` value names `etag` (or is `*`), comparing weakly as RFC 9110 asks.
pub fn is_unchanged(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(segments: &[&str]) -> Vec<String> {
        segments.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_are_decoded_into_segments() {
        assert_eq!(segments("/").unwrap(), owned(&[]));
        assert_eq!(segments("").unwrap(), owned(&[]));
        assert_eq!(segments("/pkg//a.js?v=1").unwrap(), owned(&["pkg", "a.js"]));
        assert_eq!(segments("/./a%20b.txt#top").unwrap(), owned(&["a b.txt"]));
        assert_eq!(segments("/a%2Fb").unwrap(), owned(&["a", "b"]));
        assert_eq!(segments("/100%").unwrap(), owned(&["100%"]));
        assert_eq!(segments("/%zz%4").unwrap(), owned(&["%zz%4"]));
        assert_eq!(segments("/%+1").unwrap(), owned(&["%+1"]));
    }

    #[test]
    fn paths_that_could_leave_the_directory_are_refused() {
        for path in [
            "/../Cargo.toml",
            "/a/../../b",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E%2fCargo.toml",
            "/..%5cCargo.toml",
            "/a\\b",
            "/a%00.html",
            "/%ff",
        ] {
            assert_eq!(segments(path), None, "{path}");
        }
        // Dots inside a name are just a name.
        assert_eq!(segments("/a..b/...").unwrap(), owned(&["a..b", "..."]));
    }

    #[test]
    fn the_longest_mount_prefix_serves() {
        let mounts = ["/", "/pkg", "/pkg/deep", "/models/"];
        let path = owned(&["pkg", "deep", "x.wasm"]);
        assert_eq!(mount(&mounts, &path), Some((2, &path[2..])));
        let path = owned(&["pkg", "x.js"]);
        assert_eq!(mount(&mounts, &path), Some((1, &path[1..])));
        let path = owned(&["models", "digits", "1", "model.onnx"]);
        assert_eq!(mount(&mounts, &path), Some((3, &path[1..])));
        let path = owned(&["pkgs", "x.js"]);
        assert_eq!(mount(&mounts, &path), Some((0, &path[..])));
        assert_eq!(mount(&["/pkg"], &owned(&["index.html"])), None);
        assert_eq!(
            mount(&["/pkg"], &owned(&["pkg"])).map(|(i, rest)| (i, rest.len())),
            Some((0, 0))
        );
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("demo.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("demo.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("ember.MJS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("ember_bg.wasm"), "application/wasm");
        assert_eq!(content_type("model.json"), "application/json");
        assert_eq!(content_type("model.onnx"), "application/octet-stream");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn if_none_match_compares_entity_tags() {
        let tag = etag(1234, Some((1_700_000_000, 5)));
        assert_eq!(tag, "\"4d2-6553f100-5\"");
        assert_ne!(tag, etag(1234, Some((1_700_000_000, 6))));
        assert!(is_unchanged(&tag, &tag));
        assert!(is_unchanged(&format!("\"x\", W/{tag}"), &tag));
        assert!(is_unchanged("*", &tag));
        assert!(!is_unchanged("\"4d2-6553f100-4\"", &tag));
    }
}

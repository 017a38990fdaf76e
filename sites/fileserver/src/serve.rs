//! The `wasi:http/incoming-handler` export: opens the file a request names under the preopened
//! directories and streams it.

use std::io::{self, Write as _};

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, OpenFlags, PathFlags,
};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::OutputStream;

use crate::site;

/// The file a directory serves.
const INDEX: &str = "index.html";

/// Bytes read from a file and written to the response at a time.
const CHUNK: u64 = 64 * 1024;

struct FileServer;

wasip2::http::proxy::export!(FileServer);

impl wasip2::exports::http::incoming_handler::Guest for FileServer {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let head = match request.method() {
            Method::Get => false,
            Method::Head => true,
            _ => {
                return refuse(
                    out,
                    405,
                    "method_not_allowed",
                    "only GET and HEAD are served",
                )
            }
        };
        let Some(found) = find(&served_path(&request)) else {
            return refuse(out, 404, "not_found", "no such file");
        };
        let mut headers = vec![
            ("etag", found.etag.clone()),
            ("cache-control", "no-cache".to_string()),
        ];
        if header(&request, "if-none-match")
            .is_some_and(|tags| site::is_unchanged(&tags, &found.etag))
        {
            return ResponseOutparam::set(out, Ok(response(304, &headers)));
        }
        headers.push(("content-type", found.content_type));
        headers.push(("content-length", found.size.to_string()));
        if head {
            ResponseOutparam::set(out, Ok(response(200, &headers)));
        } else {
            send(out, 200, &headers, |stream| {
                copy(&found.file, found.size, stream)
            });
        }
    }
}

/// A regular file opened for a request, with what its headers say.
struct Found {
    file: Descriptor,
    size: u64,
    content_type: String,
    etag: String,
}

/// The path to serve: Spin's `spin-path-info` (the path under the component's route) where it is
/// sent, else the request's own.
fn served_path(request: &IncomingRequest) -> String {
    header(request, "spin-path-info")
        .or_else(|| request.path_with_query())
        .unwrap_or_default()
}

/// Opens the regular file `path` names under the preopen with the longest matching guest path
/// (a directory's `index.html`), never following a symlink; `None` for anything else.
fn find(path: &str) -> Option<Found> {
    let segments = site::segments(path)?;
    let preopens = get_directories();
    let mounts: Vec<&str> = preopens.iter().map(|(_, guest)| guest.as_str()).collect();
    let (mount, rest) = site::mount(&mounts, &segments)?;
    let mut name = rest.last().map_or(INDEX, String::as_str);
    let relative = if rest.is_empty() {
        INDEX.to_string()
    } else {
        rest.join("/")
    };
    let mut file = open(&preopens[mount].0, &relative)?;
    if file.get_type().ok()? == DescriptorType::Directory {
        file = open(&file, INDEX)?;
        name = INDEX;
    }
    let stat = file.stat().ok()?;
    let modified = stat
        .data_modification_timestamp
        .map(|time| (time.seconds, time.nanoseconds));
    (stat.type_ == DescriptorType::RegularFile).then(|| Found {
        size: stat.size,
        content_type: site::content_type(name),
        etag: site::etag(stat.size, modified),
        file,
    })
}

fn open(dir: &Descriptor, path: &str) -> Option<Descriptor> {
    dir.open_at(
        PathFlags::empty(),
        path,
        OpenFlags::empty(),
        DescriptorFlags::READ,
    )
    .ok()
}

/// Writes the file's first `size` bytes to `stream`, [`CHUNK`] at a time.
fn copy(file: &Descriptor, size: u64, stream: &mut OutputStream) -> io::Result<()> {
    let mut offset = 0;
    while offset < size {
        let (chunk, _) = file
            .read(CHUNK.min(size - offset), offset)
            .map_err(io::Error::other)?;
        if chunk.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        stream.write_all(&chunk)?;
        offset += chunk.len() as u64;
    }
    Ok(())
}

/// A request header's values, joined as one.
fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    let values: Vec<_> = values.iter().map(|v| String::from_utf8_lossy(v)).collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Answers `status` with the error envelope `{"error":{"code","message"}}`.
fn refuse(out: ResponseOutparam, status: u16, code: &str, message: &str) {
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("content-length", body.len().to_string()),
    ];
    if status == 405 {
        headers.push(("allow", "GET, HEAD".to_string()));
    }
    send(out, status, &headers, |stream| {
        stream.write_all(body.as_bytes())
    });
}

fn response(status: u16, headers: &[(&str, String)]) -> OutgoingResponse {
    let fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone().into_bytes()))
        .collect();
    let response = OutgoingResponse::new(Fields::from_list(&fields).expect("valid headers"));
    response.set_status_code(status).expect("a valid status");
    response
}

/// Sends the status and headers, then what `write` writes as the body. A body that fails part
/// way is left unfinished, which aborts the response: the client sees it cut short.
fn send(
    out: ResponseOutparam,
    status: u16,
    headers: &[(&str, String)],
    write: impl FnOnce(&mut OutputStream) -> io::Result<()>,
) {
    let response = response(status, headers);
    let body = response.body().expect("the body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let Ok(mut stream) = body.write() else { return };
    let written = write(&mut stream).and_then(|()| io::Write::flush(&mut stream));
    drop(stream);
    if written.is_ok() {
        let _ = OutgoingBody::finish(body, None);
    }
}

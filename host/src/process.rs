//! Child processes Ember starts and watches (the bench's peers; the end-to-end tests' servers):
//! collecting what they print.

use std::io::Read;
use std::sync::{Arc, Mutex};

/// Collects everything `stream` yields, in the background, into the returned text.
pub fn capture(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    text
}

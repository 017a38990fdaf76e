//! 200 concurrent requests all come back correct.

use std::sync::{Arc, Barrier};

use crate::support::{reference_cases, Server};

#[test]
fn two_hundred_concurrent_requests_all_come_back_correct() {
    let server = Arc::new(Server::start(&[]));
    let cases: Vec<_> = reference_cases("credit-risk")
        .into_iter()
        .chain(reference_cases("digits"))
        .collect();
    let barrier = Arc::new(Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let (server, barrier) = (server.clone(), barrier.clone());
            let case = cases[i % cases.len()].clone();
            std::thread::spawn(move || {
                let model = if case["request"].get("image").is_some() {
                    "digits"
                } else {
                    "credit-risk"
                };
                barrier.wait();
                let (status, reply) =
                    server.post_json(&format!("/models/{model}/predict"), &case["request"]);
                assert_eq!(status, 200, "{reply}");
                assert_eq!(reply["prediction"], case["prediction"], "{}", case["name"]);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("request thread");
    }
}

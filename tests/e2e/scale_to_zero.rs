//! Scale to zero: idle graphs unload and reload transparently; an idle process exits cleanly.

use std::time::Duration;

use crate::support::{reference_cases, Server};

#[test]
fn idle_graphs_unload_and_the_next_request_reloads_them() {
    let server = Server::start(&["--idle-unload", "0.3"]);
    let (_, health) = server.get("/-/health");
    assert_eq!(
        health["graphs_loaded"], 0,
        "graphs load on first use: {health}"
    );
    let case = &reference_cases("digits")[4];
    assert_eq!(
        server
            .post_json("/models/digits/predict", &case["request"])
            .1["prediction"],
        case["prediction"]
    );
    assert_eq!(server.get("/-/health").1["graphs_loaded"], 1);
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(
        server.get("/-/health").1["graphs_loaded"],
        0,
        "{}",
        server.logs()
    );
    assert!(server.logs().contains("graph unloaded"));
    let (status, reply) = server.post_json("/models/digits/predict", &case["request"]);
    assert_eq!(status, 200);
    assert_eq!(reply["prediction"], case["prediction"]);
}

#[test]
fn an_idle_process_exits_cleanly() {
    let mut server = Server::start(&["--idle-exit", "0.5"]);
    assert_eq!(
        server
            .post_json("/predict", &reference_cases("credit-risk")[0]["request"])
            .0,
        200
    );
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("ember exits when idle");
    assert!(status.success(), "{status:?}");
    assert!(server.logs().contains("idle: exiting"), "{}", server.logs());
}

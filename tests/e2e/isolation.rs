//! The host survives any guest: an infinite loop meets the deadline (504), a trap is a 500, a
//! memory blow-up meets the limit; the host keeps serving after each.

use crate::support::Server;

fn misbehaving_server() -> Server {
    Server::start(&[
        "--component",
        env!("EMBER_MISBEHAVE_WASM"),
        "--deadline-ms",
        "500",
        "--memory-limit-mib",
        "64",
    ])
}

#[test]
fn an_infinite_loop_gets_504_and_the_host_keeps_serving() {
    let mut server = misbehaving_server();
    let (status, body) = server.get("/loop");
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert!(server.is_alive());
    assert_eq!(server.get("/fine").0, 200);
}

#[test]
fn a_trap_gets_500_and_the_host_keeps_serving() {
    let mut server = misbehaving_server();
    let (status, body) = server.get("/trap");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "function_trapped");
    assert!(server.is_alive());
    assert_eq!(server.get("/fine").0, 200);
}

#[test]
fn a_memory_blow_up_meets_the_limit_and_the_host_keeps_serving() {
    let mut server = misbehaving_server();
    let (status, body) = server.get("/grow");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "memory_limit_exceeded");
    assert!(server.is_alive());
    assert_eq!(server.get("/fine").0, 200);
}

#[test]
fn concurrent_loops_do_not_starve_healthy_requests() {
    let server = std::sync::Arc::new(misbehaving_server());
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let s = server.clone();
            std::thread::spawn(move || s.get("/loop").0)
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    // While four loops spin on two cores, a healthy request still gets through (time slicing).
    assert_eq!(server.get("/fine").0, 200);
    for l in loops {
        assert_eq!(l.join().unwrap(), 504);
    }
}

//! Wall-clock timestamps for replies (wasi:clocks in the guest, the OS natively).

/// The current UTC time as RFC 3339 with milliseconds, e.g. `2026-11-22T09:30:00.123Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

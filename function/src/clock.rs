//! Wall-clock timestamps for replies (wasi:clocks in the guest, the OS natively, JavaScript's
//! `Date` in the browser, where `std::time::SystemTime` is unavailable).

/// The current UTC time as RFC 3339 with milliseconds, e.g. `2026-11-22T09:30:00.123Z`.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The current UTC time as RFC 3339 with milliseconds, e.g. `2026-11-22T09:30:00.123Z`.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub fn now_rfc3339() -> String {
    String::from(js_sys::Date::new_0().to_iso_string())
}

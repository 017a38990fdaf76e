//! Fetching a model's files over HTTP with the page's `fetch`.

use ember_contract::{ApiError, Code};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::Response;

/// The body of `url`, or a 503 `model_not_ready` naming the URL and what went wrong.
pub async fn bytes(url: &str) -> Result<Vec<u8>, ApiError> {
    let failed =
        |why: String| ApiError::new(Code::ModelNotReady, format!("could not fetch {url}: {why}"));
    let window = web_sys::window().ok_or_else(|| failed("no window".into()))?;
    let response: Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .and_then(|r| r.dyn_into())
        .map_err(|e| failed(format!("{e:?}")))?;
    if !response.ok() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let buffer = response
        .array_buffer()
        .map_err(|e| failed(format!("{e:?}")))?;
    let buffer = JsFuture::from(buffer)
        .await
        .map_err(|e| failed(format!("{e:?}")))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

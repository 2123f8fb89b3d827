//! A panicking handler answers 500 like any other internal error: a problem with the
//! request id and a fixed sentence for the client; the panic's message is logged once,
//! by `ApiError`, never sent.
use std::any::Any;
use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::error::ApiError;

pub async fn catch_panic(req: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(res) => res,
        Err(panic) => ApiError::Internal(format!("handler panicked: {}", message(panic.as_ref()))).into_response(),
    }
}

/// What `panic!` was given, when it was text.
fn message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_with_text_keeps_its_message_for_the_log() {
        assert_eq!(message(&"static text"), "static text");
        assert_eq!(message(&String::from("formatted 7")), "formatted 7");
        assert_eq!(message(&7u32), "");
    }
}

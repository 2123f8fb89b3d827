//! An HTTP answer's body read with a cap on its size: an upstream that answers without
//! end (a broken proxy, a huge error page) cannot make a process buffer without bound.
//! Found by the worker-resilience audit of 2026-12-07 (fourth): the marketplace's and the
//! token service's answers were read whole, bounded by their timeout only.

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// The answer says, or has sent, more than `max` bytes.
    TooLarge { max: usize },
    /// The transfer failed.
    Read(reqwest::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { max } => write!(f, "the answer is over {max} bytes"),
            BodyError::Read(e) => write!(f, "reading the answer: {e}"),
        }
    }
}

/// `response`'s body, chunk by chunk, refused once it passes `max` bytes (or says it will).
pub async fn read_at_most(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

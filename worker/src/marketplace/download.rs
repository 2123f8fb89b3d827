//! Report document downloads. In production the document URL is a pre-signed S3 URL:
//! no access token, no SP-API rate limit, no breaker — and its query is a credential,
//! so the URL never goes into logs or errors. The body is read in chunks up to
//! `marketplace.max_document_bytes` and gunzipped up to `marketplace.max_unpacked_bytes`:
//! past either the download is a permanent error (a retry would get the same document),
//! never an out-of-memory worker.
use std::io::Read;
use std::time::Duration;

use amazon_spapi::models::reports_2021_06_30::{report_document::CompressionAlgorithm, ReportDocument};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::call::{describe, DEFAULT_RETRY_AFTER};
use super::classify::{self, Disposition};
use super::client::MarketplaceClient;
use super::error::CallError;

const OP: &str = "downloadReportDocument";
/// gzip's magic number.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl MarketplaceClient {
    /// Downloads a report document, gunzipped when `compressionAlgorithm` is GZIP.
    /// Transient failures are retried in-call like API calls, and a 429 waited out or
    /// snoozed for as its `Retry-After` says; 404 is `NotFound`, other
    /// 4xx (an expired URL) `Permanent`: fetch the document again for a fresh URL.
    pub async fn download_document(&self, doc: &ReportDocument) -> Result<Vec<u8>, CallError> {
        // Cancellation comes from the job's own token through the API calls around this
        // one; a download has no account context, so it is bounded by its timeout only.
        let never = CancellationToken::new();
        let retries = self.config().retries;
        let mut attempt = 0;
        loop {
            let failure = match self.fetch(&doc.url).await {
                Ok((status, retry_after, body)) => match classify::disposition(status) {
                    Disposition::Success => match unpack(doc, body, self.config().max_unpacked_bytes).await {
                        Ok(bytes) => return Ok(bytes),
                        Err(Unpack::TooLarge(reason)) => return Err(too_large(reason)),
                        Err(Unpack::Failed(reason)) => reason,
                    },
                    Disposition::NotFound => return Err(CallError::NotFound { op: OP }),
                    Disposition::RateLimited => {
                        // As an API call's 429 (found by the worker-resilience audit of
                        // 2026-12-07, second: it was a 5xx, three quick tries and its
                        // `Retry-After` ignored): waited out in the call when short enough
                        // that the run would not park for it, else the run snoozes.
                        let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                        tracing::warn!(op = OP, document_id = %doc.report_document_id, attempt, retry_after_ms = wait.as_millis() as u64, "report document download rate limited");
                        let in_call = self.config().retry_max().min(self.resilience().config().max_wait);
                        if attempt < retries && wait <= in_call {
                            self.sleep(wait, &never).await?;
                            attempt += 1;
                            continue;
                        }
                        return Err(CallError::RateLimited {
                            op: OP,
                            retry_after: wait,
                            quota: false,
                        });
                    }
                    Disposition::ServerError => {
                        format!("{} {}", status.as_u16(), classify::upstream_reason(status, &body))
                    }
                    Disposition::Unauthorized | Disposition::ClientError => {
                        return Err(CallError::Permanent {
                            op: OP,
                            status: status.as_u16(),
                            reason: classify::upstream_reason(status, &body),
                        })
                    }
                },
                Err(Fetch::TooLarge(reason)) => return Err(too_large(reason)),
                Err(Fetch::Failed(reason)) => reason,
            };
            // One WARN a failed download, at its last try, as a failed call; the tries
            // before at debug.
            if attempt >= retries {
                tracing::warn!(op = OP, document_id = %doc.report_document_id, tries = attempt + 1, reason = %failure, "report document download failed");
                return Err(CallError::Transient { op: OP, reason: failure });
            }
            tracing::debug!(op = OP, document_id = %doc.report_document_id, call_try = attempt, reason = %failure, "report document download failed; trying again");
            self.backoff(attempt, &never).await?;
            attempt += 1;
        }
    }

    /// The status, `Retry-After` and body, the body read chunk by chunk up to
    /// `max_document_bytes`.
    async fn fetch(&self, url: &str) -> Result<(StatusCode, Option<Duration>, Vec<u8>), Fetch> {
        let max = self.config().max_document_bytes;
        let over = |n: u64| {
            Fetch::TooLarge(format!(
                "the document is over marketplace.max_document_bytes ({max}): {n} bytes or more"
            ))
        };
        let mut response = self
            .http()
            .get(url)
            .timeout(self.config().download_timeout())
            .send()
            .await
            .map_err(|e| Fetch::Failed(describe(&e)))?;
        let status = response.status();
        let retry_after = classify::retry_after(response.headers());
        if let Some(n) = response.content_length().filter(|n| *n > max) {
            return Err(over(n));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| Fetch::Failed(describe(&e)))? {
            let n = body.len() as u64 + chunk.len() as u64;
            if n > max {
                return Err(over(n));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, retry_after, body))
    }
}

/// Why a download did not give a body.
enum Fetch {
    /// Transport failure: retried.
    Failed(String),
    TooLarge(String),
}

/// Why a body did not unpack.
enum Unpack {
    /// Corrupt (a truncated transfer, usually): retried.
    Failed(String),
    TooLarge(String),
}

/// A document over a cap: the same document comes back on a retry, so it is permanent.
fn too_large(reason: String) -> CallError {
    CallError::Permanent {
        op: OP,
        status: 200,
        reason,
    }
}

/// Gunzips when the document says GZIP. A body that is not gzip although it should be
/// was already decoded on the way (a `Content-Encoding: gzip` answer) and is kept as is.
async fn unpack(doc: &ReportDocument, body: Vec<u8>, max: u64) -> Result<Vec<u8>, Unpack> {
    if doc.compression_algorithm != Some(CompressionAlgorithm::Gzip) || !body.starts_with(&GZIP_MAGIC) {
        return Ok(body);
    }
    // Inflating megabytes is CPU work; keep it off the async threads. A panic there (a
    // bug) fails the document, not the run: logged here, in the run's span.
    match drover::panics::spawn_blocking(move || drover::panics::catch(|| gunzip_at_most(&body, max))).await {
        Ok(Ok(unpacked)) => unpacked,
        Ok(Err(p)) => {
            tracing::error!(error = %p, "gunzip panicked; the document is not read");
            Err(Unpack::Failed("gunzip stopped on a bug in the worker".into()))
        }
        Err(e) => Err(Unpack::Failed(format!("gunzip task failed: {e}"))),
    }
}

/// How much of the inflated document is read at a time.
const GUNZIP_CHUNK: usize = 64 * 1024;

/// Gunzip, stopping once the output passes `max` bytes. The output never holds more
/// than `max` bytes of room: growing by doubling would reserve up to twice the cap
/// before the check refused a document just over it (found by the newcomer audit of
/// 2026-12-06: 512 MiB for a 256 MiB cap, past the pods' memory limit).
fn gunzip_at_most(body: &[u8], max: u64) -> Result<Vec<u8>, Unpack> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let expected = body.len().saturating_mul(4).min(max).min(64 * 1024 * 1024);
    let mut out = Vec::with_capacity(expected);
    let mut decoder = flate2::read::MultiGzDecoder::new(body);
    let mut chunk = vec![0u8; GUNZIP_CHUNK];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Unpack::Failed(format!("corrupt gzip document: {e}"))),
        };
        if n > max - out.len() {
            return Err(Unpack::TooLarge(format!(
                "the document unpacks to more than marketplace.max_unpacked_bytes ({max})"
            )));
        }
        if out.capacity() - out.len() < n {
            // double as a Vec would, but never past the cap
            let room = out.capacity().saturating_mul(2).max(out.len() + n).min(max);
            out.reserve_exact(room - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gz(text: &str) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    fn doc(gzip: bool) -> ReportDocument {
        let mut d = ReportDocument::new("doc-1".into(), "http://x/doc-1".into());
        d.compression_algorithm = gzip.then_some(CompressionAlgorithm::Gzip);
        d
    }

    #[tokio::test]
    async fn gzip_documents_are_unpacked_and_plain_ones_kept() {
        let unpack = |d, b| async move { unpack(&d, b, u64::MAX).await.map_err(|_| ()) };
        assert_eq!(unpack(doc(true), gz("a\tb\n")).await.unwrap(), b"a\tb\n");
        assert_eq!(unpack(doc(false), b"plain".to_vec()).await.unwrap(), b"plain");
        // Already decoded by a Content-Encoding-aware hop.
        assert_eq!(unpack(doc(true), b"plain".to_vec()).await.unwrap(), b"plain");
    }

    #[test]
    fn a_document_of_the_cap_is_read_into_no_more_room_than_the_cap() {
        let max = 3_000_000;
        let exact = gz(&"0".repeat(max));
        let Ok(out) = gunzip_at_most(&exact, max as u64) else {
            panic!("exactly the cap is kept")
        };
        assert_eq!(out.len(), max);
        assert!(out.capacity() <= max, "{} bytes of room for a cap of {max}", out.capacity());
        let over = gz(&"0".repeat(max + 1));
        assert!(matches!(gunzip_at_most(&over, max as u64), Err(Unpack::TooLarge(_))));
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_cap() {
        // 64 MiB of zeros is about 64 KiB of gzip.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            enc.write_all(&[0u8; 1024 * 1024]).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        match gunzip_at_most(&bomb, 1024 * 1024) {
            Err(Unpack::TooLarge(why)) => assert!(why.contains("max_unpacked_bytes"), "{why}"),
            _ => panic!("the bomb was unpacked"),
        }
        assert_eq!(gunzip_at_most(&gz("abc"), 3).ok(), Some(b"abc".to_vec()), "exactly the cap is fine");
    }

    #[test]
    fn a_truncated_gzip_is_an_error_not_a_short_document() {
        let mut bytes = gz(&"row\n".repeat(1000));
        bytes.truncate(bytes.len() / 2);
        assert!(matches!(gunzip_at_most(&bytes, u64::MAX), Err(Unpack::Failed(e)) if e.contains("corrupt gzip")));
    }
}

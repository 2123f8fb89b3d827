//! Report document downloads. In production the document URL is a pre-signed S3 URL:
//! no access token, no SP-API rate limit, no breaker — and its query is a credential,
//! so the URL never goes into logs or errors.
use std::io::Read;

use amazon_spapi::models::reports_2021_06_30::{report_document::CompressionAlgorithm, ReportDocument};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::call::describe;
use super::classify::{self, Disposition};
use super::client::MarketplaceClient;
use super::error::CallError;

const OP: &str = "downloadReportDocument";
/// gzip's magic number.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl MarketplaceClient {
    /// Downloads a report document, gunzipped when `compressionAlgorithm` is GZIP.
    /// Transient failures are retried in-call like API calls; 404 is `NotFound`, other
    /// 4xx (an expired URL) `Permanent`: fetch the document again for a fresh URL.
    pub async fn download_document(&self, doc: &ReportDocument) -> Result<Vec<u8>, CallError> {
        // Cancellation comes from the job's own token through the API calls around this
        // one; a download has no account context, so it is bounded by its timeout only.
        let never = CancellationToken::new();
        let retries = self.config().retries;
        let mut attempt = 0;
        loop {
            let failure = match self.fetch(&doc.url).await {
                Ok((status, body)) => match classify::disposition(status) {
                    Disposition::Success => match unpack(doc, body).await {
                        Ok(bytes) => return Ok(bytes),
                        Err(reason) => reason,
                    },
                    Disposition::NotFound => return Err(CallError::NotFound { op: OP }),
                    Disposition::ServerError | Disposition::RateLimited => {
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
                Err(reason) => reason,
            };
            tracing::warn!(op = OP, document_id = %doc.report_document_id, attempt, reason = %failure, "report document download failed");
            if attempt >= retries {
                return Err(CallError::Transient { op: OP, reason: failure });
            }
            self.backoff(attempt, &never).await?;
            attempt += 1;
        }
    }

    async fn fetch(&self, url: &str) -> Result<(StatusCode, Vec<u8>), String> {
        let response = self
            .http()
            .get(url)
            .timeout(self.config().download_timeout())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| describe(&e))?;
        Ok((status, body.to_vec()))
    }
}

/// Gunzips when the document says GZIP. A body that is not gzip although it should be
/// was already decoded on the way (a `Content-Encoding: gzip` answer) and is kept as is.
async fn unpack(doc: &ReportDocument, body: Vec<u8>) -> Result<Vec<u8>, String> {
    if doc.compression_algorithm != Some(CompressionAlgorithm::Gzip) || !body.starts_with(&GZIP_MAGIC) {
        return Ok(body);
    }
    // Inflating megabytes is CPU work; keep it off the async threads.
    tokio::task::spawn_blocking(move || gunzip(&body))
        .await
        .map_err(|e| format!("gunzip task failed: {e}"))?
}

pub(crate) fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::MultiGzDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|e| format!("corrupt gzip document: {e}"))?;
    Ok(out)
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
        assert_eq!(unpack(&doc(true), gz("a\tb\n")).await.unwrap(), b"a\tb\n");
        assert_eq!(unpack(&doc(false), b"plain".to_vec()).await.unwrap(), b"plain");
        // Already decoded by a Content-Encoding-aware hop.
        assert_eq!(unpack(&doc(true), b"plain".to_vec()).await.unwrap(), b"plain");
    }

    #[test]
    fn a_truncated_gzip_is_an_error_not_a_short_document() {
        let mut bytes = gz(&"row\n".repeat(1000));
        bytes.truncate(bytes.len() / 2);
        assert!(gunzip(&bytes).unwrap_err().contains("corrupt gzip"));
    }
}

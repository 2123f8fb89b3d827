//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations (each
//! collected where the handler is routed, `routes.rs`) and the views' `ToSchema` derives —
//! never written by hand — and the endpoint that serves it.
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use drover::job::{BackfillPayload, CleanupPayload, FieldError, SyncPayload};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;

/// What the whole API shares: its description, security, tags and the schemas no
/// operation references.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Drover API",
        description = "Submit, query and control jobs of the Drover queue; register seller accounts. Authenticate with `Authorization: Bearer <key>`. \
            Errors are application/problem+json.",
    ),
    // What no operation names: the payload of each kind (`SubmitJob.payload` is free-form
    // JSON whose shape depends on `kind`).
    components(schemas(Problem, FieldError, SyncPayload, BackfillPayload, CleanupPayload)),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Submit and follow jobs"),
        (name = "control", description = "Cancel and retry jobs (admin)"),
        (name = "dead-letter", description = "Dead jobs and their replay"),
        (name = "queues", description = "Queue counts and pause / resume"),
        (name = "accounts", description = "Seller accounts, their credentials (write-only) and marketplace limits"),
        (name = "schedules", description = "Periodic jobs (cron, UTC), one job per tick across replicas"),
        (name = "operations", description = "Probes and this document (metrics are on the internal listener, api.metrics_listen)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
    }
}

/// OpenAPI requires a description on every response: where a handler gave none, use the
/// status's reason phrase.
struct DescribeResponses;

impl Modify for DescribeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch]
                .into_iter()
                .flatten()
            {
                for (code, response) in op.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(r) = response {
                        if r.description.is_empty() {
                            r.description = code
                                .parse::<u16>()
                                .ok()
                                .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                                .and_then(|c| c.canonical_reason())
                                .unwrap_or("Response")
                                .to_owned();
                        }
                    }
                }
            }
        }
    }
}

/// The finished document, serialized once when the router is built.
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    /// [`ApiDoc`] with the routed endpoints' `operations` (`routes::endpoints`).
    pub fn new(operations: utoipa::openapi::OpenApi) -> Self {
        let mut doc = ApiDoc::openapi();
        doc.merge(operations);
        BearerAuth.modify(&mut doc);
        DescribeResponses.modify(&mut doc);
        Self(doc.to_json().expect("the OpenAPI document serializes").into())
    }

    pub fn json(&self) -> &[u8] {
        &self.0
    }
}

/// This API's OpenAPI document, generated from the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn serve(Extension(doc): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc.0)
}

#[cfg(test)]
mod tests {
    /// V1: OpenAPI requires every path parameter to be `required: true`, and each
    /// parameter once; validators and client generators refuse the document otherwise.
    use super::Document;
    use crate::routes::endpoints;

    /// The document as served, built without a service (guards add nothing to it).
    fn document() -> serde_json::Value {
        let operations = endpoints(1024, |_, group| group).into_openapi();
        serde_json::from_slice(Document::new(operations).json()).unwrap()
    }

    #[test]
    fn every_path_parameter_is_required_and_declared_once() {
        let doc = document();
        let mut seen = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let params: Vec<_> = op["parameters"].as_array().into_iter().flatten().collect();
                let mut names: Vec<_> = params.iter().map(|p| (p["name"].to_string(), p["in"].to_string())).collect();
                names.sort();
                let count = names.len();
                names.dedup();
                assert_eq!(names.len(), count, "{method} {path}: a parameter is declared twice: {params:?}");
                for p in params {
                    if p["in"] == "path" {
                        seen += 1;
                        assert_eq!(p["required"], true, "{method} {path}: {p}");
                    }
                }
            }
        }
        assert!(seen > 5, "{seen} path parameters");
    }
}

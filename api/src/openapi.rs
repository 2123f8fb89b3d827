//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and
//! the views' `ToSchema` derives — never written by hand.
use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use drover::job::{BackfillPayload, CleanupPayload, FieldError, SyncPayload};

use crate::error::Problem;
use crate::handlers::{accounts, control, csv_upload, dead_letter, events, health, items, jobs, queues, schedules, submit};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Drover API",
        description = "Submit, query and control jobs of the Drover queue; register seller accounts. Authenticate with `Authorization: Bearer <key>`. \
            Errors are application/problem+json.",
    ),
    paths(
        submit::submit,
        csv_upload::upload,
        jobs::get_job,
        jobs::list_jobs,
        events::job_events,
        items::list_items,
        schedules::put_schedule,
        schedules::get_schedule,
        schedules::list_schedules,
        schedules::delete_schedule,
        control::cancel,
        control::retry,
        dead_letter::list_dead,
        dead_letter::replay,
        queues::list_queues,
        queues::pause,
        queues::resume,
        accounts::create,
        accounts::get,
        accounts::limits,
        health::healthz,
        health::readyz,
        health::openapi,
    ),
    // What no operation names: the payload of each kind (`SubmitJob.payload` is free-form
    // JSON whose shape depends on `kind`).
    components(schemas(Problem, FieldError, SyncPayload, BackfillPayload, CleanupPayload)),
    modifiers(&BearerAuth, &DescribeResponses),
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

static JSON: LazyLock<String> = LazyLock::new(|| ApiDoc::openapi().to_json().expect("the OpenAPI document serializes"));

pub fn json() -> String {
    JSON.clone()
}

#[cfg(test)]
mod tests {
    /// V1: OpenAPI requires every path parameter to be `required: true`, and each
    /// parameter once; validators and client generators refuse the document otherwise.
    #[test]
    fn every_path_parameter_is_required_and_declared_once() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
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

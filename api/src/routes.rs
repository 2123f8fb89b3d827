//! The router: every endpoint registered once — `routes!` adds the handler to the router
//! and its `#[utoipa::path]` operation to the OpenAPI document — in the group of the role
//! it needs, and the middleware around all of them. `/metrics` is not here: it is served
//! on the internal listener (`metrics_listener.rs`).
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::{Extension, Router};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::{require_admin, require_read, require_submit, Role};
use crate::error::ApiError;
use crate::handlers::{
    account_counts, account_credentials, account_list, accounts, audit, control, csv_upload, dead_groups, dead_letter, events, health,
    items, jobs, queues, schedules, submit,
};
use crate::middleware::{
    catch_panic::catch_panic, header_limits::header_limits, observe::observe, problem::as_problem, request_id::request_id, timeout::timeout,
};
use crate::openapi::{self, Document};
use crate::state::AppState;

/// A group of endpoints with their part of the document.
pub type Group = OpenApiRouter<AppState>;

/// Every endpoint, by the role it needs. `guard` puts a group behind its role check; it
/// is a parameter so the document can be built without a running service (tests pass
/// the group through unchanged: a guard adds nothing to the document).
pub fn endpoints(csv_bytes: usize, guard: impl Fn(Role, Group) -> Group) -> Group {
    let read = Group::default()
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(events::job_events))
        .routes(routes!(items::list_items))
        .routes(routes!(schedules::list_schedules))
        .routes(routes!(schedules::get_schedule))
        .routes(routes!(dead_letter::list_dead))
        .routes(routes!(dead_groups::list_dead_groups))
        .routes(routes!(queues::list_queues))
        .routes(routes!(account_list::list))
        .routes(routes!(accounts::get))
        .routes(routes!(accounts::limits))
        .routes(routes!(account_counts::counts))
        .routes(routes!(audit::list_audit));
    let submit = Group::default()
        .routes(routes!(submit::submit))
        // Admin, or submit for an account in the key's set: checked by the handler.
        .routes(routes!(accounts::create))
        .routes(routes!(account_credentials::replace))
        // Submit for the schedule's account (checked by the handler); reads need read.
        .routes(routes!(schedules::put_schedule, schedules::delete_schedule))
        .routes(routes!(csv_upload::upload).layer(DefaultBodyLimit::max(csv_bytes)));
    let admin = Group::default()
        .routes(routes!(control::cancel))
        .routes(routes!(control::retry))
        .routes(routes!(dead_letter::replay))
        .routes(routes!(dead_letter::discard))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume));
    let open = Group::default()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::serve));
    guard(Role::Read, read)
        .merge(guard(Role::Submit, submit))
        .merge(guard(Role::Admin, admin))
        .merge(open)
}

pub fn router(state: AppState) -> Router {
    let limits = *state.limits();
    // `route_layer`: a path no group has still answers 404 (and a wrong method 405)
    // without asking for a key.
    let guarded = |role, group: Group| match role {
        Role::Read => group.route_layer(from_fn_with_state(state.clone(), require_read)),
        Role::Submit => group.route_layer(from_fn_with_state(state.clone(), require_submit)),
        Role::Admin => group.route_layer(from_fn_with_state(state.clone(), require_admin)),
    };
    let (router, operations) = endpoints(limits.csv_bytes, guarded).split_for_parts();
    router
        .merge(crate::ui::routes(&state))
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .layer(Extension(Document::new(operations)))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(from_fn_with_state(state.clone(), timeout))
        .layer(from_fn(catch_panic))
        .layer(from_fn_with_state(limits.headers, header_limits))
        // outside the panic catcher and the header check: their answers are counted
        // and logged as any other
        .layer(from_fn_with_state(state.clone(), observe))
        .layer(from_fn(as_problem))
        .layer(from_fn(request_id))
        .with_state(state)
}

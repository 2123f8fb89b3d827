//! Every integration suite in one test binary (one link instead of one per suite): each
//! suite is a module named after its file, so `cargo test -p drover-tests --test
//! integration chaos::` runs one suite. Tests that change process-wide state (the
//! environment, the global log subscriber) run in a child process of their own.

// Shared by the suites.
mod api_support;
mod conformance;
mod jobs_support;

// The suites.
mod account_counts;
mod account_sync_e2e;
mod api_accounts;
mod api_audit;
mod api_control;
mod api_events;
mod api_items;
mod api_jobs;
mod api_ops;
mod api_schedules;
mod api_security;
mod api_tenants;
mod api_waiting;
mod attempt_layout;
mod callbacks_e2e;
mod chaos;
mod cli;
mod config_settings;
mod db_deadline;
mod dead_groups;
mod deploy_files;
mod durability;
mod failover;
mod failover_api;
mod fairness_e2e;
mod fairness_process;
mod fencing_e2e;
mod item_fencing;
mod items_retention;
mod jobs_e2e;
mod logs_process;
mod marketplace_client;
mod marketplace_e2e;
mod memory_limit;
mod parked_kill_process;
mod partitions;
mod queue_conformance;
mod queue_upgrade;
mod redis_settings;
mod redis_tls;
mod report_lines;
mod reshard;
mod resilience;
mod run_local;
mod runtime_leases;
mod script_library;
mod sealed_secrets;
mod seller_limits;
mod setup_scripts;
mod shard_hang;
mod simulator;
mod trace_context;
mod trim_cost;
mod ui_browser;
mod ui_console;
mod wake_ups;
mod worker_metrics;
mod worker_process;

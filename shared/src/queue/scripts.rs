//! The Lua scripts, each with the shared helpers prepended.
use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(&format!("{}\n{}", include_str!("lua/common.lua"), include_str!($file))));
    };
    // A script that also answers why a job waits (`waiting_of`).
    ($name:ident, $file:literal, waiting) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(&format!(
                "{}\n{}\n{}",
                include_str!("lua/common.lua"),
                include_str!("lua/waiting_of.lua"),
                include_str!($file)
            ))
        });
    };
}

script!(ENQUEUE, "lua/enqueue.lua", waiting);
script!(FETCH, "lua/fetch.lua");
script!(SETTLE, "lua/settle.lua");
script!(EXTEND, "lua/extend.lua");
script!(PROGRESS, "lua/progress.lua");
script!(CANCEL, "lua/cancel.lua");
script!(RETRY, "lua/retry.lua");
script!(REMOVE, "lua/remove.lua");
script!(LIST, "lua/list.lua");
script!(WAITING, "lua/waiting.lua", waiting);
script!(START, "lua/start.lua");
script!(CALLBACK_CLAIM, "lua/callback_claim.lua");
script!(CALLBACK_RECORD, "lua/callback_record.lua");
script!(QUEUE_STATS, "lua/queue_stats.lua");
script!(DEAD_GROUPS, "lua/dead_groups.lua");
script!(ACCOUNT_COUNTS, "lua/account_counts.lua");
script!(COUNT_QUEUED, "lua/count_queued.lua");

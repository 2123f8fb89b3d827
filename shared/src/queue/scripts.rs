//! The queue's Lua scripts, served as one Redis Functions library with the shared helpers
//! (common.lua, waiting_of.lua) loaded once per server (redis_conn/library.rs).
use std::sync::LazyLock;

use crate::redis_conn::{Access, Library, LuaScript, ScriptDef};

const COMMON: &str = include_str!("lua/common.lua");
const WAITING_OF: &str = include_str!("lua/waiting_of.lua");

macro_rules! scripts {
    ($($name:ident $file:literal $helpers:expr, $access:ident;)*) => {
        const DEFS: &[ScriptDef] = &[$(ScriptDef {
            name: $file,
            helpers: $helpers,
            body: include_str!(concat!("lua/", $file, ".lua")),
            access: Access::$access,
        }),*];
        /// Each script's place in `DEFS`.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        enum Index {
            $($name),*
        }
        $(pub static $name: LuaScript = LuaScript::new(&LIBRARY, Index::$name as usize);)*
    };
}

// name, file (lua/<file>.lua), the helpers it needs, what it does to the data (`Access`)
scripts! {
    ENQUEUE "enqueue" &[COMMON, WAITING_OF], Writes;
    FETCH "fetch" &[COMMON], Writes;
    SETTLE "settle" &[COMMON], Writes;
    EXTEND "extend" &[COMMON], Bounded;
    PROGRESS "progress" &[COMMON], Writes;
    CANCEL "cancel" &[COMMON], Writes;
    RETRY "retry" &[COMMON], Writes;
    REMOVE "remove" &[COMMON], Frees;
    LIST "list" &[COMMON], ReadsOnly;
    LIST_AHEAD "list_ahead" &[COMMON], ReadsOnly;
    WAITING "waiting" &[COMMON, WAITING_OF], ReadsOnly;
    START "start" &[COMMON], Bounded;
    CALLBACK_CLAIM "callback_claim" &[COMMON], Writes;
    CALLBACK_RECORD "callback_record" &[COMMON], Writes;
    QUEUE_STATS "queue_stats" &[COMMON], ReadsOnly;
    DEAD_GROUPS "dead_groups" &[COMMON], Writes;
    ACCOUNT_COUNTS "account_counts" &[COMMON], Writes;
    COUNT_QUEUED "count_queued" &[COMMON], Writes;
    ADOPT_LANES "adopt_lanes" &[COMMON], Writes;
    TRIM_LOCK "trim_lock" &[COMMON], Bounded;
}

/// Every queue script, as one library: each call runs `begin_call` (common.lua) first.
pub static LIBRARY: LazyLock<Library> = LazyLock::new(|| Library::new("drover", "begin_call(ARGV[1], KEYS)", DEFS));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_script_is_its_own_function() {
        for (script, name) in [(&ENQUEUE, "enqueue"), (&FETCH, "fetch"), (&COUNT_QUEUED, "count_queued")] {
            assert_eq!(script.function_name(), format!("{}_{name}", LIBRARY.name()));
        }
    }
}

//! The queue's Lua scripts, served as one Redis Functions library with the shared helpers
//! (common.lua, waiting_of.lua) loaded once per server (redis_conn/library.rs).
use std::sync::LazyLock;

use crate::redis_conn::{Library, LuaScript, ScriptDef};

const COMMON: &str = include_str!("lua/common.lua");
const WAITING_OF: &str = include_str!("lua/waiting_of.lua");

macro_rules! scripts {
    ($($name:ident $file:literal $helpers:expr, $reads_only:literal;)*) => {
        const DEFS: &[ScriptDef] = &[$(ScriptDef {
            name: $file,
            helpers: $helpers,
            body: include_str!(concat!("lua/", $file, ".lua")),
            reads_only: $reads_only,
        }),*];
        /// Each script's place in `DEFS`.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        enum Index {
            $($name),*
        }
        $(pub static $name: LuaScript = LuaScript::new(&LIBRARY, Index::$name as usize);)*
    };
}

// name, file (lua/<file>.lua), the helpers it needs, whether it only reads
scripts! {
    ENQUEUE "enqueue" &[COMMON, WAITING_OF], false;
    FETCH "fetch" &[COMMON], false;
    SETTLE "settle" &[COMMON], false;
    EXTEND "extend" &[COMMON], false;
    PROGRESS "progress" &[COMMON], false;
    CANCEL "cancel" &[COMMON], false;
    RETRY "retry" &[COMMON], false;
    REMOVE "remove" &[COMMON], false;
    LIST "list" &[COMMON], true;
    WAITING "waiting" &[COMMON, WAITING_OF], true;
    START "start" &[COMMON], false;
    CALLBACK_CLAIM "callback_claim" &[COMMON], false;
    CALLBACK_RECORD "callback_record" &[COMMON], false;
    QUEUE_STATS "queue_stats" &[COMMON], true;
    DEAD_GROUPS "dead_groups" &[COMMON], false;
    ACCOUNT_COUNTS "account_counts" &[COMMON], false;
    COUNT_QUEUED "count_queued" &[COMMON], false;
    ADOPT_LANES "adopt_lanes" &[COMMON], false;
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

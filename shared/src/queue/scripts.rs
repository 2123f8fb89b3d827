//! The queue's Lua scripts, served as one Redis Functions library with the shared helpers
//! (common.lua, waiting_of.lua) loaded once per server (redis_conn/library.rs).
use std::sync::LazyLock;

use crate::redis_conn::{Library, LuaScript, ScriptDef};

const COMMON: &str = include_str!("lua/common.lua");
const WAITING_OF: &str = include_str!("lua/waiting_of.lua");

macro_rules! scripts {
    ($($index:literal $name:ident $file:literal $helpers:expr, $reads_only:literal;)*) => {
        const DEFS: &[ScriptDef] = &[$(ScriptDef {
            name: $file,
            helpers: $helpers,
            body: include_str!(concat!("lua/", $file, ".lua")),
            reads_only: $reads_only,
        }),*];
        $(pub static $name: LuaScript = LuaScript::new(&LIBRARY, $index);)*
        #[cfg(test)]
        const INDICES: &[usize] = &[$($index),*];
    };
}

scripts! {
    0 ENQUEUE "enqueue" &[COMMON, WAITING_OF], false;
    1 FETCH "fetch" &[COMMON], false;
    2 SETTLE "settle" &[COMMON], false;
    3 EXTEND "extend" &[COMMON], false;
    4 PROGRESS "progress" &[COMMON], false;
    5 CANCEL "cancel" &[COMMON], false;
    6 RETRY "retry" &[COMMON], false;
    7 REMOVE "remove" &[COMMON], false;
    8 LIST "list" &[COMMON], true;
    9 WAITING "waiting" &[COMMON, WAITING_OF], true;
    10 START "start" &[COMMON], false;
    11 CALLBACK_CLAIM "callback_claim" &[COMMON], false;
    12 CALLBACK_RECORD "callback_record" &[COMMON], false;
    13 QUEUE_STATS "queue_stats" &[COMMON], true;
    14 DEAD_GROUPS "dead_groups" &[COMMON], false;
    15 ACCOUNT_COUNTS "account_counts" &[COMMON], false;
    16 COUNT_QUEUED "count_queued" &[COMMON], false;
}

/// Every queue script, as one library: each call runs `begin_call` (common.lua) first.
pub static LIBRARY: LazyLock<Library> = LazyLock::new(|| Library::new("drover", "begin_call(ARGV[1])", DEFS));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_script_is_its_own_function() {
        assert_eq!(INDICES, (0..DEFS.len()).collect::<Vec<_>>());
        for (script, name) in [(&ENQUEUE, "enqueue"), (&FETCH, "fetch"), (&COUNT_QUEUED, "count_queued")] {
            assert_eq!(script.function_name(), format!("{}_{name}", LIBRARY.name()));
        }
    }
}

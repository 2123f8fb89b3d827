//! Lua scripts served as one Redis Functions library. Helpers shared by the scripts are
//! compiled and defined once per server (`FUNCTION LOAD`) instead of on every call, as a
//! prelude prepended to an `EVALSHA` script is (2–3 µs of Redis time a call); a call is
//! an `FCALL`. A server that refuses `FUNCTION LOAD` (an ACL without it) runs the same
//! scripts by `EVALSHA`, each with the helpers prepended.
//!
//! The library's name carries a hash of its source, so processes of two releases each
//! keep their own during a rolling upgrade. A server that lost it (restarted without
//! persistence, `FUNCTION FLUSH`, a new cluster node) answers "Function not found": the
//! call loads the library and is sent once more, as a script call does after NOSCRIPT.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult, Script, ToRedisArgs};
use sha2::{Digest, Sha256};

/// One script of a library: its name, the helpers it needs (each a piece of Lua that
/// only defines locals; pieces shared by several scripts appear once in the library),
/// its body, and what it does to the data (which says whether Redis runs it at its
/// memory limit).
pub struct ScriptDef {
    pub name: &'static str,
    pub helpers: &'static [&'static str],
    pub body: &'static str,
    pub access: Access,
}

/// What a script does to the data, as its function's flags tell Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Writes: refused at `maxmemory`, before it runs.
    Writes,
    /// Only reads (`no-writes`): served at `maxmemory` too.
    ReadsOnly,
    /// Removes data, writing a little on the way (`allow-oom`): served at `maxmemory`,
    /// where it is what frees memory.
    Frees,
    /// Writes only a few fixed-size values that keep what is already there, such as a
    /// lease's renewal (`allow-oom`): served at `maxmemory`, so running jobs keep their
    /// leases while the queue is full.
    Bounded,
}

impl Access {
    fn flags(self) -> &'static str {
        match self {
            Access::Writes => "{}",
            Access::ReadsOnly => "{'no-writes'}",
            Access::Frees | Access::Bounded => "{'allow-oom'}",
        }
    }
}

/// A set of scripts, loaded as one library or, where a server refuses that, one by one.
pub struct Library {
    name: String,
    source: String,
    calls: Vec<(String, Script)>,
    /// Set once a server refused `FUNCTION LOAD`: every call is an `EVALSHA` from then on.
    by_eval: AtomicBool,
}

impl Library {
    /// `prefix` names the library (`<prefix>_<hash>`); `begin` is the Lua statement every
    /// script runs before its body (e.g. setting per-call state from `ARGV`).
    pub fn new(prefix: &str, begin: &str, defs: &[ScriptDef]) -> Self {
        let mut helpers: Vec<&str> = Vec::new();
        for d in defs {
            for h in d.helpers {
                if !helpers.contains(h) {
                    helpers.push(h);
                }
            }
        }
        let mut hasher = Sha256::new();
        hasher.update(begin);
        for h in &helpers {
            hasher.update(h);
        }
        for d in defs {
            hasher.update([d.access as u8]);
            hasher.update(d.name);
            hasher.update(d.body);
        }
        let name = format!("{prefix}_{}", &hex::encode(hasher.finalize())[..12]);
        let mut source = format!("#!lua name={name}\n{}", helpers.join("\n"));
        for d in defs {
            let flags = d.access.flags();
            source.push_str(&format!(
                "\nredis.register_function{{function_name = '{name}_{script}', flags = {flags}, callback = function(KEYS, ARGV)\n{begin}\n{body}\nend}}\n",
                script = d.name,
                body = d.body
            ));
        }
        let calls = defs
            .iter()
            .map(|d| {
                let text = format!("{}\n{begin}\n{}", d.helpers.join("\n"), d.body);
                (format!("{name}_{}", d.name), Script::new(&text))
            })
            .collect();
        Self {
            name,
            source,
            calls,
            by_eval: AtomicBool::new(false),
        }
    }

    /// The library's name on the server (`<prefix>_<hash of its source>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Each script's own name (its file's), in order.
    pub fn script_names(&self) -> impl Iterator<Item = &str> {
        self.calls.iter().map(|(f, _)| &f[self.name.len() + 1..])
    }

    /// Whether calls go by `EVALSHA` (a server refused `FUNCTION LOAD`).
    pub fn by_eval(&self) -> bool {
        self.by_eval.load(Ordering::Relaxed)
    }

    /// Makes the scripts known to the server behind `conn` (on a cluster: every primary).
    /// A server that refuses `FUNCTION LOAD` (no such command, or not permitted) is told
    /// the scripts one by one instead, and calls go by `EVALSHA` from then on.
    pub async fn load(&self, conn: &mut impl ConnectionLike) -> RedisResult<()> {
        if !self.by_eval() {
            let loaded: RedisResult<String> = redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(&self.source)
                .query_async(conn)
                .await;
            match loaded {
                Ok(_) => return Ok(()),
                Err(e) if refuses_functions(&e) => {
                    if !self.by_eval.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            library = %self.name,
                            error = %e,
                            "Redis refused FUNCTION LOAD; the scripts run by EVALSHA instead (2-3 µs more Redis time a call)"
                        );
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for (_, script) in &self.calls {
            script.load_async(conn).await?;
        }
        Ok(())
    }
}

/// Whether the server answered that it has not got a script or function a call named
/// (it restarted, was flushed, or is a new node), or that it will not take `FCALL` (no
/// Functions, or an ACL without it): load the library — or fall back to `EVALSHA` — and
/// call again. For a pipeline, whether any of its commands was answered so.
pub fn is_missing(e: &RedisError) -> bool {
    let Some(errors) = e.clone().into_server_errors() else {
        return false;
    };
    errors.iter().any(|(_, err)| {
        let details = err.details().unwrap_or_default();
        match err.kind() {
            Some(redis::ServerErrorKind::NoScript) => true,
            Some(redis::ServerErrorKind::NoPerm) => details.to_ascii_lowercase().contains("fcall"),
            _ => details.starts_with("Function not found") || refuses_command(details, "fcall"),
        }
    })
}

/// An "unknown command" answer about `command`.
fn refuses_command(details: &str, command: &str) -> bool {
    let d = details.to_ascii_lowercase();
    d.contains("unknown command") && d.contains(command)
}

/// `FUNCTION LOAD` is not permitted to this user, or the server has no Functions.
fn refuses_functions(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) || refuses_command(&e.to_string(), "function")
}

/// One script of a [`Library`], to be called.
pub struct LuaScript {
    library: &'static LazyLock<Library>,
    index: usize,
}

impl LuaScript {
    /// The `index`-th script given to the library.
    pub const fn new(library: &'static LazyLock<Library>, index: usize) -> Self {
        Self { library, index }
    }

    /// The library it belongs to.
    fn library(&self) -> &'static Library {
        LazyLock::force(self.library)
    }

    /// Its name as a function (`<library>_<script>`).
    pub fn function_name(&self) -> &'static str {
        &self.library().calls[self.index].0
    }

    /// A call of it, starting with its first key.
    pub fn key<T: ToRedisArgs>(&'static self, key: T) -> Call {
        let mut call = self.prepare_invoke();
        call.key(key);
        call
    }

    /// A call of it with no keys or arguments yet.
    pub fn prepare_invoke(&'static self) -> Call {
        Call {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// One call of a [`LuaScript`]: its keys and arguments.
pub struct Call {
    script: &'static LuaScript,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call {
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// The command: `FCALL`, or `EVALSHA` where the server refused the library.
    pub fn cmd(&self) -> Cmd {
        let library = self.script.library();
        let mut cmd = if library.by_eval() {
            let mut c = redis::cmd("EVALSHA");
            c.arg(library.calls[self.script.index].1.get_hash());
            c
        } else {
            let mut c = redis::cmd("FCALL");
            c.arg(self.script.function_name());
            c
        };
        cmd.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }

    /// Adds the call to `pipe`; a caller sending it handles [`is_missing`] by loading the
    /// library ([`Library::load`]) and sending the pipeline once more.
    pub fn add_to(&self, pipe: &mut Pipeline) {
        pipe.add_command(self.cmd());
    }

    /// Sends the call, loading the library first when the server has not got it.
    pub async fn invoke_async<T: FromRedisValue>(&self, conn: &mut impl ConnectionLike) -> RedisResult<T> {
        match self.cmd().query_async(conn).await {
            Err(e) if is_missing(&e) => {
                self.script.library().load(conn).await?;
                self.cmd().query_async(conn).await
            }
            r => r,
        }
    }
}

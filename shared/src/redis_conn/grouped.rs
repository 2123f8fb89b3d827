//! Pipelines over keys of many queues. A single server takes them as one pipeline (one
//! round trip); a cluster refuses a pipeline that spans slots, so there the items are
//! grouped by hash tag and each group runs as its own pipeline, all at once. Replies come
//! back per item, in the order given — or per pipeline, with each one's own failure.
use std::collections::HashMap;

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use redis::{Cmd, Pipeline, RedisResult, Value};

use super::library::{is_missing, Library};
use super::RedisConn;

/// The hash tag of `key` (`{…}`), or the whole key when it has none.
fn tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// Runs, for each of `keys`, the commands `add(pipe, i)` puts in the pipeline (all of
/// them on keys with `keys[i]`'s hash tag), and returns each item's replies. When Redis
/// has not got the scripts of `library` the pipeline calls (after a restart or a flush)
/// the library is loaded and the pipeline sent once more.
pub async fn query_grouped(
    conn: &RedisConn,
    keys: &[String],
    library: Option<&Library>,
    add: impl Fn(&mut Pipeline, usize),
) -> RedisResult<Vec<Vec<Value>>> {
    Ok(query_grouped_then(conn, keys, library, add, None).await?.0)
}

/// [`query_grouped`], with `tail` sent at the end of every pipeline (on a cluster: on
/// the shard the pipeline went to), e.g. a `WAIT` for the writes before it; its replies
/// come back one per pipeline. Any pipeline's failure fails the whole call (the others'
/// writes may have been applied: callers that must know which use
/// [`query_grouped_each`]).
pub async fn query_grouped_then(
    conn: &RedisConn,
    keys: &[String],
    library: Option<&Library>,
    add: impl Fn(&mut Pipeline, usize),
    tail: Option<&Cmd>,
) -> RedisResult<(Vec<Vec<Value>>, Vec<Value>)> {
    let mut out: Vec<Vec<Value>> = vec![Vec::new(); keys.len()];
    let mut tails = Vec::new();
    for g in query_grouped_each(conn, keys, library, add, tail).await {
        let (per_item, t) = g.result?;
        for (i, r) in g.items.iter().zip(per_item) {
            out[*i] = r;
        }
        tails.extend(t);
    }
    Ok((out, tails))
}

/// One pipeline of [`query_grouped_each`]: the items it carried and what it answered —
/// each item's replies and the tail's reply — or the error that ended it.
pub struct GroupReply {
    pub items: Vec<usize>,
    pub result: RedisResult<(Vec<Vec<Value>>, Option<Value>)>,
}

/// Like [`query_grouped_then`], but each pipeline (each shard's, on a cluster) answers
/// on its own: one shard that is down or cannot acknowledge a write does not hide what
/// the others did.
pub async fn query_grouped_each(
    conn: &RedisConn,
    keys: &[String],
    library: Option<&Library>,
    add: impl Fn(&mut Pipeline, usize),
    tail: Option<&Cmd>,
) -> Vec<GroupReply> {
    grouped(conn, keys, library, add, tail, Refusals::FailThePipeline, None).await
}

/// Like [`query_grouped_each`], but a command Redis refuses (a script's error, a write
/// refused at the memory limit) fails only its own item: its reply is the
/// `Value::ServerError`, for the caller, and the other items' replies stand. (On one
/// server every queue's commands share one pipeline, and one queue's refusal must not
/// hide what the others did.) Scripts the server has not got still fail the pipeline,
/// which is sent again once they are loaded.
///
/// And once one pipeline has answered, the others have `straggle` more to answer; one
/// still out then answers a timeout (its request is dropped). For calls whose replies
/// age while they wait: a fetch's leases run out from when its scripts ran, so the
/// healthy shards' leases must not wait on a shard that hangs (found by the chaos audit
/// of 2026-12-07, third: they waited the connection's 5 s timeout, older than the
/// fence, and were handed back unrun).
pub async fn query_grouped_items_or_stragglers(
    conn: &RedisConn,
    keys: &[String],
    library: Option<&Library>,
    add: impl Fn(&mut Pipeline, usize),
    tail: Option<&Cmd>,
    straggle: Duration,
) -> Vec<GroupReply> {
    grouped(conn, keys, library, add, tail, Refusals::PerItem, Some(straggle)).await
}

/// What a command's refusal fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refusals {
    FailThePipeline,
    PerItem,
}

async fn grouped(
    conn: &RedisConn,
    keys: &[String],
    library: Option<&Library>,
    add: impl Fn(&mut Pipeline, usize),
    tail: Option<&Cmd>,
    refusals: Refusals,
    straggle: Option<Duration>,
) -> Vec<GroupReply> {
    let groups: Vec<Vec<usize>> = if conn.is_cluster() {
        let mut by_tag: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut order = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let t = tag(k);
            by_tag.entry(t).or_insert_with(|| {
                order.push(t);
                Vec::new()
            });
            by_tag.get_mut(t).expect("inserted above").push(i);
        }
        order.into_iter().map(|t| by_tag.remove(t).unwrap_or_default()).collect()
    } else {
        vec![(0..keys.len()).collect()]
    };
    let runs = groups
        .iter()
        .map(|items| run_group(conn.clone(), items, library, &add, tail, refusals));
    let replies = match straggle {
        Some(after) if groups.len() > 1 => first_then_within(runs, after).await,
        _ => join_all(runs).await,
    };
    groups
        .into_iter()
        .zip(replies)
        .map(|(items, result)| GroupReply { items, result })
        .collect()
}

/// Each of `runs`' answers, in order; once the first has answered, those still out
/// `after` later answer a timeout.
async fn first_then_within<T>(
    runs: impl Iterator<Item = impl Future<Output = RedisResult<T>>>,
    after: Duration,
) -> Vec<RedisResult<T>> {
    let mut pending: FuturesUnordered<_> = runs.enumerate().map(|(i, run)| async move { (i, run.await) }).collect();
    let mut out: Vec<Option<RedisResult<T>>> = (0..pending.len()).map(|_| None).collect();
    let mut deadline = None;
    loop {
        let next = match deadline {
            None => pending.next().await,
            Some(at) => match tokio::time::timeout_at(at, pending.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some((i, answer)) = next else { break };
        out[i] = Some(answer);
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + after);
    }
    out.into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                let late = format!("no answer within {} ms of the other shards'", after.as_millis());
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, late).into())
            })
        })
        .collect()
}

async fn run_group(
    mut conn: RedisConn,
    items: &[usize],
    library: Option<&Library>,
    add: &impl Fn(&mut Pipeline, usize),
    tail: Option<&Cmd>,
    refusals: Refusals,
) -> RedisResult<(Vec<Vec<Value>>, Option<Value>)> {
    let mut counts = Vec::with_capacity(items.len());
    let build = |counts: &mut Vec<usize>| {
        counts.clear();
        let mut pipe = redis::pipe();
        for i in items {
            let before = pipe.cmd_iter().count();
            add(&mut pipe, *i);
            counts.push(pipe.cmd_iter().count() - before);
        }
        if let Some(t) = tail {
            // The tail's own refusal (a WAITAOF once AOF is off) must not hide what the
            // writes before it answered: it comes back as its reply, for the caller.
            pipe.add_command(t.clone()).ignore_errors();
        }
        if refusals == Refusals::PerItem {
            // (for the whole pipeline: each refusal comes back as its item's reply)
            pipe.ignore_errors();
        }
        pipe
    };
    let send = |pipe: Pipeline, mut conn: RedisConn| async move {
        let mut flat: Vec<Value> = pipe.query_async(&mut conn).await?;
        let tail_reply = if tail.is_some() { flat.pop() } else { None };
        // With the tail's errors let through, the writes' own still fail the pipeline
        // (per item, only a script the server has not got does).
        for v in &flat {
            if let Value::ServerError(e) = v {
                let e: redis::RedisError = e.clone().into();
                if refusals == Refusals::FailThePipeline || is_missing(&e) {
                    return Err(e);
                }
            }
        }
        Ok((flat, tail_reply))
    };
    let (flat, tail_reply) = match send(build(&mut counts), conn.clone()).await {
        Ok(v) => v,
        Err(e) => match library {
            // built again: the calls may go by EVALSHA now (the server refused the library)
            Some(l) if is_missing(&e) => {
                l.load(&mut conn).await?;
                send(build(&mut counts), conn).await?
            }
            _ => return Err(e),
        },
    };
    let mut it = flat.into_iter();
    Ok((counts.into_iter().map(|n| it.by_ref().take(n).collect()).collect(), tail_reply))
}

#[cfg(test)]
mod tests {
    use super::tag;

    #[test]
    fn the_hash_tag_is_the_first_braced_part() {
        assert_eq!(tag("drover:{sync:3}:job:x"), "sync:3");
        assert_eq!(tag("drover:workers:w1"), "drover:workers:w1");
        assert_eq!(tag("a{}b{c}"), "a{}b{c}");
    }
}

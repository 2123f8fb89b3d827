//! Pipelines over keys of many queues. A single server takes them as one pipeline (one
//! round trip); a cluster refuses a pipeline that spans slots, so there the items are
//! grouped by hash tag and each group runs as its own pipeline, all at once. Replies come
//! back per item, in the order given — or per pipeline, with each one's own failure.
use std::collections::HashMap;

use std::time::Duration;

use futures::future::{join_all, select_all};
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
    /// Cut off after the others' straggle ([`query_grouped_items_or_stragglers`]): its
    /// pipeline, still waiting for its answer, for the caller to see to (a fetch gives
    /// back what it leased).
    pub late: Option<Late>,
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
/// And once one pipeline has answered, the others have `straggle.after_first` more to
/// answer, and on a cluster none has more than `straggle.within` from when it was sent;
/// one still out then answers a timeout, and comes with its pipeline's task, which goes
/// on to its answer (`GroupReply::late`, for the caller to see to). For calls whose
/// replies age while they wait: a fetch's leases run out from when its scripts ran, so
/// the healthy shards' leases must not wait on a shard that hangs (found by the chaos
/// audit of 2026-12-07, third: they waited the connection's 5 s timeout, older than the
/// fence, and were handed back unrun), nor may a call that reached only a hung shard
/// hold its caller the connection's 5 s (found on the sixth stop of 2026-12-07).
pub async fn query_grouped_items_or_stragglers(
    conn: &RedisConn,
    keys: &[String],
    library: Option<&Library>,
    add: impl Fn(&mut Pipeline, usize),
    tail: Option<&Cmd>,
    straggle: Straggle,
) -> Vec<GroupReply> {
    grouped(conn, keys, library, add, tail, Refusals::PerItem, Some(straggle)).await
}

/// How long [`query_grouped_items_or_stragglers`] waits for a pipeline that has not
/// answered.
#[derive(Debug, Clone, Copy)]
pub struct Straggle {
    /// After the first pipeline's answer.
    pub after_first: Duration,
    /// On a cluster, after the call was sent (on one server every item shares one
    /// pipeline, which the connection's own timeout bounds).
    pub within: Duration,
}

/// What a pipeline answered: each item's replies and the tail's reply.
pub type Answer = RedisResult<(Vec<Vec<Value>>, Option<Value>)>;

/// A pipeline sent on its own task, still waiting for its [`Answer`].
pub type Late = tokio::task::JoinHandle<Answer>;

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
    straggle: Option<Straggle>,
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
    if let Some(straggle) = straggle.filter(|_| groups.len() > 1 || conn.is_cluster()) {
        return first_then_within(conn, groups, library, &add, tail, refusals, straggle).await;
    }
    let runs = groups
        .iter()
        .map(|items| run_group(conn.clone(), items, library, &add, tail, refusals));
    let replies = join_all(runs).await;
    groups
        .into_iter()
        .zip(replies)
        .map(|(items, result)| GroupReply { items, result, late: None })
        .collect()
}

/// Each group's pipeline sent on its own task; once the first has answered, those still
/// out `straggle.after_first` later (and any still out `straggle.within` after the send)
/// answer a timeout, and come with their task ([`GroupReply::late`]), which goes on to
/// its answer. A group whose server had not got the library is sent again once it is
/// loaded, as [`run_group`] does.
#[allow(clippy::too_many_arguments)]
async fn first_then_within(
    conn: &RedisConn,
    groups: Vec<Vec<usize>>,
    library: Option<&Library>,
    add: &impl Fn(&mut Pipeline, usize),
    tail: Option<&Cmd>,
    refusals: Refusals,
    straggle: Straggle,
) -> Vec<GroupReply> {
    let sent = tokio::time::Instant::now();
    let mut tasks: Vec<Late> = groups
        .iter()
        .map(|items| {
            let (pipe, counts) = build(items, add, tail, refusals);
            let (conn, has_tail) = (conn.clone(), tail.is_some());
            tokio::spawn(async move {
                let (flat, tail_reply) = send(pipe, conn, has_tail, refusals).await?;
                Ok((split(flat, counts), tail_reply))
            })
        })
        .collect();
    let mut answers: Vec<Option<Answer>> = groups.iter().map(|_| None).collect();
    let mut deadline = sent + straggle.within;
    // Whether the first answer's cut-off came before the one from the send.
    let mut cut_after_first = false;
    let mut answered = false;
    loop {
        let open: Vec<usize> = (0..tasks.len()).filter(|i| answers[*i].is_none()).collect();
        if open.is_empty() {
            break;
        }
        let next = {
            let any = select_all(tasks.iter_mut().enumerate().filter(|(i, _)| answers[*i].is_none()).map(|(_, t)| t));
            tokio::time::timeout_at(deadline, any).await.ok()
        };
        let Some((joined, k, _)) = next else { break };
        let answer = joined.unwrap_or_else(|e| Err(std::io::Error::other(format!("its pipeline's task ended: {e}")).into()));
        answers[open[k]] = Some(answer);
        if !answered {
            answered = true;
            let after_first = tokio::time::Instant::now() + straggle.after_first;
            cut_after_first = after_first < deadline;
            deadline = deadline.min(after_first);
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((items, answer), task) in groups.into_iter().zip(answers).zip(tasks.drain(..)) {
        let reply = match answer {
            Some(Err(e)) if library.is_some() && is_missing(&e) => {
                let result = run_group(conn.clone(), &items, library, add, tail, refusals).await;
                GroupReply { items, result, late: None }
            }
            Some(result) => GroupReply { items, result, late: None },
            None => {
                let late = if cut_after_first {
                    format!("no answer within {} ms of the other shards'", straggle.after_first.as_millis())
                } else {
                    format!("no answer within {} ms", straggle.within.as_millis())
                };
                GroupReply {
                    items,
                    result: Err(std::io::Error::new(std::io::ErrorKind::TimedOut, late).into()),
                    late: Some(task),
                }
            }
        };
        out.push(reply);
    }
    out
}

/// `items`' pipeline (and the tail's command, if any), with how many replies each item
/// gets.
fn build(items: &[usize], add: &impl Fn(&mut Pipeline, usize), tail: Option<&Cmd>, refusals: Refusals) -> (Pipeline, Vec<usize>) {
    let mut counts = Vec::with_capacity(items.len());
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
    (pipe, counts)
}

/// Sends a pipeline: its replies and, with a tail, the tail's apart.
async fn send(pipe: Pipeline, mut conn: RedisConn, has_tail: bool, refusals: Refusals) -> RedisResult<(Vec<Value>, Option<Value>)> {
    let mut flat: Vec<Value> = pipe.query_async(&mut conn).await?;
    let tail_reply = if has_tail { flat.pop() } else { None };
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
}

/// The flat replies, each item's `counts` of them.
fn split(flat: Vec<Value>, counts: Vec<usize>) -> Vec<Vec<Value>> {
    let mut it = flat.into_iter();
    counts.into_iter().map(|n| it.by_ref().take(n).collect()).collect()
}

async fn run_group(
    mut conn: RedisConn,
    items: &[usize],
    library: Option<&Library>,
    add: &impl Fn(&mut Pipeline, usize),
    tail: Option<&Cmd>,
    refusals: Refusals,
) -> RedisResult<(Vec<Vec<Value>>, Option<Value>)> {
    let (pipe, mut counts) = build(items, add, tail, refusals);
    let (flat, tail_reply) = match send(pipe, conn.clone(), tail.is_some(), refusals).await {
        Ok(v) => v,
        Err(e) => match library {
            // built again: the calls may go by EVALSHA now (the server refused the library)
            Some(l) if is_missing(&e) => {
                l.load(&mut conn).await?;
                let (pipe, again) = build(items, add, tail, refusals);
                counts = again;
                send(pipe, conn, tail.is_some(), refusals).await?
            }
            _ => return Err(e),
        },
    };
    Ok((split(flat, counts), tail_reply))
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

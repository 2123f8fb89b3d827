//! Listings newest first across kinds and partitions (`JobStore::list` and the summary
//! listing): each queue's index is read from the cursor's position for it, the entries
//! merged by score, and the next cursor keeps a position per queue that goes on.
use super::{scripts, Cursor, ListQuery, QueueKeys, RedisStore, StoreError};
use crate::job::{JobId, JobKind, JobState};

/// How many entries past a filtered page's scan cap are read ahead (a margin for the
/// entries that come in between the read-ahead and the page).
const READ_AHEAD_MARGIN: usize = 64;
/// Most running jobs of one queue a listing of running jobs reads.
const MAX_RUNNING: isize = 10_000;

/// A (score, id) position in an index.
type Position = (String, String);
/// One queue: a kind and a partition of it.
type Queue = (JobKind, Option<u16>);

/// One queue's page as its index was read: (id, score) pairs, the last position scanned,
/// whether the index goes on, whether the account's index of all its jobs stood in for
/// its own index of a group, and how many records a filter read to choose the pairs.
type QueuePage = (Vec<(String, String)>, Option<Position>, bool, bool, u64);

/// One page of a listing: its job ids, the next page's cursor, and how many job records
/// its filter read to choose them (none when unfiltered): the work a key's read budget
/// is charged for.
pub(super) struct PageIds {
    pub ids: Vec<JobId>,
    pub next: Option<Cursor>,
    pub records_read: u64,
}

/// How one queue's index was read for a page.
struct Scan {
    queue: Queue,
    by_account: bool,
    after: Option<Position>,
    offered: usize,
    last_scanned: Option<Position>,
    more: bool,
}

impl RedisStore {
    /// Read one page of one queue's index ([`QueuePage`]). `by_account` is whether the
    /// account's index stood in for its group's on the previous page (`None` on the first).
    async fn list_one(
        &self,
        keys: &QueueKeys,
        query: &ListQuery,
        after: Option<(&str, &str)>,
        by_account: Option<bool>,
    ) -> Result<QueuePage, StoreError> {
        // With an account, walk that account's own index and filter by state: a scoped
        // listing never walks (or is slowed by) another tenant's entries (finding M9).
        // A dead-letter group's own index holds only its dead jobs, and each account has
        // its own index of the group, read when it is whole: the trimmer's backfill has
        // put the jobs grouped before those indexes into them, and it holds as many as
        // the account's count of the group (a job killed by a previous release's script
        // during an upgrade is counted but not indexed). Otherwise the account's index
        // of all its jobs is walked for its dead jobs of the group, never the group's
        // shared index (its other tenants' entries would slow the page and its cursor
        // would tell of them). A listing keeps to the index its first page read: the two
        // are ordered differently (by death, by submission).
        if query.state == Some(JobState::Running) && query.account_id.is_none() && query.group.is_none() {
            return self.list_running(keys, query, after).await;
        }
        let mut conn = self.connection();
        let own_group_index = match (&query.group, &query.account_id, by_account) {
            (Some(_), Some(_), Some(on_account)) => !on_account,
            (Some(sig), Some(acct), None) => {
                let (done, indexed, counted): (i64, i64, Option<i64>) = redis::pipe()
                    .exists(keys.key("dgjdone"))
                    .zcard(keys.key(&format!("dgj:{sig}:{acct}")))
                    .hget(keys.key(&format!("dga:{acct}")), sig)
                    .query_async(&mut conn)
                    .await?;
                done == 1 && indexed == counted.unwrap_or(0)
            }
            _ => false,
        };
        let on_account = query.group.is_some() && query.account_id.is_some() && !own_group_index;
        let group_filter = if on_account { query.group.as_deref().unwrap_or("") } else { "" };
        let (index, state_filter, account_filter) = match (&query.group, query.state, &query.account_id) {
            (Some(sig), _, Some(acct)) if own_group_index => (keys.key(&format!("dgj:{sig}:{acct}")), "", ""),
            (Some(_), _, Some(acct)) => (keys.key(&format!("acct:{acct}")), "dead", ""),
            (Some(sig), _, None) => (keys.key(&format!("dg:{sig}")), "", ""),
            (None, st, Some(acct)) => (keys.key(&format!("acct:{acct}")), st.map_or("", JobState::as_str), ""),
            // Queued jobs are indexed only by their lanes: read the newest jobs for them
            // (a queue runs its oldest first, so the queued ones are near the top).
            (None, Some(JobState::Queued), None) => (keys.key("all"), "queued", ""),
            (None, Some(JobState::Scheduled), None) => (keys.key("scheduled"), "scheduled", ""),
            (None, Some(JobState::Retrying), None) => (keys.key("retrying"), "", ""),
            (None, Some(st), None) => (keys.key(&format!("state:{st}")), "", ""),
            (None, None, None) => (keys.key("all"), "", ""),
        };
        let (max_score, cursor_id) = after.unwrap_or(("+inf", ""));
        let cap = query.limit.saturating_mul(20).max(2000);
        let filtered = !state_filter.is_empty() || !account_filter.is_empty() || query.error_class.is_some() || on_account;
        let mut reply: (Vec<String>, String, String, i64, u64) = Default::default();
        // A filtered page reads each entry's record: the entries it may walk are read
        // ahead (a few more than the cap, for the cursor's ties), so the script declares
        // their records. Made again when every entry read ahead went meanwhile.
        for _ in 0..3 {
            let read = cap + READ_AHEAD_MARGIN;
            let ahead: Vec<(String, String)> = if filtered {
                // From the first entry after the cursor, its ties already shown passed
                // over (`list_ahead.lua`).
                let flat: Vec<String> = scripts::LIST_AHEAD
                    .key(&index)
                    .arg(keys.prefix())
                    .arg(max_score)
                    .arg(cursor_id)
                    .arg(read)
                    .invoke_async(&mut conn)
                    .await?;
                flat.chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0].clone(), c[1].clone()))
                    .collect()
            } else {
                Vec::new()
            };
            let end = match ahead.last() {
                Some((id, score)) if ahead.len() == read => (score.as_str(), id.as_str()),
                _ => ("", ""),
            };
            let mut call = scripts::LIST.key(&index);
            for (id, _) in &ahead {
                call.key(keys.key(&format!("job:{id}")));
            }
            call.arg(keys.prefix())
                .arg(max_score)
                .arg(cursor_id)
                .arg(query.limit)
                .arg(state_filter)
                .arg(account_filter)
                .arg(cap)
                .arg(query.error_class.as_deref().unwrap_or(""))
                .arg(end.0)
                .arg(end.1)
                .arg(group_filter);
            reply = call.invoke_async(&mut conn).await?;
            if !(reply.0.is_empty() && reply.2.is_empty() && reply.3 == 1) {
                break;
            }
        }
        let (flat, last_score, last_id, more, walked) = reply;
        let pairs = flat
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        let last = (!last_id.is_empty()).then_some((last_score, last_id));
        let records_read = if filtered { walked } else { 0 };
        Ok((pairs, last, more == 1, on_account, records_read))
    }

    /// One page of one queue's running jobs (leased, started or not), newest first by
    /// when they were made. Their index, `active`, is ordered by lease expiry, which
    /// every renewal moves: a position in it means nothing a heartbeat later (before
    /// 2026-12-06 later pages missed most running jobs). So each page reads the whole
    /// index — the leases in flight, bounded by the workers' slots; [`MAX_RUNNING`] of
    /// them at most — and orders it by the ids' time.
    async fn list_running(&self, keys: &QueueKeys, query: &ListQuery, after: Option<(&str, &str)>) -> Result<QueuePage, StoreError> {
        let mut conn = self.connection();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys.key("active"))
            .arg(0)
            .arg(MAX_RUNNING - 1)
            .query_async(&mut conn)
            .await?;
        let after = after.and_then(|(score, id)| Some((score.parse::<u64>().ok()?, id.to_owned())));
        let mut entries: Vec<(u64, JobId)> = ids
            .into_iter()
            .filter_map(|id| id.parse::<JobId>().ok())
            .map(|id| (id.made_ms(), id))
            .filter(|(ms, id)| after.as_ref().is_none_or(|(s, a)| (*ms, id.as_str()) < (*s, a.as_str())))
            .collect();
        entries.sort_by(|a, b| b.cmp(a));
        let mut records_read = 0;
        if let Some(class) = query.error_class.as_ref().filter(|_| !entries.is_empty()) {
            let mark = format!("\"class\":\"{class}\"");
            let mut pipe = redis::pipe();
            for (_, id) in &entries {
                pipe.hget(keys.job(id), "er");
            }
            let errors: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
            records_read = errors.len() as u64;
            let mut errors = errors.into_iter();
            entries.retain(|_| errors.next().flatten().is_some_and(|e| e.contains(&mark)));
        }
        let more = entries.len() > query.limit;
        entries.truncate(query.limit);
        let last = entries.last().map(|(ms, id)| (ms.to_string(), id.to_string()));
        Ok((
            entries.into_iter().map(|(ms, id)| (id.to_string(), ms.to_string())).collect(),
            last,
            more,
            false,
            records_read,
        ))
    }

    /// The queues a listing reads: the kinds asked for, each in every partition, or only
    /// in the account's partition when the listing is for one account.
    fn queues_of(&self, query: &ListQuery) -> Vec<Queue> {
        let kinds: Vec<JobKind> = if query.kinds.is_empty() {
            JobKind::ALL.to_vec()
        } else {
            query.kinds.clone()
        };
        let partitions = self.defaults().partitions;
        let mut out = Vec::new();
        for kind in kinds {
            match &query.account_id {
                Some(acct) => {
                    let probe = self.new_job_id(kind, acct, None);
                    out.push((kind, partitions.of_job(&probe)));
                }
                None => out.extend(partitions.all().into_iter().map(|p| (kind, p))),
            }
        }
        out
    }

    /// One page of `query` across its queues, newest first ([`PageIds`]). Both listings
    /// (full jobs and summaries) read their jobs after it.
    pub(super) async fn page_ids(&self, query: &ListQuery) -> Result<PageIds, StoreError> {
        let mut candidates: Vec<(Queue, String, String)> = Vec::new();
        // Per queue: where it started, how many entries it offered, where its scan
        // ended, and whether its index goes on past that.
        let mut scans: Vec<Scan> = Vec::new();
        let mut reads = Vec::new();
        for queue in self.queues_of(query) {
            let (after, by_account) = match &query.cursor {
                None => (None, None),
                Some(c) => match c.positions.iter().find(|(k, p, _, _)| (*k, *p) == queue) {
                    Some((_, _, score, id)) => (Some((score.clone(), id.clone())), Some(c.by_account.contains(&queue))),
                    None => continue, // this queue was exhausted on an earlier page
                },
            };
            reads.push((queue, after, by_account));
        }
        // The queues are read at once: on a cluster they live on different shards.
        let pages = futures::future::try_join_all(reads.iter().map(|(queue, after, by_account)| {
            let keys = self.partition_keys(queue.0, queue.1);
            let after = after.as_ref().map(|(s, i)| (s.as_str(), i.as_str()));
            async move { self.list_one(&keys, query, after, *by_account).await }
        }))
        .await?;
        let mut records_read = 0;
        for ((queue, after, _), (pairs, last, more, by_account, read)) in reads.into_iter().zip(pages) {
            records_read += read;
            scans.push(Scan {
                queue,
                by_account,
                after,
                offered: pairs.len(),
                last_scanned: last,
                more,
            });
            candidates.extend(pairs.into_iter().map(|(id, score)| (queue, score, id)));
        }
        let num = |s: &str| s.parse::<f64>().unwrap_or(f64::INFINITY);
        candidates.sort_by(|a, b| num(&b.1).total_cmp(&num(&a.1)).then_with(|| b.2.cmp(&a.2)));
        candidates.truncate(query.limit);

        let mut positions = Vec::new();
        let mut by_account = Vec::new();
        for Scan {
            queue,
            by_account: on_account,
            after,
            offered,
            last_scanned,
            more,
        } in scans
        {
            let taken: Vec<&(Queue, String, String)> = candidates.iter().filter(|c| c.0 == queue).collect();
            if on_account {
                by_account.push(queue);
            }
            if taken.len() < offered {
                // Some of this queue's entries did not fit: resume right after the last one shown.
                let pos = match taken.last() {
                    Some(t) => (t.1.clone(), t.2.clone()),
                    None => after.unwrap_or_else(|| ("+inf".to_owned(), String::new())),
                };
                positions.push((queue.0, queue.1, pos.0, pos.1));
            } else if more {
                if let Some((s, i)) = last_scanned {
                    positions.push((queue.0, queue.1, s, i));
                }
            }
        }
        let ids: Vec<JobId> = candidates.iter().filter_map(|c| c.2.parse().ok()).collect();
        by_account.retain(|q| positions.iter().any(|(k, p, _, _)| (*k, *p) == *q));
        Ok(PageIds {
            ids,
            next: (!positions.is_empty()).then_some(Cursor { positions, by_account }),
            records_read,
        })
    }
}

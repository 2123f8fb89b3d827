//! The enqueue script's answer read back into one outcome per job sent (enqueue.lua):
//! a job created as asked comes back as one letter, anything else in six parts.
use super::redis_store::parse_err;
use super::{EnqueueError, Enqueued, StoreError};
use crate::job::{JobId, JobState};

/// The enqueue script's answer, one entry per job sent (`ids`, in order): `q` / `s` for a
/// job created queued / scheduled, or six parts (status, id, state, and why it waits).
pub(super) fn parse<'a>(reply: Vec<String>, ids: impl ExactSizeIterator<Item = &'a JobId>) -> Vec<Result<Enqueued, EnqueueError>> {
    let mut out = Vec::with_capacity(ids.len());
    let mut parts = reply.into_iter();
    for sent in ids {
        let created = |state| {
            Ok(Enqueued {
                id: sent.clone(),
                state,
                created: true,
                waiting: None,
            })
        };
        let r = match parts.next() {
            Some(letter) if letter == "q" => created(JobState::Queued),
            Some(letter) if letter == "s" => created(JobState::Scheduled),
            Some(status) => parse_one(&status, &parts.by_ref().take(5).collect::<Vec<_>>()),
            None => Err(StoreError::Protocol("short enqueue reply".into()).into()),
        };
        out.push(r);
    }
    out
}

/// One job's six-part answer: its status, then `rest` = id, state, reason, until, detail.
fn parse_one(status: &str, rest: &[String]) -> Result<Enqueued, EnqueueError> {
    let [id, state, reason, until, detail] = rest else {
        return Err(StoreError::Protocol(format!("enqueue reply had {} parts", rest.len() + 1)).into());
    };
    let id: JobId = id.parse().map_err(parse_err)?;
    match status {
        "conflict" => Err(EnqueueError::IdempotencyConflict { existing: id }),
        // the state's place holds how many unfinished jobs the account keeps
        "full" => Err(EnqueueError::AccountFull {
            unfinished: state.parse().map_err(parse_err)?,
        }),
        "created" | "existing" => Ok(Enqueued {
            id,
            state: state.parse().map_err(parse_err)?,
            created: status == "created",
            waiting: match reason.as_str() {
                "" => None,
                _ => Some(super::Waiting::from_parts(reason, until, detail)?),
            },
        }),
        other => Err(StoreError::Protocol(format!("enqueue answered {other}")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobKind;

    fn strings(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn letters_and_six_part_answers_are_read_in_the_order_the_jobs_were_sent() {
        let ids: Vec<JobId> = (0..5).map(|_| JobId::new(JobKind::Sync)).collect();
        let existing = JobId::new(JobKind::Sync);
        let e = existing.as_str();
        let reply = [
            strings(&["q"]),
            strings(&["existing", e, "running", "", "", ""]),
            strings(&["s"]),
            strings(&["conflict", e, "", "", "", ""]),
            strings(&["full", ids[4].as_str(), "7", "", "", ""]),
        ]
        .concat();
        let out = parse(reply, ids.iter());
        assert_eq!(out.len(), 5);
        let first = out[0].as_ref().expect("created");
        assert_eq!((&first.id, first.state, first.created), (&ids[0], JobState::Queued, true));
        let second = out[1].as_ref().expect("existing");
        assert_eq!((&second.id, second.state, second.created), (&existing, JobState::Running, false));
        let third = out[2].as_ref().expect("created");
        assert_eq!((&third.id, third.state, third.created), (&ids[2], JobState::Scheduled, true));
        assert!(
            matches!(&out[3], Err(EnqueueError::IdempotencyConflict { existing: e }) if *e == existing),
            "{:?}",
            out[3]
        );
        assert!(matches!(&out[4], Err(EnqueueError::AccountFull { unfinished: 7 })), "{:?}", out[4]);
    }

    #[test]
    fn a_short_or_unknown_answer_is_a_protocol_error_for_the_jobs_it_leaves_out() {
        let ids: Vec<JobId> = (0..3).map(|_| JobId::new(JobKind::Cleanup)).collect();
        let out = parse(strings(&["q", "created", ids[1].as_str(), "queued"]), ids.iter());
        assert!(out[0].is_ok());
        assert!(
            matches!(&out[1], Err(EnqueueError::Store(StoreError::Protocol(m))) if m.contains("3 parts")),
            "{:?}",
            out[1]
        );
        assert!(matches!(&out[2], Err(EnqueueError::Store(StoreError::Protocol(_)))), "{:?}", out[2]);
        let out = parse(strings(&["x", "", "", "", "", ""]), ids[..1].iter());
        assert!(out[0].is_err(), "{:?}", out[0]);
    }
}

//! Calls of scripts that learn their keys only as they read (a job's account, a
//! dead-letter signature): a script that meets a key it was not given answers
//! `{'need', keys}` without writing (common.lua: `need`), and the call is made again
//! with those declared too, so every key it touches is declared (issue 16).
use redis::{FromRedisValue, Value};

use super::StoreError;
use crate::redis_conn::{Call, RedisConn};

/// How many times a call is made again with more keys: a backfill batch learns its
/// records, then their accounts' and groups' keys.
pub(super) const NEED_ROUNDS: usize = 6;

/// Makes the call `build` returns, declaring the keys each answer says it needs, until
/// the script answers.
pub(super) async fn call_declaring<T: FromRedisValue>(conn: &mut RedisConn, build: impl Fn() -> Call) -> Result<T, StoreError> {
    let mut extra: Vec<String> = Vec::new();
    for _ in 0..NEED_ROUNDS {
        let mut call = build();
        for key in &extra {
            call.key(key);
        }
        let answer: Value = call.invoke_async(conn).await?;
        match needed(&answer) {
            Some(keys) => {
                for key in keys {
                    if !extra.contains(&key) {
                        extra.push(key);
                    }
                }
            }
            None => return redis::from_redis_value(answer).map_err(|e| StoreError::Protocol(e.to_string())),
        }
    }
    Err(StoreError::Protocol(format!(
        "a queue script kept needing more keys after {NEED_ROUNDS} calls"
    )))
}

/// The keys a `{'need', keys}` answer names.
pub(super) fn needed(answer: &Value) -> Option<Vec<String>> {
    let Value::Array(parts) = answer else { return None };
    match parts.as_slice() {
        [Value::BulkString(tag), Value::Array(keys)] if tag.as_slice() == b"need" => {
            keys.iter().map(|k| redis::from_redis_value_ref::<String>(k).ok()).collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_need_answer_names_keys() {
        let need = Value::Array(vec![
            Value::BulkString(b"need".to_vec()),
            Value::Array(vec![Value::BulkString(b"p:job:a".to_vec())]),
        ]);
        assert_eq!(needed(&need), Some(vec!["p:job:a".to_owned()]));
        assert_eq!(needed(&Value::Int(1)), None);
        assert_eq!(needed(&Value::Array(vec![Value::BulkString(b"ok".to_vec())])), None);
    }
}

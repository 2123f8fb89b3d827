use crate::job::{JobId, JobKind};

/// Key names of one queue. The `{kind}` hash tag puts them all in one Cluster slot.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    prefix: String,
}

impl QueueKeys {
    pub fn new(namespace: &str, kind: JobKind) -> Self {
        Self {
            prefix: format!("{namespace}:{{{}}}:", kind.as_str()),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
    pub fn job(&self, id: &JobId) -> String {
        self.key(&format!("job:{id}"))
    }
    pub fn attempts(&self, id: &JobId) -> String {
        self.key(&format!("attempts:{id}"))
    }
    pub fn ready(&self) -> String {
        self.key("ready")
    }
    pub fn marker(&self) -> String {
        self.key("marker")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_keys_of_a_queue_share_one_hash_tag() {
        let k = QueueKeys::new("drover", JobKind::Sync);
        assert_eq!(k.ready(), "drover:{sync}:ready");
        assert!(k.marker().starts_with("drover:{sync}:"));
    }
}

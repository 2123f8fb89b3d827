-- The audit log read one key's or one action's entries at a time (`GET /v1/audit?actor=`,
-- `?action=`), newest first: each an index, so a key that wrote many entries hides no
-- other's from a page. Built however long it takes (the pool's statement_timeout would
-- cut off a log never trimmed before this release): writes to the log wait meanwhile.
SET LOCAL statement_timeout = 0;
CREATE INDEX IF NOT EXISTS audit_log_actor_id ON audit_log (actor, id);
CREATE INDEX IF NOT EXISTS audit_log_action_id ON audit_log (action, id);

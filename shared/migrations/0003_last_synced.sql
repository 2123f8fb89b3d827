-- When each resource of an account last synced successfully: the "last known data" a
-- sync app shows its users while a quota is exhausted. Written only when a resource's
-- sync completes (in the transaction of its last page where there is one), so a later
-- failing sync leaves it as it was; it never moves back.
CREATE TABLE last_synced (
    account_id  text        NOT NULL,
    resource    text        NOT NULL CHECK (resource IN ('orders', 'listings', 'order_reports')),
    synced_at   timestamptz NOT NULL,
    job_id      text        NOT NULL,
    PRIMARY KEY (account_id, resource)
);

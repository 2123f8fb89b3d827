-- Incremental sync positions per account, marketplace and resource. A sync is for one
-- marketplace (getOrders with its MarketplaceIds), so each marketplace of an account
-- keeps its own cursor and page walk; `sync_cursors` (0002) kept one per account, and a
-- sync of one marketplace moved the other's. `walk_started` is when the walk in progress
-- began: its end moves the cursor there (less SP-API's settle time) when no page echoed
-- LastUpdatedBefore. `sync_cursors` stays for releases before this one.
CREATE TABLE sync_positions (
    account_id      text        NOT NULL,
    marketplace_id  text        NOT NULL,
    resource        text        NOT NULL,
    cursor_at       timestamptz,
    walk_next_token text,
    walk_before     timestamptz,
    walk_started    timestamptz,
    walk_pages      integer     NOT NULL DEFAULT 0,
    walk_job_id     text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, marketplace_id, resource)
);

-- The old positions go to the account's first marketplace (the one the built-in sync
-- schedule syncs). A walk in progress goes along only for an account with one
-- marketplace: with several, which one it walked is unknown, and its next run starts
-- afresh from the cursor (the upserts make the re-read pages harmless).
INSERT INTO sync_positions (account_id, marketplace_id, resource, cursor_at, walk_next_token,
                            walk_before, walk_pages, walk_job_id, updated_at)
SELECT c.account_id, a.marketplace_ids[1], c.resource, c.cursor_at,
       CASE WHEN cardinality(a.marketplace_ids) = 1 THEN c.walk_next_token END,
       CASE WHEN cardinality(a.marketplace_ids) = 1 THEN c.walk_before END,
       CASE WHEN cardinality(a.marketplace_ids) = 1 THEN c.walk_pages ELSE 0 END,
       CASE WHEN cardinality(a.marketplace_ids) = 1 THEN c.walk_job_id END,
       c.updated_at
  FROM sync_cursors c JOIN accounts a ON a.id = c.account_id
ON CONFLICT DO NOTHING;

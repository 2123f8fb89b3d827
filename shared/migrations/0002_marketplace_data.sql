-- Marketplace data the jobs write, and the per-item record of what each job did.
-- Every write is an upsert keyed by the upstream identity, so a retried page, window or
-- SKU never duplicates a row.

-- Orders from getOrders (sync) and from order reports (backfill). Both sources write
-- the same row; an older copy never overwrites a newer one (last_update_date decides).
CREATE TABLE orders (
    account_id        text        NOT NULL,
    order_id          text        NOT NULL,
    marketplace_id    text        NOT NULL,
    purchase_date     timestamptz NOT NULL,
    last_update_date  timestamptz NOT NULL,
    order_status      text        NOT NULL,
    fulfillment       text,
    order_total       numeric(14, 2),
    currency          text,
    source            text        NOT NULL CHECK (source IN ('sync', 'report')),
    raw               jsonb       NOT NULL,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, order_id)
);
CREATE INDEX orders_by_update ON orders (account_id, last_update_date);

-- One row per order line of an order report (the flat file has one line per item).
CREATE TABLE report_order_lines (
    account_id        text          NOT NULL,
    report_type       text          NOT NULL,
    order_id          text          NOT NULL,
    sku               text          NOT NULL,
    asin              text          NOT NULL,
    purchase_date     timestamptz   NOT NULL,
    last_updated_date timestamptz   NOT NULL,
    order_status      text          NOT NULL,
    item_status       text          NOT NULL,
    quantity          integer       NOT NULL,
    currency          text          NOT NULL,
    item_price        numeric(14, 2) NOT NULL,
    ship_country      text          NOT NULL,
    job_id            text          NOT NULL,
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, report_type, order_id, sku)
);

-- Listings as getListingsItem last saw them; a 404 marks the row absent, not deleted.
CREATE TABLE listings (
    account_id      text        NOT NULL,
    sku             text        NOT NULL,
    marketplace_id  text        NOT NULL,
    asin            text,
    status          text        NOT NULL,
    raw             jsonb,
    checked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, sku)
);

-- Incremental sync position per account and resource. `cursor_at` is the committed
-- LastUpdatedAfter of the next sync; `walk_*` describe a page walk in progress so a
-- killed worker's retry resumes at the page after the last committed one.
CREATE TABLE sync_cursors (
    account_id      text        NOT NULL,
    resource        text        NOT NULL,
    cursor_at       timestamptz,
    walk_next_token text,
    walk_before     timestamptz,
    walk_pages      integer     NOT NULL DEFAULT 0,
    walk_job_id     text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, resource)
);

-- What a job did per item: cleanup SKUs, backfill windows, sync pages.
-- outcome: pending | done | deleted | absent | failed
CREATE TABLE job_items (
    job_id      text        NOT NULL,
    seq         integer     NOT NULL,
    item        text        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('pending', 'done', 'deleted', 'absent', 'failed')),
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    tries       integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, item)
);
CREATE UNIQUE INDEX job_items_by_seq ON job_items (job_id, seq);
CREATE INDEX job_items_by_outcome ON job_items (job_id, outcome, seq);

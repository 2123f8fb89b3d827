-- Fencing for the per-item record (docs/architecture.md, "Item writes are fenced").
-- `job_runs` holds, per job, the newest run that claimed it: the run's lease time by
-- the queue's clock (ms), so a later run of the same job always claims a larger number.
-- Item writes carry their run's number and land only while it is the job's newest.
CREATE TABLE job_runs (
    job_id      text        PRIMARY KEY,
    run         bigint      NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);

-- The run that sent this item's marketplace call and has not yet recorded its answer;
-- cleared when an outcome is recorded. A later run finding it set knows the call may
-- have taken effect with its answer lost.
ALTER TABLE job_items ADD COLUMN sent_by bigint;

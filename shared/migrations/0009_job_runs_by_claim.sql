-- The per-item record's retention (`drover::data::items_retention`) finds jobs whose
-- newest run claimed them long ago by this index, not by reading every job's row.
-- Built however long it takes (the pool's statement_timeout would cut off a table
-- never trimmed before this release): run claims wait meanwhile.
SET LOCAL statement_timeout = 0;
CREATE INDEX IF NOT EXISTS job_runs_by_claimed_at ON job_runs (claimed_at);

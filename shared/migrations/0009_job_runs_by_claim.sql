-- The per-item record's retention (`drover::data::items_retention`) finds jobs whose
-- newest run claimed them long ago by this index, not by reading every job's row.
CREATE INDEX IF NOT EXISTS job_runs_by_claimed_at ON job_runs (claimed_at);

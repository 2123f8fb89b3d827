-- Which accounts share a seller's marketplace limits. SP-API counts calls against the
-- seller and application (the credentials), not against our account: one seller
-- registered as two accounts (say, one for each of its marketplaces) must be held to its
-- one plan. `credentials_digest` is SHA-256 over the client id and the refresh token
-- (drover::db::seller_limits; never the secret itself), and `limits_of` the account
-- whose limiter, cooldowns and breakers the row shares: the first one registered with
-- the same digest, or the row itself. Rows from before this migration get both when the
-- API next starts (their credentials are sealed, so SQL cannot compute the digest);
-- until then a NULL `limits_of` means the account's own limits, as before.
ALTER TABLE accounts ADD COLUMN credentials_digest bytea;
ALTER TABLE accounts ADD COLUMN limits_of text;
CREATE INDEX accounts_credentials_digest_idx ON accounts (credentials_digest);

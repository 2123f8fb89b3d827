-- Seller accounts and their marketplace (LWA) credentials. The two secrets are sealed
-- with drover::crypto::SecretBox (AES-256-GCM, key id || nonce || ciphertext || tag);
-- the database never sees them in clear.
CREATE TABLE IF NOT EXISTS accounts (
    id                text        PRIMARY KEY,
    seller_id         text        NOT NULL,
    marketplace_ids   text[]      NOT NULL,
    client_id         text        NOT NULL,
    client_secret_enc bytea       NOT NULL,
    refresh_token_enc bytea       NOT NULL,
    active            boolean     NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_marketplace_ids_not_empty CHECK (cardinality(marketplace_ids) > 0)
);

-- Schedules enumerate the active accounts.
CREATE INDEX IF NOT EXISTS accounts_active_idx ON accounts (id) WHERE active;

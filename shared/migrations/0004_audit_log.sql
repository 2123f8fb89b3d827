-- What operators did through the API: who (the key's name), when, which action on what,
-- under which filter, how many jobs it touched and how it ended. Appended by the API
-- after each action, never updated; read newest first (`GET /v1/audit`).
CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target      text        NOT NULL,
    filter      jsonb,
    touched     bigint      NOT NULL DEFAULT 0,
    outcome     text        NOT NULL,
    request_id  text        NOT NULL DEFAULT ''
);

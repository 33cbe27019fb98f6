-- A double-entry ledger. Every movement of money is one row in movements
-- and two rows in entries that sum to zero; accounts.balance is the sum of
-- an account's entries, kept in the same transaction (tests check both).
-- COLLATE "C": the same byte order as SQLite.

-- 'wallet:<user id>' (kind wallet, never negative) or a system account:
-- 'external:topup:<CUR>' (money entering) and 'revenue:<CUR>' (charges).
CREATE TABLE accounts (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('wallet', 'system')),
    user_id    TEXT COLLATE "C",
    currency   TEXT NOT NULL CHECK (length(currency) = 3),
    balance    BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    CHECK (kind = 'system' OR balance >= 0),
    CHECK ((kind = 'wallet') = (user_id IS NOT NULL))
);

-- seq orders a wallet's history: a movement is inserted after its wallet's
-- row is locked, so per wallet, seq order is commit order and keyset pages
-- never skip a movement that commits late.
CREATE TABLE movements (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT COLLATE "C" NOT NULL UNIQUE,
    kind           TEXT NOT NULL CHECK (kind IN ('top_up', 'charge', 'refund')),
    user_id        TEXT COLLATE "C" NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL,
    reference      TEXT,
    charge_id      TEXT COLLATE "C" REFERENCES movements (id),
    -- Charges only: what has been refunded so far, never more than charged.
    refunded_minor BIGINT NOT NULL DEFAULT 0
        CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    balance_after_minor BIGINT NOT NULL,
    created_at     TEXT NOT NULL,
    CHECK ((kind = 'refund') = (charge_id IS NOT NULL)),
    CHECK (kind = 'charge' OR refunded_minor = 0)
);
CREATE INDEX movements_by_user ON movements (user_id, seq);
CREATE INDEX movements_by_charge ON movements (charge_id) WHERE charge_id IS NOT NULL;

CREATE TABLE entries (
    movement_id TEXT COLLATE "C" NOT NULL REFERENCES movements (id),
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    amount      BIGINT NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (movement_id, account_id)
);
CREATE INDEX entries_by_account ON entries (account_id);

-- One row per (caller, Idempotency-Key), written in the same transaction
-- as the movement it answered: the primary key decides which of several
-- concurrent requests with one key moves money; the others wait for it
-- and replay its response.
CREATE TABLE idempotency_keys (
    caller       TEXT COLLATE "C" NOT NULL,
    idem_key     TEXT COLLATE "C" NOT NULL,
    request_hash TEXT NOT NULL,
    status       BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    body         TEXT NOT NULL,
    location     TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (caller, idem_key)
);

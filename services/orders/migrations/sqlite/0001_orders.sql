-- Carts, and checkouts with the orders they make.

-- One row per user with a cart: its writes take this row first, so on
-- PostgreSQL two requests of one user change the cart one after the
-- other and the line limit holds exactly.
CREATE TABLE carts (
    user_id    TEXT NOT NULL PRIMARY KEY,
    updated_at TEXT NOT NULL
);

CREATE TABLE cart_items (
    user_id    TEXT NOT NULL REFERENCES carts (user_id),
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    added_at   TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user_id, product_id)
);

-- A checkout is an order from its first moment: state is what the
-- customer sees (pending, confirmed, failed), step where the saga stands
-- (hold, quote, charge, commit; release, refund to compensate; done).
-- The ids and keys it sends to other services are derived from the order
-- id and stored, so every retry names the same hold and the same charge.
-- lease_owner/lease_until: who drives it now (one driver at a time, even
-- across replicas); next_attempt_at: when the recovery loop may try again.
-- seq orders a user's history (keyset pages).
CREATE TABLE orders (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    user_id         TEXT NOT NULL,
    checkout_key    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'failed')),
    step            TEXT NOT NULL
        CHECK (step IN ('hold', 'quote', 'charge', 'commit', 'release', 'refund', 'done')),
    reservation_id  TEXT NOT NULL,
    charge_key      TEXT NOT NULL,
    refund_key      TEXT NOT NULL,
    charge_sent     BIGINT NOT NULL DEFAULT 0 CHECK (charge_sent IN (0, 1)),
    charge_id       TEXT,
    currency        TEXT,
    subtotal_minor  BIGINT,
    discount_minor  BIGINT,
    tax_minor       BIGINT,
    total_minor     BIGINT CHECK (total_minor >= 0),
    reason          TEXT,
    message         TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (user_id, checkout_key),
    CHECK ((state = 'pending') = (step IN ('hold', 'quote', 'charge', 'commit'))),
    CHECK (state <> 'confirmed' OR step = 'done'),
    CHECK ((state = 'failed') = (reason IS NOT NULL)),
    CHECK (step <> 'refund' OR charge_id IS NOT NULL),
    CHECK (step NOT IN ('charge', 'commit') OR total_minor IS NOT NULL)
);
CREATE INDEX orders_by_user ON orders (user_id, seq);
CREATE INDEX orders_due ON orders (next_attempt_at) WHERE step <> 'done';

CREATE TABLE order_lines (
    order_id         TEXT NOT NULL REFERENCES orders (id),
    product_id       TEXT NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity >= 1),
    product_name     TEXT,
    unit_price_minor BIGINT,
    line_total_minor BIGINT,
    PRIMARY KEY (order_id, product_id)
);

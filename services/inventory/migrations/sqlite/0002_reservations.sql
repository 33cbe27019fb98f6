-- Stock holds. `held` counts the units promised to open reservations; the
-- CHECK keeps them covered by stock on hand, so neither a hold nor a stock
-- change can ever promise more than exists (the API maps it to a 409).
ALTER TABLE products ADD COLUMN held BIGINT NOT NULL DEFAULT 0
    CONSTRAINT products_held_check CHECK (held >= 0 AND held <= quantity);

-- Times are integer unix milliseconds: they compare as numbers on both
-- backends, where RFC 3339 text would depend on formatting.
CREATE TABLE reservations (
    id          TEXT    NOT NULL PRIMARY KEY,
    state       TEXT    NOT NULL CHECK (state IN ('held', 'committed', 'released', 'expired')),
    expires_at  BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
-- The sweeper's question: which open holds are due?
CREATE INDEX reservations_due ON reservations (expires_at) WHERE state = 'held';

-- No foreign key to products: lines outlive a product that is deleted after
-- its holds were committed or released (deleting one with open holds is
-- refused, since its `held` is then above zero).
CREATE TABLE reservation_lines (
    reservation_id TEXT   NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
    product_id     TEXT   NOT NULL,
    quantity       BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
);

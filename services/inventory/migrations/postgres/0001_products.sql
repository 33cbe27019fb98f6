-- COLLATE "C" gives ids the same byte order as SQLite, so list pages are
-- identical on both backends and keyset pagination is stable.
CREATE TABLE products (
    id               TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    unit_price_minor BIGINT  NOT NULL CHECK (unit_price_minor >= 0),
    currency         TEXT    NOT NULL CHECK (length(currency) = 3),
    quantity         BIGINT  NOT NULL CHECK (quantity >= 0),
    version          BIGINT  NOT NULL DEFAULT 1,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);

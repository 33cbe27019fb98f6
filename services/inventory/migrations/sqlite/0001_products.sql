-- Quantities and prices are integers (minor units); CHECKs are the last line
-- of defence behind the API's validation, so stock can never go negative.
CREATE TABLE products (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    unit_price_minor BIGINT  NOT NULL CHECK (unit_price_minor >= 0),
    currency         TEXT    NOT NULL CHECK (length(currency) = 3),
    quantity         BIGINT  NOT NULL CHECK (quantity >= 0),
    version          BIGINT  NOT NULL DEFAULT 1,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);

-- email is stored normalised (trimmed, lower case): the UNIQUE constraint
-- is what makes two sign-ups for one address impossible, even at once.
-- COLLATE "C": the same byte order as SQLite.
CREATE TABLE users (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    email         TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    -- Space-separated role names; empty for a customer.
    roles         TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL
);

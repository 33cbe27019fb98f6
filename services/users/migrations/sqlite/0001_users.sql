-- email is stored normalised (trimmed, lower case): the UNIQUE constraint
-- is what makes two sign-ups for one address impossible, even at once.
CREATE TABLE users (
    id            TEXT NOT NULL PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    -- Space-separated role names; empty for a customer.
    roles         TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL
);
